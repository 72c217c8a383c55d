"""The reference a fair run is timed against (issue 16 item 3): a plain OpenDSS bisection process.

    python benchmarks/opendss_bisection.py FEEDER.dss [--direction import|export] [--tol-kw 0.001]

Nothing of nfca: opendssdirect compiles the feeder, puts every load at the same power
min(t, its kVA) at unity power factor (consumption for import, generation for export), solves,
and keeps t while every bus voltage is within 0.90-1.10 pu and every line's current within its
normal rating; t is bisected to --tol-kw. Prints the level and the power flows used. The feeder
is trusted here (a benchmark on our own files): it is compiled as it is.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import opendssdirect as dss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("feeder")
    ap.add_argument("--direction", choices=["import", "export"], default="import")
    ap.add_argument("--tol-kw", type=float, default=1e-3)
    a = ap.parse_args()
    t0 = time.perf_counter()
    dss.Text.Command(f'compile "{a.feeder}"')
    dss.Text.Command("Set MaxIterations=200")  # OpenDSS's 15 leave it stuck after a flow that failed
    loads = dss.Loads.AllNames()
    kva = []
    for name in loads:
        dss.Loads.Name(name)
        dss.Loads.Model(1)
        kva.append(dss.Loads.XfkVA() or 10.0)
    kva = np.array(kva)
    amps = []
    k = dss.Lines.First()
    while k:
        amps.append(dss.Lines.NormAmps())
        k = dss.Lines.Next()
    amps = np.array(amps)
    sign = 1.0 if a.direction == "import" else -1.0

    def holds(t: float) -> bool:
        for name, cap in zip(loads, kva):
            dss.Loads.Name(name)
            dss.Loads.kW(sign * min(t, cap))
            dss.Loads.kvar(0.0)
        dss.Solution.Solve()
        if not dss.Solution.Converged():
            return False
        v = np.array(dss.Circuit.AllBusMagPu())
        v = v[v > 0.05]  # earthed neutrals
        if v.min() < 0.9 or v.max() > 1.1:
            return False
        worst = []
        k = dss.Lines.First()
        while k:
            worst.append(max(dss.CktElement.CurrentsMagAng()[0::2]))
            k = dss.Lines.Next()
        return bool(np.all(np.array(worst) <= amps))

    lo, hi, flows = 0.0, float(kva.max()), 1
    if holds(hi):
        lo = hi
    while hi - lo > a.tol_kw:
        mid = (lo + hi) / 2
        flows += 1
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
    print(f"{a.direction} level {lo:.4f} kW after {flows} power flows in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
