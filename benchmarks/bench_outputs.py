"""What writing the outputs costs beside computing them (issue 13: report.html on every run,
figures kept fast; issue 16: lean start-up). Prints, for the IEEE European LV feeder's study
(optimal + fair, import + export), the time of each output format written on its own, the
report's size, and the import time of `nfca` and of the CLI. Ratios within one run count; the
machine is shared.

    .venv/bin/python benchmarks/bench_outputs.py
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IEEE = ROOT / "feeders" / "ieee_eulv" / "Master.dss"


def _import_s(code: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import nfca
    from nfca.io.outputs import write_study

    print(f"machine: {platform.node()} | {platform.machine()} | Python {platform.python_version()}")
    base = _import_s("pass")
    print(f"python start-up          {base:6.2f} s")
    print(f"import nfca              {_import_s('import nfca'):6.2f} s")
    print(f"import cli (nfca --help) {_import_s('import cli'):6.2f} s")
    t0 = time.perf_counter()
    study = nfca.compute_envelopes(IEEE)
    compute = time.perf_counter() - t0
    print(f"compute (read, solve 4 sets, verify): {compute:6.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("csv", "json", "gpkg", "png", "html"):
            t0 = time.perf_counter()
            files = write_study(study, Path(tmp) / fmt, (fmt,))
            dt = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in files) / 1e3
            print(f"write {fmt:5} {dt:6.2f} s  ({dt / compute:4.2f} x compute)  {len(files)} file(s), {size:7.0f} kB")


if __name__ == "__main__":
    main()
