"""Fair envelopes against a plain OpenDSS bisection (issue 16 item 3, the reference to beat).

    python benchmarks/bench_fair.py [--users 55 110] [--seed 1]

Under the corner guarantee the fair level is one scalar: every end-user at min(t, capacity) in
one direction. The reference bisects t on OpenDSS power flows of the full feeder (nfca.engine)
checked against the study's limits (nfca.verify.check), to 1 W; the library builds its model and
finds the set (`EnvelopeProblem.solve('fair', d)`, corner: the level bisected on the model's own
power flow, no Ipopt). Both are timed in this process after the feeder is read (OpenDSS
compiled). The levels differ by the model's margins (9e-6 of each voltage limit, 0.01 % of each
rating) and by publishing whole watts rounded down. The whole-process comparison (one CLI call
against a plain OpenDSS bisection process) is `opendss_bisection.py`, timed from outside.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import feeder_path  # noqa: E402
from run import machine  # noqa: E402


def bisection(feeder, options, direction: str, tol_kw: float = 1e-3) -> tuple[float, int]:
    """The highest equal level t (kW) whose power flow keeps every limit; power flows used."""
    from nfca.engine import powerflows
    from nfca.verify.check import check

    sign = 1.0 if direction == "import" else -1.0
    caps = {u.name: u.capacity_kva * options.power_factor for u in feeder.end_users}

    def holds(t: float) -> bool:
        case = {n: (sign * min(t, c), 0.0) for n, c in caps.items()}
        return check(feeder, powerflows(feeder, [case], options.source_pu)[0], options).verified

    lo, hi, flows = 0.0, max(caps.values()), 0
    if holds(hi):
        return hi, 1
    while hi - lo > tol_kw:
        mid = (lo + hi) / 2
        flows += 1
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
    return lo, flows


def main(sizes, seed: int) -> None:
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.opf.problem import EnvelopeProblem

    options = EnvelopeOptions(guarantee="corner", power_factor=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        for users in sizes:
            feeder = read_feeder(feeder_path(users, seed, Path(tmp)))
            for d in ("import", "export"):
                t0 = time.perf_counter()
                level, flows = bisection(feeder, options, d)
                ref = time.perf_counter() - t0
                t0 = time.perf_counter()
                env = EnvelopeProblem(feeder, options).solve("fair", d)[0]
                lib = time.perf_counter() - t0
                ours = max(env.guaranteed_kw.values())
                print(
                    f"{users:4d} end-users, fair {d:7s}: OpenDSS bisection {ref:6.2f} s ({flows} power flows), "
                    f"level {level:8.4f} kW; nfca (model + set) {lib:6.2f} s ({env.iterations} Ipopt "
                    f"iterations), level {ours:8.4f} kW; nfca / bisection {lib / ref:5.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=[55, 110])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(f"{machine()} | load average {os.getloadavg()[0]:.2f} at start")
    main(a.users, a.seed)
