"""The engine process's life: it lives as long as the process that started it, whichever thread
did, and no longer (`nfca.engine.worker`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from nfca.engine import close_all, powerflows, read_feeder, session
from tests.feeder_texts import four_wire_kron_text, write_dss


def test_an_engine_started_by_a_thread_outlives_the_thread(tmp_path):
    """A thread that starts an engine (a verification thread finding none alive for its feeder)
    and ends leaves it serving: the next power flow is answered by that same engine."""
    path = write_dss(tmp_path, four_wire_kron_text())
    close_all()
    try:
        got = {}
        thread = threading.Thread(target=lambda: got.update(feeder=read_feeder(path)))
        thread.start()
        thread.join()
        engine = session._engines[session._key(path)]
        time.sleep(0.5)  # time for a signal sent at the thread's end to land
        assert engine.alive()
        assert engine.powerflows(got["feeder"], [{}], None)[0].converged
        assert powerflows(got["feeder"], [{}])[0].converged and session._engines[session._key(path)] is engine
    finally:
        close_all()


_PARENT = """
import sys
from nfca.engine import session

engine = session.Engine()
engine.start_read(sys.argv[1], 9.2, None)
print(engine.process.pid, flush=True)
sys.stdin.read()  # until killed
"""


def _gone(pid: int) -> bool:
    """The process has exited (a zombie left for whoever adopted it has exited too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_engine_exits_when_its_parent_process_is_killed(tmp_path):
    """Its parent killed (no chance to stop it) while the engine is deep in one long OpenDSS call
    (a compile whose last command solves a long daily simulation), the engine exits within
    seconds and removes its private working folder."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    long_solve = "Set mode=daily stepsize=1s number=2000000\nSolve\n"
    path = write_dss(tmp_path, four_wire_kron_text() + long_solve)
    with subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(temp)},
    ) as parent:
        engine = int(parent.stdout.readline())
        try:
            deadline = time.monotonic() + 60
            while _cpu_s(engine) < 1.0 and time.monotonic() < deadline:  # well into the long solve
                time.sleep(0.05)
            assert not _gone(engine)
            assert [p.name.startswith("nfca-engine-") for p in temp.iterdir()] == [True]
            parent.kill()
            parent.wait()
            deadline = time.monotonic() + 5
            while not _gone(engine) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _gone(engine)
            assert list(temp.iterdir()) == []
        finally:
            if not _gone(engine):
                os.kill(engine, signal.SIGKILL)
            parent.kill()


def test_an_engine_leaves_no_folder_however_it_ends(tmp_path, monkeypatch):
    """Its private working folder is gone once it has ended: closed before it was asked anything
    (the spare `nfca envelopes` starts before parsing its arguments, when they only ask for help),
    closed after its work, or crashed (OpenDSS killed by SIGSEGV, as a malformed file would)."""
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where this process makes engine folders
    path = write_dss(tmp_path, four_wire_kron_text())
    spare = session.Engine()
    assert [p.name.startswith("nfca-engine-") for p in temp.iterdir()] == [True]
    spare.close()
    assert spare.process.poll() is not None and list(temp.iterdir()) == []

    worked = session.Engine()
    worked.read(str(path), 9.2, None)
    worked.close()
    assert worked.process.returncode == 0 and list(temp.iterdir()) == []  # it ended by itself

    crashed = session.Engine()
    crashed.read(str(path), 9.2, None)
    crashed.process.send_signal(signal.SIGSEGV)
    try:
        crashed.read(str(path), 9.2, None)
    except Exception as exc:
        assert "the OpenDSS engine crashed" in str(exc)
    else:
        raise AssertionError("a read from a crashed engine must fail")
    assert list(temp.iterdir()) == []
    crashed.close()


def test_nfca_envelopes_help_leaves_no_engine_behind(tmp_path):
    """`nfca envelopes` starts its engine before parsing its arguments; a command that ends at
    once (its help) stops it and removes its folder."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    nfca = Path(sys.executable).with_name("nfca")
    res = subprocess.run(
        [str(nfca), "envelopes", "--help"], capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temp)}
    )
    assert res.returncode == 0 and "--guarantee" in res.stdout
    assert list(temp.iterdir()) == []
