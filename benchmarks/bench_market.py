"""Benchmark of the TSO-DSO market schemes: per-scheme time on one case, and bid aggregation's
time against its step size. Run: python benchmarks/bench_market.py [CASE] [--steps 2,1,0.5,...]"""
from __future__ import annotations

import argparse
import os
import platform
import time

from market_bridge.cases import load_case
from market_bridge.schemes import SCHEMES, bid_aggregation, common, run_scheme


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("case", nargs="?", default="B")
    ap.add_argument("--steps", default="4,2,1,0.5,0.25,0.125,0.0625")
    args = ap.parse_args()
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"python {platform.python_version()} | cpus {os.cpu_count()}")
    start = time.perf_counter()
    case = load_case(args.case)
    print(f"case {case.name}: built in {time.perf_counter() - start:.2f} s, {len(case.bids)} bids")
    total = 0.0
    for name in SCHEMES:
        t0 = time.perf_counter()
        res = run_scheme(case, name)
        dt = time.perf_counter() - t0
        total += dt
        print(f"  {name:<16} {res.status:<10} {dt:6.2f} s  cost {res.cost:10.2f} EUR")
    print(f"  all eight schemes: {total:.2f} s (target < 30 s)")
    ref = common(case).cost
    print("bid aggregation against step size:")
    print(f"  {'step_MW':>8} {'time_s':>8} {'ineff_%':>8}  LPs")
    for step in (float(s) for s in args.steps.split(",")):
        t0 = time.perf_counter()
        res = bid_aggregation(case, step)
        dt = time.perf_counter() - t0
        print(f"  {step:8.4f} {dt:8.2f} {100 * (res.cost - ref) / abs(ref):8.3f}  {res.message}")


if __name__ == "__main__":
    main()
