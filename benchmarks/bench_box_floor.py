"""How far the optimal box can get towards the corner: constraint generation against its floor.

    python benchmarks/bench_box_floor.py [--feeders lv02 lv13 lv30] [--seed 1] [--grid DIR]

On feeders of the Sibelga-style grid (`feeders.sibelga.generate`, seeded), three solves of the
optimal set (import and export) by `EnvelopeProblem.solve`, timed in one process after the
feeder is read:
- box: the default, constraint generation from the guessed box's worst vertices;
- floor: the same box, its NLP given from the start every scenario the first run ended with (as
  if a perfect oracle had named them): one exact multi-scenario UTOPF, the least any exact
  scenario formulation of this box can solve;
- corner: the seed's single point, each direction (the reference of issue 17's ratios).
The floor is reached by handing the finished run's scenarios to a new run's start (a private
hook of `nfca.opf.problem._Run`, patched here only).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402


def main(names: list[str], seed: int, grid: Path | None) -> None:
    import nfca.opf.problem as problem_module
    from feeders.sibelga import generate
    from nfca.engine import read_feeder
    from nfca.model.envelope import EnvelopeOptions

    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        if grid is None:
            grid = Path(tmp) / "grid"
            generate(seed, grid)
        for name in names:
            feeder = read_feeder(grid / name / "Master.dss")
            problem = problem_module.EnvelopeProblem(feeder, EnvelopeOptions())
            run = problem_module._Run
            finished: dict = {}
            solve, initial = run.solve, run._initial_points

            def keep(self, solve=solve):
                res = solve(self)
                finished.update(points=list(self.points), iterations=sum(r.iterations for r in self.runs))
                return res

            run.solve = keep
            try:
                t0 = time.perf_counter()
                box = problem.solve("optimal")
                t_box, it_box, points = time.perf_counter() - t0, finished["iterations"], finished["points"]
                run._initial_points = lambda self: points
                t0 = time.perf_counter()
                floor = problem.solve("optimal")
                t_floor, it_floor = time.perf_counter() - t0, finished["iterations"]
            finally:
                run.solve, run._initial_points = solve, initial
            t0 = time.perf_counter()
            corner = problem.solve("optimal", "import", guarantee="corner")
            corner += problem.solve("optimal", "export", guarantee="corner")
            t_corner = time.perf_counter() - t0
            kw = lambda sets: " / ".join(f"{s.total_kw:7.2f}" for s in sets)  # noqa: E731
            print(
                f"{name}: {len(feeder.end_users):3d} end-users, {len(points):3d} scenarios; optimal box "
                f"{t_box:6.1f} s ({it_box} it), floor {t_floor:6.1f} s ({it_floor} it), corner {t_corner:5.2f} s; "
                f"box / corner {t_box / t_corner:5.0f}x, floor / corner {t_floor / t_corner:5.0f}x; "
                f"kW import / export: box {kw(box)}, floor {kw(floor)}, corner {kw(corner)}",
                flush=True,
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeders", nargs="+", default=["lv02", "lv13", "lv30"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--grid", type=Path, default=None, help="an existing grid (nfca feeders sibelga --out DIR)")
    a = ap.parse_args()
    main(a.feeders, a.seed, a.grid)
