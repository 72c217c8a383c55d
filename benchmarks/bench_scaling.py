"""Scaling with end-users (issue 16 item 4): the IEEE European LV topology with 55 (as it is) to
440 end-users of 9.2 kVA (`benchmarks/ieee_variants.py`), the four sets (optimal and fair x
import and export) under `--guarantee corner` and the default box.

    python benchmarks/bench_scaling.py [--users 55 110 220 440] [--guarantee corner box] [--seed 1]

Per size and guarantee: the library's wall time for `run_envelopes` (build, solve, verify by
OpenDSS; audit points off, as they cost the same whatever the solver does), and per set its solve
seconds, Ipopt solves and iterations (a box's two directions are one solve). The machine is
shared: compare as ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ieee_variants import IEEE_DIR, generate  # noqa: E402
from run import machine  # noqa: E402

SIZES = (55, 110, 220, 440)
METHODS = ("optimal", "fair")


def feeder_path(users: int, seed: int, tmp: Path) -> Path:
    """The IEEE feeder as it is for its own 55 end-users, else a seeded variant."""
    return IEEE_DIR / "Master.dss" if users == 55 else generate(users, seed, tmp / f"users_{users}")


def measure(path: Path, guarantee: str) -> tuple[float, list]:
    """Library wall time of the four sets (read, build, solve, verify) and the sets."""
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.envelopes import run_envelopes

    t0 = time.perf_counter()
    study = run_envelopes(
        read_feeder(path), METHODS, ("import", "export"), EnvelopeOptions(guarantee=guarantee, audit_points=0)
    )
    return time.perf_counter() - t0, list(study.envelopes)


def report(users: int, guarantee: str, wall: float, sets: list) -> None:
    solve = sum({id(e.result): e.seconds for e in sets}.values())  # a box's two sets share one solve
    print(f"{users:4d} end-users, {guarantee:6s}: {wall:7.2f} s library wall ({solve:6.2f} s solving)")
    for e in sets:
        retry = f", last solve {len(e.result.attempts)} attempts" if len(e.result.attempts) > 1 else ""
        print(
            f"    {e.method.value:8s} {e.direction.value:7s} {e.seconds:7.2f} s {e.solves:3d} solve(s) "
            f"{e.iterations:5d} Ipopt iterations{retry}  total {e.total_kw:8.2f} kW"
        )


def run_sizes(sizes, guarantees, seed: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for users in sizes:
            path = feeder_path(users, seed, Path(tmp))
            for guarantee in guarantees:
                wall, sets = measure(path, guarantee)
                report(users, guarantee, wall, sets)
                sys.stdout.flush()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--guarantee", nargs="+", default=["corner", "box"], choices=["corner", "direction", "box"])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(f"{machine()} | load average {os.getloadavg()[0]:.2f} at start")
    run_sizes(a.users, a.guarantee, a.seed)
