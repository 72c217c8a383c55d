"""Envelopes for many feeders in parallel, resumable.

Each feeder's results are computed in a worker and land in `RESULTS/feeders/<name>/` by one
atomic directory rename, so an interrupted batch resumes where it stopped: finished feeders are
skipped, unfinished ones leave nothing behind. A feeder that fails is reported in
`RESULTS/failures.csv` and does not stop the others (it is tried again on the next run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from nfca.errors import InputError, OutputError

METHODS = ("optimal", "fair")
DIRECTIONS = ("import", "export")


@dataclass(frozen=True)
class FeederJob:
    name: str
    path: Path


@dataclass
class BatchReport:
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
    try:
        df = pd.read_csv(manifest, dtype=str)
    except Exception as exc:
        raise InputError(f"{manifest}: cannot read manifest ({' '.join(str(exc).split())})") from None
    if not {"feeder", "master"} <= set(df.columns):
        raise InputError(f"{manifest}: a manifest needs columns feeder and master")
    return [FeederJob(str(r.feeder), (manifest.parent / str(r.master)).resolve()) for r in df.itertuples()]


def result_dir(out: Path, name: str) -> Path:
    return Path(out) / "feeders" / name


def is_done(out: Path, name: str) -> bool:
    return (result_dir(out, name) / "summary.json").is_file()


def run_feeder(job: FeederJob, out: Path, options=None, crs: str | None = None) -> float:
    """Compute, verify and write one feeder's envelopes; returns seconds. Runs in a worker."""
    from nfca.engine.opendss import read_feeder
    from nfca.model.envelope import EnvelopeOptions
    from nfca.io.outputs import write_study
    from nfca.studies.envelopes import run_envelopes

    t0 = time.perf_counter()
    feeder = read_feeder(job.path)
    study = run_envelopes(feeder, METHODS, DIRECTIONS, options or EnvelopeOptions())
    final = result_dir(out, job.name)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{job.name}-"))
    except OSError as exc:
        raise OutputError(f"{final.parent}: results folder cannot be written ({exc.strerror or exc})") from None
    try:
        write_study(study, tmp, ("csv", "json", "gpkg"), crs)
        try:
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


def _worker(job: FeederJob, out: Path, options, crs: str | None) -> tuple[str, float | None, str]:
    from nfca.errors import NfcaError

    try:
        return job.name, run_feeder(job, out, options, crs), ""
    except NfcaError as exc:
        return job.name, None, str(exc)
    except Exception as exc:  # a bug in one feeder must not stop the others
        return job.name, None, f"internal error: {type(exc).__name__}: {exc}"


def run_batch(
    jobs: list[FeederJob],
    out: Path,
    options=None,
    workers: int | None = None,
    dask_address: str | None = None,
    crs: str | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> BatchReport:
    """Run every job not already done; `progress(name, status)` after each feeder."""
    from nfca.io.outputs import prepare_dir, write_csv

    out = prepare_dir(out)
    report = BatchReport()
    todo = []
    for job in jobs:
        if is_done(out, job.name):
            report.skipped.append(job.name)
        else:
            todo.append(job)
    for stale in (out / "feeders").glob(".*-*") if (out / "feeders").exists() else []:
        shutil.rmtree(stale, ignore_errors=True)  # leftovers of a killed run

    def record(name: str, seconds: float | None, error: str) -> None:
        if seconds is None:
            report.failed[name] = error
        else:
            report.done.append(name)
            report.seconds[name] = seconds
        if progress:
            progress(name, "failed" if seconds is None else "done")

    if dask_address:
        from distributed import Client, as_completed

        with Client(dask_address) as client:
            futures = [client.submit(_worker, job, out, options, crs, key=f"nfca-{job.name}", pure=False) for job in todo]
            for fut in as_completed(futures):
                record(*fut.result())
    elif todo:
        n = workers or min(len(todo), os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as pool:
            names = {pool.submit(_worker, job, out, options, crs): job.name for job in todo}
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
    failures = pd.DataFrame(sorted(report.failed.items()), columns=["feeder", "error"])
    write_csv(out / "failures.csv", failures)
    return report
