"""Envelopes for many feeders in parallel, resumable.

Each feeder's results are computed in a worker, written into `RESULTS/.nfca-work/` and land in
`RESULTS/feeders/<name>/` by one atomic directory rename, with a completeness marker
(`.nfca-complete`: every file's size and SHA-256) written last. A rerun skips the feeders whose
marker checks out and recomputes the others (missing, damaged, half-written), whatever their
names. A feeder that fails is reported in `RESULTS/failures.csv` and does not stop the others (it
is tried again on the next run). Ctrl-C or SIGTERM cancels the feeders not started, stops the
workers (and their OpenDSS engines) and leaves only finished feeders behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from nfca.errors import InputError, Interrupted, OutputError
from nfca.model.network import DEFAULT_CAPACITY_KVA
from nfca.model.ratings import AmpacityRules

METHODS = ("optimal", "fair")
DIRECTIONS = ("import", "export")


@dataclass(frozen=True)
class BatchSpec:
    """What to compute for every feeder: the options, methods, directions, participants (a rule
    or a CSV with a `feeder` column), capacities CSV, default capacity, the run's provenance and
    the ampacity rules for lines without normamps, and the output formats of each feeder."""

    options: object = None  # EnvelopeOptions; None: the defaults
    methods: tuple[str, ...] = METHODS
    directions: tuple[str, ...] = DIRECTIONS
    participants: str = "all"
    seed: int = 0
    capacities: Path | None = None
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA
    provenance: dict = field(default_factory=dict)
    ampacity: AmpacityRules = AmpacityRules()  # ampacities of lines without normamps (nfca.model.ratings)
    formats: tuple[str, ...] = ("csv", "json", "gpkg", "html")  # nfca.io.outputs.DEFAULT_FORMATS (+ png on request)


@dataclass(frozen=True)
class FeederJob:
    """One feeder of a batch: its name (its results folder) and its file."""

    name: str
    path: Path


@dataclass
class BatchReport:
    """What a batch run did: feeders computed, skipped (already done) and failed (with why)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def discover(inputs: Iterable[Path]) -> list[FeederJob]:
    """Feeder files, folders (every Master.dss below, or a manifest.csv) or manifest CSVs."""
    jobs: list[FeederJob] = []
    for item in map(Path, inputs):
        if item.is_dir():
            manifest = item / "manifest.csv"
            if manifest.is_file():
                jobs += _from_manifest(manifest)
            else:
                jobs += [FeederJob(_name(p, item), p) for p in sorted(item.rglob("Master.dss"))]
        elif item.suffix.lower() == ".csv":
            jobs += _from_manifest(item)
        elif item.is_file():
            jobs.append(FeederJob(item.parent.name if item.name.lower() == "master.dss" else item.stem, item))
        else:
            raise InputError(f"{item}: no such feeder file, folder or manifest")
    names = [j.name for j in jobs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise InputError(f"two feeders are both named {dup}: give them distinct folder names")
    if not jobs:
        raise InputError("no feeders found (looked for .dss files, Master.dss in folders and manifest.csv)")
    return jobs


def _name(path: Path, root: Path) -> str:
    rel = path.parent.relative_to(root)
    return "_".join(rel.parts) if rel.parts else root.name


def _from_manifest(manifest: Path) -> list[FeederJob]:
    from nfca.studies.profiles import read_table

    df = read_table(manifest)
    if not {"feeder", "master"} <= set(df.columns):
        raise InputError(f"{manifest}: a manifest needs columns feeder and master")
    return [FeederJob(str(r.feeder), (manifest.parent / str(r.master)).resolve()) for r in df.itertuples()]


COMPLETE = ".nfca-complete"  # written last into a feeder's results: its files' sizes and hashes
WORK = ".nfca-work"  # RESULTS/.nfca-work: feeders being written, and damaged results on their way out
LOCK = ".nfca-lock"


def result_dir(out: Path, name: str) -> Path:
    """The results folder of one feeder."""
    return Path(out) / "feeders" / name


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mark_complete(folder: Path) -> None:
    """Write the completeness marker of a feeder's results (last, once every file is in place)."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": _digest(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != COMPLETE
    }
    (folder / COMPLETE).write_text(json.dumps({"files": files}, indent=1) + "\n")


def is_done(out: Path, name: str) -> bool:
    """Whether the feeder's results are complete: its marker lists files that are all there, whole."""
    folder = result_dir(out, name)
    try:
        files = json.loads((folder / COMPLETE).read_text())["files"]
        return (
            bool(files)
            and "summary.json" in files
            and all(
                (folder / f).stat().st_size == meta["bytes"] and _digest(folder / f) == meta["sha256"]
                for f, meta in files.items()
            )
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def run_feeder(job: FeederJob, out: Path, spec: BatchSpec | None = None, crs: str | None = None) -> float:
    """Compute, verify and write one feeder's envelopes; returns seconds. Runs in a worker."""
    from dataclasses import replace

    from nfca.io.outputs import write_study
    from nfca.model.envelope import EnvelopeOptions
    from nfca.studies.envelopes import prepare_feeder, run_envelopes

    t0 = time.perf_counter()
    spec = spec or BatchSpec()
    feeder, chosen = prepare_feeder(
        job.path, spec.participants, spec.seed, spec.capacities, spec.default_capacity_kva, job.name, spec.ampacity
    )
    study = run_envelopes(feeder, spec.methods, spec.directions, spec.options or EnvelopeOptions(), chosen)
    study = replace(study, provenance=spec.provenance)
    final = result_dir(out, job.name)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        (Path(out) / WORK).mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=Path(out) / WORK, prefix="feeder-"))
    except OSError as exc:
        raise OutputError(f"{final.parent}: results folder cannot be written ({exc.strerror or exc})") from None
    try:
        write_study(study, tmp, tuple(dict.fromkeys(("csv", "json", *spec.formats))), crs)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; results are for everyone to read, as files are
        try:
            mark_complete(tmp)
            os.rename(tmp, final)  # atomic: the feeder's results appear whole or not at all
        except OSError as exc:
            # Another run finished this feeder first (say a worker of a killed batch that went on):
            # its results are complete, so keep them and drop ours rather than have two.
            if not is_done(out, job.name):
                raise OutputError(f"{final}: cannot be written ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return time.perf_counter() - t0


def _worker_init() -> None:
    """A worker ignores Ctrl-C (the batch stops it), exits at once on SIGTERM after releasing
    what it holds (its engine, the locks libraries registered), and dies with the batch (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_exit)
    from nfca import engine
    from nfca.solver import few_collections

    few_collections()

    engine.prestart()  # OpenDSS loads while the worker imports the optimisation
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_exit(signum, frame) -> None:
    import atexit

    atexit._run_exitfuncs()  # multiprocessing's finalizers (no "leaked semaphore" warning), engines closed
    os._exit(128 + signum)


def _worker(job: FeederJob, out: Path, spec: BatchSpec | None, crs: str | None) -> tuple[str, float | None, str]:
    from nfca.errors import NfcaError

    try:
        return job.name, run_feeder(job, out, spec, crs), ""
    except NfcaError as exc:
        return job.name, None, str(exc)
    except Exception as exc:  # a bug in one feeder must not stop the others
        return job.name, None, f"internal error: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _locked(out: Path):
    """One batch at a time per results folder (an advisory lock, released when the process ends)."""
    import fcntl

    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"{out}: output folder cannot be written ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(
                f"{out}: another nfca batch is writing to this folder; wait for it or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def _run_locked(jobs, out, spec, workers, dask_address, crs, progress) -> BatchReport:
    shutil.rmtree(out / WORK, ignore_errors=True)  # leftovers of a killed run (this process holds the lock)
    report = BatchReport()
    todo = []
    for job in jobs:
        if is_done(out, job.name):
            report.skipped.append(job.name)
            continue
        if result_dir(out, job.name).exists():  # damaged or incomplete: recomputed from scratch
            (out / WORK).mkdir(exist_ok=True)
            os.rename(result_dir(out, job.name), tempfile.mkdtemp(dir=out / WORK, prefix="damaged-"))
        todo.append(job)
    shutil.rmtree(out / WORK, ignore_errors=True)
    todo.sort(key=_size, reverse=True)  # largest first: the pool's last jobs are then short ones

    def record(name: str, seconds: float | None, error: str) -> None:
        if seconds is None:
            report.failed[name] = error
        else:
            report.done.append(name)
            report.seconds[name] = seconds
        if progress:
            progress(name, "failed" if seconds is None else "done")

    try:
        if dask_address:
            from distributed import Client, as_completed

            with Client(dask_address) as client:
                futures = [
                    client.submit(_worker, job, out, spec, crs, key=f"nfca-{job.name}", pure=False) for job in todo
                ]
                try:
                    for fut in as_completed(futures):
                        record(*fut.result())
                finally:
                    client.cancel(futures)
        elif todo:
            _run_local(todo, out, spec, workers, crs, record)
    except (KeyboardInterrupt, Interrupted) as exc:
        shutil.rmtree(out / WORK, ignore_errors=True)  # the stopped workers' half-written feeders
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        finished = len(report.done) + len(report.skipped)
        raise Interrupted(code, f"interrupted; {finished} feeder(s) finished, rerun to resume") from None
    return report


def _size(job: FeederJob) -> int:
    """A feeder's cost estimate before it is read: its file's size (lines and loads)."""
    try:
        return job.path.stat().st_size
    except OSError:
        return 0  # reported when its worker reads it


def _run_local(todo: list[FeederJob], out: Path, spec, workers: int | None, crs: str | None, record) -> None:
    n = workers or min(len(todo), os.cpu_count() or 1)
    quiet_resource_tracker()
    pool = ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn"), initializer=_worker_init)
    try:
        names = {pool.submit(_worker, job, out, spec, crs): job.name for job in todo}
        pending = set(names)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                try:
                    record(*fut.result())
                except BrokenProcessPool:  # a worker was killed: the rest resumes next run
                    if is_done(out, names[fut]):  # it finished before the pool broke
                        record(names[fut], 0.0, "")
                    else:
                        record(names[fut], None, "worker process died; rerun the batch to resume")
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def quiet_resource_tracker() -> None:
    """A worker that must be killed (it did not stop within 5 s of SIGTERM, say on a loaded
    machine) leaves the semaphores its libraries made (Pyomo makes one at import) to Python's
    resource tracker, which removes them, as it should, then prints a "leaked semaphore" warning
    after our last line. Ask it to remove them quietly: it starts with the first pool and takes
    the interpreter's -W options."""
    option = "ignore:resource_tracker:UserWarning"
    if option not in sys.warnoptions:
        sys.warnoptions.append(option)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (their engines die with them), then cancel what has not started; the
    pool's own thread sees the workers gone and releases its queues and locks."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    pool.shutdown(wait=True, cancel_futures=True)


def run_batch(
    jobs: list[FeederJob],
    out: Path,
    spec: BatchSpec | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    crs: str | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> BatchReport:
    """Run every job not already done; `progress(name, status)` after each feeder."""
    from nfca.io.outputs import prepare_dir, write_csv

    out = prepare_dir(out)
    with _locked(out):
        report = _run_locked(jobs, out, spec, workers, dask_address, crs, progress)
    failures = pd.DataFrame(sorted(report.failed.items()), columns=["feeder", "error"])
    write_csv(out / "failures.csv", failures)
    return report
