"""Parallel cables (issue 11): what laying every cable of the IEEE European LV feeder twice costs
the model, when the pairs merge exactly (the same cable type twice) and when they cannot (the
second cable of another type, so the pair stays two branches, each with its own ampacity).

    python benchmarks/bench_parallel.py

Times are medians of repeated solves of one model (optimal import, the way `nfca envelopes`
re-solves it); compare them as ratios within one run.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IEEE = ROOT / "feeders" / "ieee_eulv"
REPEAT = 3


def machine() -> str:
    return f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores | Python {platform.python_version()}"


def doubled(folder: Path, other_code: str | None) -> Path:
    """A copy of the IEEE feeder with every line laid twice (the second of `other_code` if given)."""
    shutil.copytree(IEEE, folder, dirs_exist_ok=True)
    out = []
    for line in (IEEE / "Lines.dss").read_text().splitlines():
        out.append(line)
        if line.startswith("New Line."):
            twin = re.sub(r"New Line\.(\S+)", r"New Line.\1_b", line)
            if other_code:
                twin = re.sub(r"linecode=\S+", f"linecode={other_code}", twin)
            out.append(twin)
    (folder / "Lines.dss").write_text("\n".join(out) + "\n")
    return folder / "Master.dss"


def main() -> None:
    from nfca.engine import read_feeder
    from nfca.model.reduction import merge_parallel, reduce_feeder
    from nfca.opf.problem import EnvelopeProblem
    from nfca.studies.envelopes import run_envelopes

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("IEEE EU LV as it is", IEEE / "Master.dss"),
            ("every cable laid twice, same type", doubled(Path(tmp) / "same", None)),
            ("every cable laid twice, 2nd of type 4c_185", doubled(Path(tmp) / "other", "4c_185")),
        ]
        for title, path in cases:
            f = read_feeder(path)
            model = reduce_feeder(f)
            problem = EnvelopeProblem(f)
            times = []
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                env = problem.solve("optimal", "import")
                times.append(time.perf_counter() - t0)
            study = run_envelopes(f, ["optimal"], ["import"])
            print(
                f"{title:45s} lines {len(f.lines):5d} -> merged {len(merge_parallel(f).lines):5d}, "
                f"model buses {len(f.buses)} -> {len(model.buses):4d}, model lines {len(model.lines):4d}; "
                f"optimal import {statistics.median(times):5.2f} s, {env.total_kw:7.1f} kW, "
                f"verified {study.verified}"
            )


if __name__ == "__main__":
    main()
