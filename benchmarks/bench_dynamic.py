"""Dynamic envelopes of the IEEE European LV feeder: the shipped day (96 x 15 min, optimal and fair,
import and export, every interval's sets and the static set verified by OpenDSS), under the
seed's corner definition and the default box guarantee; then a year of seeded profiles, measured
on sampled days and extrapolated.

    .venv/bin/python benchmarks/bench_dynamic.py            # the day through the CLI, both guarantees
    .venv/bin/python benchmarks/bench_dynamic.py --library  # also the library's breakdown per chain
    .venv/bin/python benchmarks/bench_dynamic.py --year 7   # a year, from 7 sampled days (library)
    .venv/bin/python benchmarks/bench_dynamic.py --guarantee corner   # one guarantee only

Half the end-users take an NFCA (`--participants 0.5 --seed 0`: 28 of 55), the others are held at
their forecast (feeders/ieee_eulv/profiles_15min.csv; for the year, `feeders.ieee_eulv_profiles`
with one seed per day).
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

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IEEE = ROOT / "feeders" / "ieee_eulv" / "Master.dss"
PROFILES = ROOT / "feeders" / "ieee_eulv" / "profiles_15min.csv"
NFCA = str(Path(sys.executable).with_name("nfca"))
ARGS = ["--profiles", str(PROFILES), "--resolution", "15min", "--participants", "0.5", "--seed", "0"]


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores | "
        f"Python {platform.python_version()} | load average {load:.2f} at start"
    )


def cli(guarantee: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "day"
        t0 = time.perf_counter()
        subprocess.run(
            [
                NFCA,
                "envelopes",
                str(IEEE),
                *ARGS,
                "--guarantee",
                guarantee,
                "--out",
                str(out),
                "--format",
                "csv",
                "--format",
                "json",
            ],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - t0
        s = json.loads((out / "summary.json").read_text())
    n = s["intervals"]
    print(
        f"dynamic envelopes CLI, --guarantee {guarantee}, {n} x {s['resolution_min']:g} min, optimal+fair x "
        f"import+export, every set verified: {wall:.1f} s wall (target <= 10 s)"
    )
    print(f"  library part: {s['seconds']:.1f} s in {s['workers']} processes; verified: {s['verified']}")
    for m, per in s["dynamic"].items():
        for d, x in per.items():
            st = s["static"][m][d]
            print(
                f"  {m:8s} {d:7s} {x['seconds']:5.1f} s  {x['unique']} intervals, {x['solves']} Ipopt solves, "
                f"{x['skipped']} at capacity, {x['iterations']} iterations; static {st['total_kw']:.1f} kW, "
                f"dynamic {min(x['total_kw']):.1f}-{max(x['total_kw']):.1f} kW"
            )
    return wall


def library(guarantee: str) -> None:
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.dynamic import run_dynamic
    from nfca.studies.envelopes import select_participants
    from nfca.studies.profiles import load_profiles

    t0 = time.perf_counter()
    f = read_feeder(IEEE)
    prof = load_profiles(PROFILES, f, "15min")
    part = select_participants(f, "0.5", 0)
    t1 = time.perf_counter()
    study = run_dynamic(f, prof, participants=part, options=EnvelopeOptions(guarantee=guarantee))
    t2 = time.perf_counter()
    print(
        f"library, --guarantee {guarantee}: read {t1 - t0:.1f} s, run_dynamic {t2 - t1:.1f} s in "
        f"{study.workers} processes"
    )
    for c in study.chains:
        print(f"  {c.method.value:8s} {c.direction.value:7s} {c.seconds:5.1f} s: {c.timing}")


def year(days: int, guarantee: str) -> None:
    """A year of 15-minute intervals, from `days` sampled days (seeded profiles, one seed per day),
    each day a dynamic study of its own; the year's time extrapolated from their mean."""
    from feeders.ieee_eulv_profiles import generate
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.dynamic import run_dynamic
    from nfca.studies.envelopes import select_participants
    from nfca.studies.profiles import Profiles

    f = read_feeder(IEEE)
    part = select_participants(f, "0.5", 0)
    names = {f"LOAD{k}": u.name for k, u in enumerate(f.end_users, 1)}
    seconds = []
    for day in range(days):
        wide = generate(seed=1000 + day).set_index("timestamp").rename(columns=names)
        wide.index = pd.to_datetime(wide.index) + pd.Timedelta(days=int(day * 365 / days))
        prof = Profiles(wide, pd.Timedelta("15min"), f"seeded day {day}")
        t0 = time.perf_counter()
        study = run_dynamic(f, prof, participants=part, options=EnvelopeOptions(guarantee=guarantee))
        seconds.append(time.perf_counter() - t0)
        print(f"  day {day}: {seconds[-1]:.1f} s wall, verified {study.verified}")
    mean = sum(seconds) / len(seconds)
    print(
        f"a year of 15-min intervals, --guarantee {guarantee}, extrapolated from {days} sampled days: "
        f"{365 * mean / 60:.0f} min wall (target <= 15 min); {mean:.1f} s per day"
    )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", action="store_true", help="also the library's breakdown per chain")
    ap.add_argument("--year", type=int, metavar="DAYS", help="a year, extrapolated from DAYS sampled days (library)")
    ap.add_argument("--guarantee", choices=["corner", "box"], action="append", help="default: both")
    a = ap.parse_args()
    guarantees = a.guarantee or ["corner", "box"]
    print(machine())
    if a.year:
        for g in guarantees:
            year(a.year, g)
    else:
        walls = {g: cli(g) for g in guarantees}
        if len(walls) == 2:
            print(f"box / corner wall: {walls['box'] / walls['corner']:.2f}")
        if a.library:
            for g in guarantees:
                library(g)
