"""Whole `nfca` commands as a planner runs them (issue 16 items 1 and 3): wall time of each process,
start-up, feeder read, solves, OpenDSS verification and outputs included.

    python benchmarks/bench_cli.py [--runs 5] [--ref PATH]

Cases: `nfca --help`; a 2-user feeder (the 4-wire Kron test feeder, default box and corner); the
IEEE European LV feeder (four sets, default outputs, corner and box); and the fair import set
under the corner against `opendss_bisection.py` (a plain OpenDSS bisection process, the issue's
reference for item 3). With `--ref` (a checkout of an earlier nfca, e.g. the previous release),
each case also runs that tree, interleaved with this one (A B A B ...), and the ratio is this /
that. Medians over `--runs`; the machine is shared, so read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import machine  # noqa: E402

IEEE = ROOT / "feeders" / "ieee_eulv" / "Master.dss"


def nfca(tree: Path) -> list[str]:
    """The `nfca` command of a source tree, run by this interpreter (its dependencies); the tree
    also on PYTHONPATH, so that the OpenDSS engine it starts is that tree's too."""
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); sys.argv[0] = 'nfca'; from cli import app; app()"
    return ["env", f"PYTHONPATH={tree}", sys.executable, "-P", "-c", code]


def wall(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def compare(label: str, a: list[str], b: list[str] | None, runs: int, cwd: Path, b_name: str) -> None:
    """Median wall of `a` (and of `b`, interleaved) over `runs`, after one warm-up each."""
    wall(a, cwd)
    if b is not None:
        wall(b, cwd)
    ta, tb = [], []
    for _ in range(runs):
        ta.append(wall(a, cwd))
        if b is not None:
            tb.append(wall(b, cwd))
    line = f"{label:58s} {statistics.median(ta):6.2f} s"
    if b is not None:
        ratios = [x / y for x, y in zip(ta, tb)]
        line += f"   {b_name} {statistics.median(tb):6.2f} s   ratio {statistics.median(ratios):5.2f}"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ref", type=Path, help="an earlier nfca checkout to compare with")
    a = ap.parse_args()
    from tests.feeder_texts import four_wire_kron_text, write_dss

    print(machine(), f"| load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = write_dss(tmp, four_wire_kron_text(n_segments=2))
        new, ref = nfca(ROOT), (nfca(a.ref) if a.ref else None)

        def case(label: str, *args: str) -> None:
            out = ["--out", str(tmp / "out")]
            b = ref + list(args) + out if ref else None
            compare(label, new + list(args) + out, b, a.runs, tmp, "ref")

        compare("nfca --help", new + ["--help"], ref + ["--help"] if ref else None, a.runs, tmp, "ref")
        case("2-user feeder, default (box), default outputs", "envelopes", str(small))
        case("2-user feeder, corner, default outputs", "envelopes", str(small), "--guarantee", "corner")
        case("IEEE EU LV, four sets, corner, default outputs", "envelopes", str(IEEE), "--guarantee", "corner")
        case("IEEE EU LV, four sets, default (box), default outputs", "envelopes", str(IEEE))
        fair = ["envelopes", str(IEEE), "--guarantee", "corner", "--method", "fair", "--direction", "import"]
        bisection = [sys.executable, str(ROOT / "benchmarks" / "opendss_bisection.py"), str(IEEE)]
        for label, extra in (("", []), (", --audit-points 0 --format csv", ["--audit-points", "0", "--format", "csv"])):
            out = ["--out", str(tmp / "fair")]
            compare(f"IEEE fair import, corner{label}", new + fair + extra + out, bisection, a.runs, tmp, "bisection")


if __name__ == "__main__":
    main()
