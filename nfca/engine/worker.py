"""The OpenDSS engine process: `python -m nfca.engine.worker READ_FD WRITE_FD`.

It compiles one feeder once and answers requests on a pipe (pickled tuples, see
`nfca.engine.session`): `("read", path, default_capacity_kva, ampacity)` and `("powerflows", kw_kvar,
source_pu)`. A crash of OpenDSS kills this process only; the caller reports it. It dies with its
parent (Linux: PR_SET_PDEATHSIG), ignores Ctrl-C (the parent stops it), and works in a private
temporary folder that it removes on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path


def _die_with_parent() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def serve(requests: Connection, replies: Connection) -> None:
    from nfca.engine import opendss
    from nfca.errors import NfcaError

    workdir = Path(tempfile.mkdtemp(prefix="nfca-engine-"))
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
    _die_with_parent()
    # pandas is not needed here: opendssdirect loads it only for its optional DataFrame helpers
    # (0.16 s of every engine's start-up, and less code in the locked-down process)
    sys.modules.setdefault("pandas", None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    requests = Connection(int(sys.argv[1]), writable=False)
    replies = Connection(int(sys.argv[2]), readable=False)
    try:
        serve(requests, replies)
    except (BrokenPipeError, EOFError):
        pass


if __name__ == "__main__":
    main()
