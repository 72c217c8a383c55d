"""Benchmark of the TSO-DSO market schemes (issue 14 targets: every scheme of one case in one CLI
call <= 10 s wall, `nfca market tables` <= 60 s), then where a case's time goes (library time per
scheme) and bid aggregation's time against its step size.

    python benchmarks/bench_market.py [--cases ABCD] [--steps 4,2,1,0.5,0.25,0.125,0.0625]

The machine is shared: the load average is printed; compare figures as ratios within one run."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NFCA = str(Path(sys.executable).with_name("nfca"))


def _cli(*args: str) -> float:
    """Wall time of one `nfca market ...` call (a fresh process: start-up and imports included)."""
    t0 = time.perf_counter()
    subprocess.run([NFCA, "market", *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", default="ABCD")
    ap.add_argument("--steps", default="4,2,1,0.5,0.25,0.125,0.0625")
    args = ap.parse_args()
    print(
        f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores | "
        f"Python {platform.python_version()} | load average {os.getloadavg()[0]:.2f} at start"
    )

    with tempfile.TemporaryDirectory() as tmp:
        for c in args.cases:
            wall = _cli("run", "--case", c, "--scheme", "all", "--out", f"{tmp}/{c}")
            print(f"nfca market run --case {c} --scheme all (9 schemes): {wall:5.2f} s wall (target <= 10 s)")
        wall = _cli("tables", "--out", f"{tmp}/tables")
        print(f"nfca market tables (2 seeds x 4 cases x 11 runs + step sweep): {wall:5.1f} s wall (target <= 60 s)")

    from market_bridge.cases import load_case
    from market_bridge.schemes import SCHEMES, bid_aggregation, common, run_scheme

    start = time.perf_counter()
    case = load_case("B")
    print(f"library, case B: built in {time.perf_counter() - start:.2f} s, {len(case.bids)} bids")
    total = 0.0
    for name in SCHEMES:
        t0 = time.perf_counter()
        res = run_scheme(case, name)
        dt = time.perf_counter() - t0
        total += dt
        print(f"  {name:<19} {res.status!s:<9} {dt:6.2f} s  {len(res.layers):2d} layers  cost {res.cost:9.2f} EUR")
    print(f"  all nine schemes: {total:.2f} s")
    ref = common(case).cost
    print("bid aggregation against step size (case B):")
    print(f"  {'step_MW':>8} {'time_s':>8} {'ineff_%':>8}  LPs")
    for step in (float(s) for s in args.steps.split(",")):
        t0 = time.perf_counter()
        res = bid_aggregation(case, step)
        dt = time.perf_counter() - t0
        print(f"  {step:8.4f} {dt:8.2f} {100 * (res.cost - ref) / abs(ref):8.3f}  {res.message}")


if __name__ == "__main__":
    main()
