"""What reading a compiled feeder costs in the engine (`opendss.compile_feeder` + `read_feeder`, in
process), this tree against another checkout (`--ref`, e.g. a clean `git archive` of main in /tmp),
the two run in turn in fresh processes, round after round, so that the ratio is paired. It also
checks that both read the same `Feeder` (its pickle, byte for byte).

Run: `python benchmarks/bench_read.py --ref /tmp/main [--feeder PATH ...] [--rounds 5] [-n 15]`;
without `--feeder`, the IEEE European LV feeder. With several feeders the figures are the sums of
their medians (e.g. every Master.dss of `nfca feeders sibelga --out DIR`). The machine is shared:
compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IEEE = ROOT / "feeders" / "ieee_eulv" / "Master.dss"

# Run in a fresh `python -P`, the tree's nfca first on sys.path: medians of n reads of each feeder.
_READ = """
import hashlib, json, pickle, statistics, sys, tempfile, time
from pathlib import Path
tree, n, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
sys.path.insert(0, tree)
sys.modules.setdefault("pandas", None)  # as in the engine process
from nfca.engine import opendss
assert opendss.__file__.startswith(tree), opendss.__file__
dss = opendss.start(Path(tempfile.mkdtemp(prefix="nfca-bench-read-")))
out = {}
for p in map(Path, paths):
    compile_s, read_s = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        opendss.compile_feeder(dss, p.resolve(), p)
        t1 = time.perf_counter()
        feeder = opendss.read_feeder(dss, p)
        read_s.append(time.perf_counter() - t1)
        compile_s.append(t1 - t0)
    digest = hashlib.sha256(pickle.dumps(feeder)).hexdigest()
    out[str(p)] = (statistics.median(compile_s), statistics.median(read_s), digest)
print(json.dumps(out))
"""


def _run(tree: Path, paths: list[Path], n: int) -> dict:
    res = subprocess.run(
        [sys.executable, "-P", "-c", _READ, str(tree), str(n), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="another checkout's root (the reference, B)")
    ap.add_argument("--feeder", type=Path, action="append", help="feeder file(s); default: the IEEE EU LV feeder")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=15, help="reads of each feeder per process")
    args = ap.parse_args()
    paths = [p.resolve() for p in args.feeder or [IEEE]]
    rows = {"A": [], "B": []}
    for _ in range(args.rounds):
        for side, tree in (("A", ROOT), ("B", args.ref.resolve())):
            rows[side].append(_run(tree, paths, args.n))
    same = all(a[p][2] == b[p][2] for a, b in zip(rows["A"], rows["B"]) for p in a)
    print(f"{len(paths)} feeder(s), {args.rounds} rounds of {args.n} reads each; A = {ROOT}, B = {args.ref}")
    print(f"the same Feeder (pickle bytes) in A and B: {'yes' if same else 'NO'}")
    for k, what in ((0, "compile"), (1, "read")):
        a = [sum(r[p][k] for p in r) for r in rows["A"]]
        b = [sum(r[p][k] for p in r) for r in rows["B"]]
        ratios = [x / y for x, y in zip(a, b)]
        print(
            f"{what:8s} A {statistics.median(a) * 1e3:7.1f} ms  B {statistics.median(b) * 1e3:7.1f} ms  "
            f"A/B median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
