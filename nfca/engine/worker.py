"""The OpenDSS engine process: `python -m nfca.engine.worker READ_FD WRITE_FD PARENT_PID WORKDIR`.

It compiles one feeder once and answers requests on a pipe (pickled tuples, see
`nfca.engine.session`): `("read", path, default_capacity_kva, ampacity)` and `("powerflows", kw_kvar,
source_pu)`. A crash of OpenDSS kills this process only; the caller reports it. It ignores Ctrl-C
(the parent stops it) and works in the private folder WORKDIR, made by its caller, which it
removes on exit (the caller removes it too once this process has ended, however it ended).

It lives as long as its parent process, whichever of the parent's threads started it, and exits
within `WATCH_S` of the parent's death, removing its folder, even in the middle of a long OpenDSS
call: a thread of its own watches the parent (OpenDSS's C calls release the GIL). Linux's
PR_SET_PDEATHSIG is not used: it fires when the parent *thread* ends, so an engine started by a
short-lived thread (a verification thread, say) would be killed with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

WATCH_S = 0.2  # how often the engine checks that its parent process is alive


def _exit_with_parent(parent: int, workdir: Path) -> None:
    """Exit (removing `workdir`) as soon as the process `parent` is no longer this one's parent:
    it died, and this process was handed to another (init, or a subreaper)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, name="nfca-engine-parent", daemon=True).start()


def serve(requests: Connection, replies: Connection, workdir: Path) -> None:
    """Answer requests until the pipe closes; then remove `workdir` (the private folder)."""
    from nfca.engine import opendss
    from nfca.errors import NfcaError

    try:
        dss = opendss.start(workdir)
        replies.send(("ready",))
        flows = None
        while True:
            try:
                request = requests.recv()
            except (EOFError, OSError):
                return
            try:
                if request[0] == "read":
                    _, path, absolute, default_kva, ampacity = request
                    flows = None  # its batches point into the circuit about to be cleared
                    opendss.compile_feeder(dss, Path(absolute), Path(path))
                    feeder = opendss.read_feeder(dss, Path(path), default_kva, ampacity)
                    shapes = opendss.load_shapes(dss)
                    flows = opendss.Flows(dss, feeder)
                    reply = ("ok", (feeder, shapes, flows.layout))
                elif request[0] == "powerflows":
                    _, kw_kvar, source_pu = request
                    reply = ("ok", flows.solve(kw_kvar, source_pu))
                else:
                    return
            except NfcaError as exc:
                reply = ("error", type(exc).__name__, str(exc))
            except Exception as exc:  # a bug in the reader: the caller reports it as one
                reply = ("bug", type(exc).__name__, " ".join(str(exc).split()))
            replies.send(reply)
    finally:
        os.chdir("/")
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    workdir = Path(sys.argv[4])  # made private (mode 700) by the caller, who removes it too
    _exit_with_parent(int(sys.argv[3]), workdir)
    # pandas is not needed here: opendssdirect loads it only for its optional DataFrame helpers
    # (0.16 s of every engine's start-up, and less code in the locked-down process)
    sys.modules.setdefault("pandas", None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    requests = Connection(int(sys.argv[1]), writable=False)
    replies = Connection(int(sys.argv[2]), readable=False)
    try:
        serve(requests, replies, workdir)
    except (BrokenPipeError, EOFError):
        pass
    os._exit(0)  # its folder is gone and nothing is buffered: the caller need not wait for Python's teardown


if __name__ == "__main__":
    main()
