"""A batch killed mid-run resumes with no lost and no duplicated feeder results.

`nfca batch` runs in a subprocess; once the first feeder has finished, a worker process is
killed (SIGKILL, as the kernel's OOM killer would) or the whole process group is. The rerun
must finish every feeder exactly once: one complete result folder per feeder, the finished ones
not recomputed, no temporary folders left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.feeder_texts import three_wire_text, write_dss

pytestmark = pytest.mark.slow  # subprocesses killed mid-run: minutes on a loaded machine

NFCA = Path(sys.executable).parent / "nfca"
N_FEEDERS = 8


@pytest.fixture
def grid(tmp_path):
    root = tmp_path / "grid"
    for k in range(N_FEEDERS):
        (root / f"f{k}").mkdir(parents=True)
        write_dss(root / f"f{k}", three_wire_text(n_segments=3 + k % 3, seg_m=15 + 3 * k))
    return root


def _start(grid: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(NFCA), "batch", str(grid), "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _done(out: Path) -> set[str]:
    return {p.parent.name for p in (out / "feeders").glob("*/summary.json")}


def _wait_for_first_result(proc: subprocess.Popen, out: Path, timeout: float = 90) -> set[str]:
    t0 = time.monotonic()
    while not _done(out):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "no feeder finished in time"
        time.sleep(0.05)
    return _done(out)


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    kids = psutil.Process(proc.pid).children(recursive=True)
    return [p for p in kids if "spawn_main" in " ".join(p.cmdline())]


def _rerun_and_check(grid: Path, out: Path, finished_before: set[str]) -> None:
    stamps = {n: (out / "feeders" / n / "summary.json").stat().st_mtime_ns for n in finished_before}
    rerun = subprocess.run(
        [str(NFCA), "batch", str(grid), "--out", str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert rerun.returncode == 0, rerun.stderr
    counts = re.search(r"(\d+) computed, (\d+) already done, (\d+) failed", " ".join(rerun.stderr.split()))
    computed, skipped, failed = map(int, counts.groups())
    assert failed == 0 and computed + skipped == N_FEEDERS and skipped >= len(finished_before)
    names = {f"f{k}" for k in range(N_FEEDERS)}
    entries = sorted(p.name for p in (out / "feeders").iterdir())
    assert entries == sorted(names), entries  # one folder per feeder, no temporary folders left
    for name in names:
        folder = out / "feeders" / name
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["verified"]
        table = pd.read_csv(folder / "envelopes.csv")
        assert len(table) == summary["end_users"] * 4  # every end-user x 2 methods x 2 directions
        assert not table.duplicated(["end_user", "direction", "method"]).any()
    for name, stamp in stamps.items():  # finished feeders were not recomputed
        assert (out / "feeders" / name / "summary.json").stat().st_mtime_ns == stamp
    assert pd.read_csv(out / "failures.csv").empty
    types = pd.read_csv(out / "feeder_types.csv")
    assert sorted(types["feeder"]) == sorted(names)


def test_killing_a_worker_loses_nothing(grid, tmp_path):
    out = tmp_path / "results"
    proc = _start(grid, out)
    try:
        finished = _wait_for_first_result(proc, out)
        workers = _workers(proc)
        assert workers, "no worker processes found"
        workers[0].send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert len(finished) < N_FEEDERS
    # the batch itself ends cleanly, saying what to do
    assert proc.returncode in (0, 7), stderr
    if proc.returncode == 7:
        assert "worker process died; rerun the batch to resume" in " ".join(stderr.split())
    assert "Traceback" not in stderr
    _rerun_and_check(grid, out, _done(out))


def test_killing_the_whole_batch_loses_nothing(grid, tmp_path):
    out = tmp_path / "results"
    proc = _start(grid, out)
    try:
        _wait_for_first_result(proc, out)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch and its workers, mid-run
        proc.communicate()
    time.sleep(0.5)
    assert len(_done(out)) < N_FEEDERS
    _rerun_and_check(grid, out, _done(out))


def test_a_feeder_finished_twice_keeps_one_result(grid, tmp_path):
    """A worker of a killed batch can go on and finish a feeder that the rerun computes too: the
    second to finish keeps the first's complete result and leaves nothing behind."""
    from nfca.studies.batch import FeederJob, run_feeder

    out = tmp_path / "results"
    job = FeederJob("f0", grid / "f0" / "Master.dss")
    run_feeder(job, out)
    first = (out / "feeders" / "f0" / "summary.json").read_text()
    run_feeder(job, out)
    assert sorted(p.name for p in (out / "feeders").iterdir()) == ["f0"]
    assert (out / "feeders" / "f0" / "summary.json").read_text() == first
