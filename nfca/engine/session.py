"""The caller's side of the engine: OpenDSS runs in a child process (`nfca.engine.worker`), which
compiles a feeder once and then serves every power flow on it; a process keeps at most
`MAX_ENGINES` of them, reused for the next feeder read (a study of many feeders starts one).

A crash of OpenDSS (a segmentation fault on a malformed file) ends that child only and becomes
a one-line FeederError naming the feeder. Requests and replies are pickled over a pipe; power
flows travel as numpy arrays (one request for a whole list of cases), so that the verification
of an envelope costs about what it costs in-process. An engine lives as long as this process,
whichever thread started it (a verification thread may), and exits soon after it dies.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from nfca import errors
from nfca.engine.opendss import DEFAULT_CAPACITY_KVA
from nfca.errors import FeederError
from nfca.model.ratings import AmpacityRules

if TYPE_CHECKING:
    from nfca.engine.opendss import FlowLayout, PowerFlow
    from nfca.model.network import Feeder

LoadShapes = dict  # end-user name -> LoadShapeSeries
MAX_ENGINES = 2  # engines kept alive per process (the feeder being worked on, and the one before)


class Engine:
    """One OpenDSS child process holding one compiled feeder (a later `read` compiles another in
    its place: a fresh circuit, the same process)."""

    def __init__(self) -> None:
        # the engine's private working folder: made here, so that it is removed here too once
        # the engine is gone, however it ended (the engine removes it itself when it can)
        self.workdir = tempfile.mkdtemp(prefix="nfca-engine-")
        down_r, down_w = os.pipe()
        up_r, up_w = _wide_pipe()
        try:
            self.process = subprocess.Popen(
                # -P: not the current folder first on sys.path (a folder holding an `nfca` package,
                # e.g. an unpacked feeder archive, would run its code in the engine)
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "nfca.engine.worker",
                    str(down_r),
                    str(up_w),
                    str(os.getpid()),
                    self.workdir,
                ],
                pass_fds=(down_r, up_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except BaseException:
            os.rmdir(self.workdir)
            raise
        finally:
            os.close(down_r)
            os.close(up_w)
        self._send = Connection(down_w, readable=False)
        self._recv = Connection(up_r, writable=False)
        self._ready = False
        self._pending: tuple | None = None  # a read asked for by `start_read`, its reply not taken
        self.path = ""
        self.feeder: Feeder | None = None
        self.layout: FlowLayout | None = None

    def _ask(self, request: tuple, doing: str):
        self._post(request, doing)
        return self._answer(doing)

    def _post(self, request: tuple, doing: str) -> None:
        try:
            self._send.send(request)  # taken up once the engine is ready
        except (EOFError, OSError):
            raise self._crashed(doing) from None

    def _answer(self, doing: str):
        try:
            if not self._ready:
                self._recv.recv()
                self._ready = True
            reply = self._recv.recv()
        except (EOFError, OSError):
            raise self._crashed(doing) from None
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "error":
            raise getattr(errors, reply[1], errors.NfcaError)(reply[2])
        raise RuntimeError(f"in the OpenDSS engine: {reply[1]}: {reply[2]}")

    def _crashed(self, doing: str) -> FeederError:
        return FeederError(
            f"{self.path}: the OpenDSS engine crashed while {doing} ({self._death()}); "
            "the feeder file is not usable as it is"
        )

    def _death(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.close()
            return "it stopped answering"
        shutil.rmtree(self.workdir, ignore_errors=True)  # a crashed engine could not remove it
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def start_read(self, path: str, default_capacity_kva: float, ampacity: AmpacityRules | None) -> None:
        """Ask the engine to read a feeder and go on: `read` with the same arguments takes the reply."""
        self._pending = self._read_request(path, default_capacity_kva, ampacity)
        self.path = path
        self._post(self._pending, "reading the feeder")

    def read(self, path: str, default_capacity_kva: float, ampacity: AmpacityRules | None) -> tuple[Feeder, LoadShapes]:
        """Read a feeder, or take the reply of the same read begun by `start_read` (never another:
        `session.read` closes an engine that began one)."""
        request = self._read_request(path, default_capacity_kva, ampacity)
        self.path = path
        if self._pending != request:
            self._post(request, "reading the feeder")
        self._pending = None
        feeder, shapes, self.layout = self._answer("reading the feeder")
        self.feeder, self.shapes = feeder, shapes
        return feeder, shapes

    @staticmethod
    def _read_request(path: str, default_capacity_kva: float, ampacity: AmpacityRules | None) -> tuple:
        return ("read", path, os.path.abspath(path), default_capacity_kva, ampacity)

    def powerflows(
        self, feeder: Feeder, cases: list[dict[str, tuple[float, float]]], source_pu: float | None
    ) -> list[PowerFlow]:
        import numpy as np

        layout = self.layout
        given, known = feeder.end_user, self.feeder.end_user
        base = np.array([((u := given.get(n) or known[n]).p_kw, u.q_kvar) for n in layout.loads], dtype=float).reshape(
            -1, 2
        )
        where = {n: i for i, n in enumerate(layout.loads)}
        kw_kvar = np.repeat(base[None, :, :], len(cases), axis=0)
        names, rows = None, None
        for c, loads in enumerate(cases):
            if (keys := tuple(loads)) != names:  # cases of one box name the same loads: look them up once
                names, rows = keys, [_row(where, name, feeder) for name in keys]
            if rows:
                kw_kvar[c, rows] = list(loads.values())
        conv, iters, v, amps, i_tr = self._ask(("powerflows", kw_kvar, source_pu), "solving a power flow")
        return [layout.flow(conv[c], iters[c], v[c], amps[c], i_tr[c]) for c in range(len(cases))]

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Stop the engine: it sees its pipe closed, removes its working folder and exits. One
        never asked anything (a spare, perhaps still starting) is killed at once, one still busy
        after CLOSE_WAIT_S too; either way its folder is removed once it has ended."""
        for conn in (self._send, self._recv):
            try:
                conn.close()
            except OSError:
                pass
        if self.process.poll() is None:
            if not self._ready and self._pending is None and self.feeder is None:
                self.process.kill()  # nothing to finish: an exit need not wait for its start-up
            try:
                self.process.wait(timeout=CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


PIPE_BYTES = 1 << 20  # Linux's largest pipe buffer for an unprivileged process (pipe-max-size)


def _wide_pipe() -> tuple[int, int]:
    """A pipe for the engine's replies with a `PIPE_BYTES` buffer where the system allows it.

    A verification's reply is about 10 MB of voltages and currents. Through the default 64 kB
    buffer the caller reads it in ~160 pieces, and after each read its thread must take the
    interpreter lock back: with another thread busy (a solve beside a background verification)
    each costs up to a switch interval (5 ms), 0.26 s of flows became about 1 s. Ten pieces
    keep it near 0.3 s. Elsewhere, or when the system refuses, the pipe keeps its size."""
    r, w = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # not Linux; or over the user's pipe allowance
        pass
    return r, w


def _row(where: dict[str, int], name: str, feeder: Feeder) -> int:
    j = where.get(name)
    if j is None:
        j = where.get(name.lower())
    if j is None:
        raise FeederError(f"Load.{name} is not in {feeder.path}")
    return j


CLOSE_WAIT_S = 1.0
_engines: dict[str, Engine] = {}  # feeder path -> its engine, most recently used last
_spare: list[Engine] = []


def prestart(
    path: Path | str | None = None,
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA,
    ampacity: AmpacityRules | None = AmpacityRules(),
) -> None:
    """Start an engine now, so that OpenDSS loads while the caller does other work; with `path`,
    the engine starts reading that feeder too, and `read` with the same arguments takes it."""
    if not _spare:
        _spare.append(Engine())
    if path is not None and Path(path).is_file() and _spare[-1]._pending is None:
        _spare[-1].start_read(str(path), default_capacity_kva, ampacity)


def read(
    path: Path | str,
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA,
    ampacity: AmpacityRules | None = AmpacityRules(),
) -> tuple[Feeder, LoadShapes]:
    """Read any radial OpenDSS feeder: its `Feeder` and every load's load shape, from one compile.

    The file is read as `nfca.engine.script` allows (no programs, no files written, Redirect
    loops named), then compiled in an engine process that stays up for `powerflows` on the same
    feeder. Loads without XfkVA get `default_capacity_kva`; 0 makes XfkVA compulsory. Lines
    without normamps get their ampacity from `ampacity` (`nfca.model.ratings`: a table, a
    default; without either they are an error); `ampacity=None` for a power flow, which needs
    none. Raise FeederError naming what is wrong; what the reader assumed (disabled elements
    left out, voltage bases inferred, defaults given) is in `Feeder.notices`.
    """
    path = Path(path)
    if path.is_dir():
        raise FeederError(f"{path}: is a folder, not a feeder file (give the path of its Master.dss)")
    if not path.is_file():
        raise FeederError(f"{path}: no such feeder file")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise FeederError(f"{path}: the feeder file cannot be read ({exc.strerror or exc})") from None
    key = _key(path)
    request = Engine._read_request(str(path), default_capacity_kva, ampacity)
    started = next((e for e in _spare if e._pending == request), None)  # `prestart` began this read
    if started is not None:
        _spare.remove(started)
        if key in _engines:
            _engines.pop(key).close()
    engine = started or _engines.pop(key, None) or (_spare.pop() if _spare else None)
    if engine is not None and engine._pending not in (None, request):
        engine.close()  # it began reading another file: that reply, or that file's crash, is not ours
        engine = None
    if engine is None and len(_engines) >= MAX_ENGINES:  # reuse the least recently used one
        engine = _engines.pop(next(iter(_engines)))
    if engine is None or not engine.alive():
        if engine is not None:
            engine.close()
        engine = Engine()
    try:
        feeder, shapes = engine.read(str(path), default_capacity_kva, ampacity)
    except errors.NfcaError:
        if engine.alive() and not _spare:  # a bad file: the engine is fine, keep it for the next one
            _spare.append(engine)
        else:
            engine.close()
        raise
    except BaseException:
        engine.close()
        raise
    _engines[key] = engine
    while len(_engines) > MAX_ENGINES:  # at most MAX_ENGINES compiled feeders kept per process
        _engines.pop(next(iter(_engines))).close()
    return feeder, shapes


def read_feeder(
    path: Path | str,
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA,
    ampacity: AmpacityRules | None = AmpacityRules(),
) -> Feeder:
    """`read(path)[0]`: the feeder without its load shapes."""
    return read(path, default_capacity_kva, ampacity)[0]


def load_shapes(feeder: Feeder) -> LoadShapes:
    """The load shapes `read` returned with `feeder` (the same compile; read again only in
    another process)."""
    engine = _engines.get(_key(Path(feeder.path)))
    return engine.shapes if engine is not None else read(feeder.path, ampacity=None)[1]


def powerflows(
    feeder: Feeder, cases: list[dict[str, tuple[float, float]]], source_pu: float | None = None
) -> list[PowerFlow]:
    """Solve `feeder` in OpenDSS once per case of load powers (kW, kvar; consumption positive).

    Every load's power comes from the case, else from `feeder` (its end-users' p_kw, q_kvar):
    never from the file. The network is the one compiled by `read` (in this process; another
    process compiles the same file once). `source_pu` overrides the source voltage.
    """
    if not cases:
        return []
    key = _key(Path(feeder.path))
    engine = _engines.get(key)
    if engine is None or not engine.alive():
        if engine is not None:
            _engines.pop(key).close()
        read(feeder.path, ampacity=None)  # to compile it: a power flow needs no ampacity
        engine = _engines[key]
    _engines[key] = _engines.pop(key)  # most recently used last
    return engine.powerflows(feeder, cases, source_pu)


def close_all() -> None:
    """Stop every engine of this process (they also stop when it exits)."""
    while _engines:
        _engines.popitem()[1].close()
    while _spare:
        _spare.pop().close()


def _key(path: Path) -> str:
    return os.path.realpath(path)


atexit.register(close_all)
