"""Seeded variants of the IEEE European LV feeder with more end-users, for scaling benchmarks.

    python benchmarks/ieee_variants.py OUT_DIR [--users 110 220 440] [--seed 1]

Each variant keeps the feeder's source, transformer and 905 cables as they are, its 55 loads,
and adds single-phase 9.2 kVA end-users (the feeder's own kind) at buses drawn uniformly among
the 905 LV buses past the transformer's, each on a phase drawn uniformly, consuming 0.1-1 kW at
power factor 0.95 (what a power flow sees; envelopes take their firm values from capacity).
Real LV feeders have 200-400 end-users; the IEEE feeder has 55. The same (users, seed) writes
the same files byte for byte.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IEEE_DIR = ROOT / "feeders" / "ieee_eulv"
KVA = 9.2
SIZES = (110, 220, 440)


def _lv_buses() -> list[str]:
    """The LV buses that cables end at (every bus but the transformer's LV bus `1`), in file order."""
    buses = []
    for line in (IEEE_DIR / "Lines.dss").read_text().splitlines():
        for word in line.split():
            if word.lower().startswith("bus2="):
                buses.append(word.split("=", 1)[1])
    return buses


def generate(users: int, seed: int, out_dir: Path) -> Path:
    """Write the IEEE feeder with `users` end-users (at least its 55) into `out_dir`; returns
    the Master.dss path."""
    original = (IEEE_DIR / "Loads.dss").read_text().splitlines()
    n_orig = sum(1 for x in original if x.lower().startswith("new load."))
    if users < n_orig:
        raise ValueError(f"a variant keeps the feeder's {n_orig} end-users: ask for at least that many")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("Master.dss", "LineCodes.dss", "Lines.dss", "BusCoords.csv", "crs.txt"):
        shutil.copyfile(IEEE_DIR / name, out_dir / name)
    rng = np.random.default_rng(seed)
    buses = _lv_buses()
    extra = users - n_orig
    at = rng.choice(len(buses), size=extra, replace=True)
    phases = rng.integers(1, 4, size=extra)
    kw = np.round(rng.uniform(0.1, 1.0, size=extra), 3)
    tan = math.tan(math.acos(0.95))
    lines = original + [f"! {extra} end-users added by benchmarks/ieee_variants.py (seed {seed})"]
    for k in range(extra):
        lines.append(
            f"New Load.EXTRA{k + 1} phases=1 bus1={buses[at[k]]}.{phases[k]} kV=0.23 model=1 "
            f"vminpu=0.5 vmaxpu=1.5 XfkVA={KVA:g} kW={kw[k]:g} kvar={kw[k] * tan:.6g}"
        )
    (out_dir / "Loads.dss").write_text("\n".join(lines) + "\n")
    return out_dir / "Master.dss"


def generate_all(out_dir: Path, sizes=SIZES, seed: int = 1) -> dict[int, Path]:
    """One variant per size, in `out_dir/users_<n>`."""
    return {n: generate(n, seed, Path(out_dir) / f"users_{n}") for n in sizes}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--users", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    for n, path in generate_all(a.out, a.users, a.seed).items():
        print(f"{n:4d} end-users: {path}")
