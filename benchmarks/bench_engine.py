"""What the safe engine costs: reading the feeder's files ourselves, and OpenDSS in its own process.

On the IEEE European LV feeder (906 buses, 55 loads): the sanitiser alone; read + compile in
process against through the engine process (its start included); one power flow per request and
20 per request, in process against through the pipe. Then the engine's own cost of a power flow
(`Flows.solve`, in process) against the way it was solved before 2026-11-30 (each changed load set
by name, one `Loads.Name`/`kW`/`kvar` call at a time; `AllBusVolts`/`AllCurrents` read as Python
lists), the two interleaved on the same cases, on the IEEE feeder and on each `--feeder` given
(e.g. a Sibelga-style feeder from `nfca feeders sibelga`). Run: `python benchmarks/bench_engine.py
[--feeder PATH ...]`. The machine is shared: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IEEE = ROOT / "feeders" / "ieee_eulv" / "Master.dss"


def _median(fn, n: int = 7) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _one_at_a_time(dss, flows, kw_kvar: np.ndarray) -> None:
    """The power flows as `Flows.solve` ran them before: changed loads set one call at a time,
    the arrays read as lists (the reference of the per-flow comparison; results are the same)."""
    now = np.array([[dss.Loads.kW(), dss.Loads.kvar()] for _ in [dss.Loads.Name(n) for n in flows.layout.loads]])
    amps = np.zeros(flows.n_keys)
    for case in kw_kvar:
        for j in np.flatnonzero(np.any(case != now, axis=1)):
            dss.Loads.Name(flows.layout.loads[j])
            dss.Loads.kW(case[j, 0])
            dss.Loads.kvar(case[j, 1])
            now[j] = case[j]
        dss.Solution.Solve()
        dss.Solution.Converged(), dss.Solution.Iterations()
        np.asarray(dss.Circuit.AllBusVolts()).view(complex)
        currents = np.asarray(dss.PDElements.AllCurrents()).view(complex)
        np.maximum.at(amps, flows.owner, np.abs(currents[flows.pos]))
        currents[flows.tr_pos]


def per_flow(dss, path: Path, n_cases: int = 100, rounds: int = 7) -> None:
    """Engine time per power flow, before (one load at a time) against now (`Flows.solve`)."""
    from nfca.engine import opendss

    opendss.compile_feeder(dss, path, path)
    feeder = opendss.read_feeder(dss, path)
    flows = opendss.Flows(dss, feeder)
    rng = np.random.default_rng(0)
    n = len(flows.layout.loads)
    # verification-like cases: every end-user at a level of its own, no reactive power
    cases = np.stack([np.column_stack([rng.uniform(-5, 5, n), np.zeros(n)]) for _ in range(n_cases)])
    before, now = [], []
    for _ in range(rounds):  # interleaved: the machine's drift hits both alike
        for fn, times in ((lambda: _one_at_a_time(dss, flows, cases), before), (lambda: flows.solve(cases, None), now)):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) / n_cases)
    ratios = sorted(b / a for a, b in zip(before, now))
    b, a = statistics.median(before), statistics.median(now)
    print(
        f"  {path.parent.name}/{path.name} ({n} loads, {len(flows.layout.nodes)} nodes): per flow "
        f"{1e3 * b:.3f} ms one load at a time, {1e3 * a:.3f} ms now (x{a / b:.2f}; "
        f"pairs x{ratios[0]:.2f}-x{ratios[-1]:.2f}, median of {rounds} x {n_cases} flows)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeder", type=Path, action="append", default=[], help="more feeders for the per-flow A/B")
    args = parser.parse_args()
    import opendssdirect

    from nfca import engine
    from nfca.engine import opendss
    from nfca.engine.script import read_script

    vocab = opendss.vocabulary(opendssdirect)
    sanitise = _median(lambda: read_script(IEEE, *vocab))
    work = Path(tempfile.mkdtemp())
    dss = opendss.start(work)

    def in_process():
        opendss.compile_feeder(dss, IEEE, IEEE)
        f = opendss.read_feeder(dss, IEEE)
        opendss.load_shapes(dss)
        return f, opendss.Flows(dss, f)

    read_in = _median(in_process)
    feeder, flows = in_process()

    def child_read():
        engine.close_all()
        engine.read(IEEE)

    read_child = _median(child_read, 5)
    engine.close_all()
    engine.prestart()
    time.sleep(1.5)  # the engine has loaded OpenDSS while the caller did other work
    t0 = time.perf_counter()
    engine.read(IEEE)
    read_warm = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    cases = [{u.name: (float(rng.uniform(0, 5)), 0.0) for u in feeder.end_users} for _ in range(20)]
    arrays = [np.array([[c[u.name][0], 0.0] for u in feeder.end_users])[None] for c in cases]
    one_in = _median(lambda: [flows.solve(a, None) for a in arrays]) / 20
    batch_in = _median(lambda: flows.solve(np.concatenate(arrays), None)) / 20
    one_child = _median(lambda: [engine.powerflows(feeder, [c]) for c in cases]) / 20
    batch_child = _median(lambda: engine.powerflows(feeder, cases)) / 20
    print(f"IEEE European LV feeder ({len(feeder.buses)} buses, {len(feeder.end_users)} loads), {sys.platform}")
    print(f"  sanitiser (read and check {IEEE.name} and its files): {1e3 * sanitise:.1f} ms")
    print(f"  read + compile in process:                {1e3 * read_in:.0f} ms")
    print(
        f"  read through a new engine process (cold): {1e3 * read_child:.0f} ms "
        "(Python + numpy + pandas + opendssdirect imports in the child)"
    )
    print(f"  read through a prestarted engine process:  {1e3 * read_warm:.0f} ms")
    print(
        f"  power flow, one per request: in process {1e3 * one_in:.2f} ms, engine process {1e3 * one_child:.2f} ms "
        f"(x{one_child / one_in:.2f})"
    )
    print(
        f"  power flow, 20 per request:  in process {1e3 * batch_in:.2f} ms, engine process {1e3 * batch_child:.2f} ms "
        f"(x{batch_child / batch_in:.2f})"
    )
    engine.close_all()
    print("engine time per power flow, in process (Flows.solve against the former one-load-at-a-time loop):")
    for path in [IEEE, *args.feeder]:
        per_flow(dss, path.resolve())


if __name__ == "__main__":
    main()
