"""Benchmarks: prints the figures the issues set targets for, with the machine they ran on.

    python benchmarks/run.py            # all
    python benchmarks/run.py envelopes  # one group
    make bench                          # the fast ones: envelopes, reduction, scaling (55 and 110 users)

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
            print(
                f"  {m:8s} {d:7s} {s['seconds']:6.2f} s  {s['solves']} solve(s) {s['iterations']:4d} Ipopt iterations"
            )


def bench_reduction() -> None:
    """The exact reduction's speed-up on one solve (same feeder, same method)."""
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.opf.problem import EnvelopeProblem

    f = read_feeder(IEEE)
    for reduce in (True, False):
        t0 = time.perf_counter()
        prob = EnvelopeProblem(f, EnvelopeOptions(reduce=reduce, guarantee="corner"))
        build = time.perf_counter() - t0
        env = prob.solve("optimal", "import")[0]
        print(
            f"reduce={reduce!s:5s}: {len(prob.model_feeder.buses):4d} buses, build {build:5.2f} s, "
            f"optimal import (corner) solve {env.seconds:5.2f} s, total {env.total_kw:.3f} kW"
        )


def bench_powerflow() -> None:
    from nfca.studies.validation import compare_powerflow

    r = compare_powerflow(IEEE)
    print(
        f"power flow IEEE EU LV (full model, {r['buses']} buses): {r['seconds']:.2f} s, "
        f"max |dV| vs OpenDSS {r['max_abs_dv_pu']:.2e} pu"
    )


def bench_batch() -> None:
    """Issue 4 target: the 49-feeder Sibelga-style batch (4 envelopes each) < 120 s wall; Dask vs pool."""
    import pandas as pd

    from feeders.sibelga import generate
    from nfca.studies.batch import discover, run_batch

    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate(1, Path(tmp) / "grid")
        jobs = discover([manifest])
        t0 = time.perf_counter()
        report = run_batch(jobs, Path(tmp) / "pool")
        pool = time.perf_counter() - t0
        print(
            f"batch, 49 feeders x 4 envelopes, local process pool ({os.cpu_count()} workers): "
            f"{pool:.1f} s wall (target < 120 s), {len(report.done)} done, {len(report.failed)} failed"
        )
        sizes = pd.read_csv(manifest).set_index("feeder")["end_users"]
        per = pd.DataFrame({"end_users": sizes, "seconds": pd.Series(report.seconds)}).dropna()
        per["bin"] = pd.cut(per["end_users"], [0, 10, 25, 50, 75, 120])
        print("  seconds per feeder against end-users (median, max):")
        for b, g in per.groupby("bin", observed=True):
            print(
                f"    {str(b):>10s}: {len(g):2d} feeders, {g['seconds'].median():5.2f} s, {g['seconds'].max():5.2f} s"
            )
        from distributed import LocalCluster

        with LocalCluster(
            n_workers=os.cpu_count(), threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            t0 = time.perf_counter()
            run_batch(jobs, Path(tmp) / "dask", dask_address=cluster.scheduler_address)
            dask = time.perf_counter() - t0
        print(
            f"  same batch on a local Dask cluster ({os.cpu_count()} workers): {dask:.1f} s wall, "
            f"{dask / pool:.2f}x the process pool"
        )


def bench_scaling() -> None:
    """Issue 16 item 4, the fast part: the four sets on the IEEE topology with 55 and 110
    end-users, corner and box (`benchmarks/bench_scaling.py` runs every size)."""
    from bench_scaling import run_sizes

    run_sizes((55, 110), ("corner", "box"))


def bench_cli() -> None:
    """Issue 16 items 1 and 3: whole commands (`benchmarks/bench_cli.py`; `--ref` there compares
    with an earlier checkout), fair against a plain OpenDSS bisection process."""
    sys.argv = [sys.argv[0], "--runs", "3"]
    from bench_cli import main

    main()


GROUPS = {
    "envelopes": bench_envelopes,
    "reduction": bench_reduction,
    "powerflow": bench_powerflow,
    "batch": bench_batch,
    "scaling": bench_scaling,
    "cli": bench_cli,
}

if __name__ == "__main__":
    print(machine())
    for name in sys.argv[1:] or GROUPS:
        GROUPS[name]()
