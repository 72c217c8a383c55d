"""Benchmarks: prints the figures the issues set targets for, with the machine they ran on.

    python benchmarks/run.py            # all
    python benchmarks/run.py envelopes  # one group

The machine is shared and noisy: compare figures as ratios within one run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IEEE = ROOT / "feeders" / "ieee_eulv" / "Master.dss"
NFCA = str(Path(sys.executable).with_name("nfca"))


def machine() -> str:
    return f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores | Python {platform.python_version()}"


def bench_envelopes() -> None:
    """Issue 3 target: four envelopes of the IEEE European LV feeder in one CLI call < 10 s."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([NFCA, "envelopes", str(IEEE), "--out", out], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        summary = json.loads((Path(out) / "summary.json").read_text())
    print(f"envelopes CLI, IEEE EU LV, optimal+fair x import+export: {wall:.2f} s wall (target < 10 s)")
    print(f"  library part (read, build, solve, verify): {summary['seconds']:.2f} s")
    for m, per in summary["methods"].items():
        for d, s in per.items():
            print(f"  {m:8s} {d:7s} {s['seconds']:6.2f} s  {s['solves']} solve(s) {s['iterations']:4d} Ipopt iterations")


def bench_reduction() -> None:
    """The exact reduction's speed-up on one solve (same feeder, same method)."""
    from nfca.dss import read_feeder
    from nfca.envelopes import EnvelopeOptions, EnvelopeProblem

    f = read_feeder(IEEE)
    for reduce in (True, False):
        t0 = time.perf_counter()
        prob = EnvelopeProblem(f, EnvelopeOptions(reduce=reduce))
        build = time.perf_counter() - t0
        env = prob.solve("optimal", "import")
        print(f"reduce={reduce!s:5s}: {len(prob.model_feeder.buses):4d} buses, build {build:5.2f} s, "
              f"optimal import solve {env.seconds:5.2f} s, total {env.total_kw:.3f} kW")


def bench_powerflow() -> None:
    from nfca.verify import compare_powerflow

    r = compare_powerflow(IEEE)
    print(f"power flow IEEE EU LV (full model, {r['buses']} buses): {r['seconds']:.2f} s, "
          f"max |dV| vs OpenDSS {r['max_abs_dv_pu']:.2e} pu")


GROUPS = {"envelopes": bench_envelopes, "reduction": bench_reduction, "powerflow": bench_powerflow}

if __name__ == "__main__":
    print(machine())
    for name in sys.argv[1:] or GROUPS:
        GROUPS[name]()
