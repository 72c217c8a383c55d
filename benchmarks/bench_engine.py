"""What the safe engine costs: reading the feeder's files ourselves, and OpenDSS in its own process.

On the IEEE European LV feeder (906 buses, 55 loads): the sanitiser alone; read + compile in
process against through the engine process (its start included); one power flow per request and
20 per request, in process against through the pipe. Run: `python benchmarks/bench_engine.py`.
The machine is shared: compare the ratios within one run.
"""

from __future__ import annotations

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


def main() -> None:
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


if __name__ == "__main__":
    main()
