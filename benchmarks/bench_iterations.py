"""Optimal export against optimal import in Ipopt iterations (issue 16 item 4, goal: export at most
2x import on every Sibelga feeder), with the totals, to compare Ipopt settings.

    python benchmarks/bench_iterations.py [--guarantee corner] [--seed 1] [--grid DIR]
                                          [--ipopt-option NAME=VALUE ...] [--feeders lv27 ...]

On every feeder of the Sibelga-style grid (`feeders.sibelga.generate`, seeded) and the IEEE
European LV feeder: the optimal import and export sets by `EnvelopeProblem.solve`, every end-user
a participant. Per feeder: each direction's total (kW, whole watts per end-user), Ipopt
iterations and status; then the worst export/import ratio and the iterations summed. Iterations
do not depend on the machine; compare the totals of two settings feeder by feeder (a setting can
move a nonconvex solve to another local optimum).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ieee_variants import IEEE_DIR  # noqa: E402
from run import machine  # noqa: E402


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(guarantee: str, seed: int, grid: Path | None, ipopt: list[str], names: list[str] | None) -> None:
    from feeders.sibelga import generate
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.opf.problem import EnvelopeProblem

    options = EnvelopeOptions(
        guarantee=guarantee, ipopt_options={k: _value(v) for k, v in (x.split("=", 1) for x in ipopt)}
    )
    print(machine())
    print(f"guarantee {guarantee}, Ipopt options {dict(options.ipopt_options) or 'nfca defaults'}")
    with tempfile.TemporaryDirectory() as tmp:
        if grid is None:
            grid = Path(tmp) / "grid"
            generate(seed, grid)
        paths = sorted(grid.glob("*/Master.dss")) + [IEEE_DIR / "Master.dss"]
        if names:
            paths = [p for p in paths if p.parent.name in names]
        worst, total = (0.0, ""), 0
        for path in paths:
            problem = EnvelopeProblem(read_feeder(path), options)
            sets = {d: problem.solve("optimal", d)[0] for d in ("import", "export")}
            its = {d: e.iterations for d, e in sets.items()}
            ratio = its["export"] / max(its["import"], 1)
            worst = max(worst, (ratio, path.parent.name))
            total += sum(its.values())
            print(
                f"{path.parent.name:10s}"
                + "".join(
                    f"  {d} {e.total_kw:9.3f} kW {e.iterations:4d} it {e.result.status.value:10s}"
                    for d, e in sets.items()
                )
                + f"  export/import {ratio:4.2f}",
                flush=True,
            )
    print(f"worst export/import {worst[0]:.2f} ({worst[1]}); Ipopt iterations in all {total}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guarantee", default="corner", choices=["corner", "box"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--grid", type=Path, default=None, help="an existing grid (nfca feeders sibelga --out DIR)")
    ap.add_argument("--ipopt-option", dest="ipopt", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--feeders", nargs="+", default=None, help="only these feeders (folder names)")
    a = ap.parse_args()
    main(a.guarantee, a.seed, a.grid, a.ipopt, a.feeders)
