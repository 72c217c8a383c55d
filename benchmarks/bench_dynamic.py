"""Issue 6 target: a day of dynamic envelopes of the IEEE European LV feeder (96 x 15 min, optimal and
fair x import and export, every interval verified by OpenDSS) in under 60 s; then the activation
analysis of the same day.

    .venv/bin/python benchmarks/bench_dynamic.py            # the CLI, as a user runs it
    .venv/bin/python benchmarks/bench_dynamic.py --library  # also the library's breakdown

Half the end-users take an NFCA (`--participants 0.5 --seed 0`: 28 of 55), the others are held at
their forecast (feeders/ieee_eulv/profiles_15min.csv).
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
PROFILES = ROOT / "feeders" / "ieee_eulv" / "profiles_15min.csv"
NFCA = str(Path(sys.executable).with_name("nfca"))
ARGS = ["--profiles", str(PROFILES), "--resolution", "15min", "--participants", "0.5", "--seed", "0"]


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores | "
            f"Python {platform.python_version()} | load average {load:.2f} at start")


def cli() -> None:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([NFCA, "envelopes", str(IEEE), *ARGS, "--out", out], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        s = json.loads((Path(out) / "summary.json").read_text())
    n = s["intervals"]
    print(f"dynamic envelopes CLI, IEEE EU LV, {n} x {s['resolution_min']:g} min, optimal+fair x import+export "
          f"({4 * n} interval envelope sets + 4 static), all verified: {wall:.1f} s wall (target < 60 s)")
    print(f"  library part (profiles, solves, verification): {s['seconds']:.1f} s in {s['workers']} processes; "
          f"verified: {s['verified']}")
    for m, per in s["dynamic"].items():
        for d, x in per.items():
            st = s["static"][m][d]
            print(f"  {m:8s} {d:7s} {x['seconds']:5.1f} s  {x['unique']} intervals, {x['solves']} Ipopt solves, "
                  f"{x['skipped']} at capacity, {x['fallbacks']} fallbacks, {x['iterations']} iterations; "
                  f"static {st['total_kw']:.1f} kW, dynamic {min(x['total_kw']):.1f}-{max(x['total_kw']):.1f} kW")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([NFCA, "activations", str(IEEE), *ARGS, "--out", out], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        a = json.loads((Path(out) / "activations.json").read_text())
    pol = a["policy"]
    print(f"activations CLI (the same envelopes, then {a['intervals']} + activated-interval power flows): "
          f"{wall:.1f} s wall")
    print(f"  {a['intervals_needing_activation']} intervals need an activation: {pol['activations']} activation(s), "
          f"longest {pol['longest_min']:g} min; policy {pol['max_count']} x {pol['max_duration_min']:g} min "
          f"{'satisfied' if pol['satisfied'] else 'NOT satisfied'}")
    print(f"  participants' energy: {a['participant_consumption_kwh']:.1f} kWh consumed, "
          f"{a['participant_generation_kwh']:.1f} kWh generated")
    for m, per in a["curtailed_kwh"].items():
        res = a["resolved"][m]
        print(f"  {m:8s} curtailed: static {per['static']:.1f} kWh, dynamic {per['dynamic']:.1f} kWh, "
              f"permanent static {per['permanent_static']:.1f} kWh; activation clears every violation: "
              f"static {res['static']['all']}, dynamic {res['dynamic']['all']} "
              f"(highest voltage after: {res['static']['v_max_after_pu']:.4f} / {res['dynamic']['v_max_after_pu']:.4f} pu)")


def library() -> None:
    from nfca.engine import read_feeder
    from nfca.studies.dynamic import run_dynamic
    from nfca.studies.envelopes import select_participants
    from nfca.studies.profiles import load_profiles

    t0 = time.perf_counter()
    f = read_feeder(IEEE)
    prof = load_profiles(PROFILES, f, "15min")
    part = select_participants(f, "0.5", 0)
    t1 = time.perf_counter()
    study = run_dynamic(f, prof, participants=part)
    t2 = time.perf_counter()
    print(f"library: read {t1 - t0:.1f} s, run_dynamic {t2 - t1:.1f} s in {study.workers} processes")
    for c in study.chains:
        print(f"  {c.method.value:8s} {c.direction.value:7s} {c.seconds:5.1f} s: {c.timing}")


if __name__ == "__main__":
    print(machine())
    cli()
    if "--library" in sys.argv[1:]:
        library()
