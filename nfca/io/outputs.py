"""Writing results: a run's folder is replaced as a whole, and every file goes to a temporary name
and is renamed into place, so a run that stops half-way never leaves a half-written file nor
files of two runs side by side.

`run_folder(out)` is where a command writes: an empty temporary sibling of `out`, swapped in
for `out` (atomically, on Linux) only when the command succeeds. A folder is recognised as an
earlier nfca run by its `.nfca-run` marker; nfca refuses to replace a non-empty folder without
one (it is not nfca's to delete).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

import pandas as pd

from nfca.errors import OutputError

FORMATS = ("csv", "json", "gpkg", "png")


def prepare_dir(out: Path) -> Path:
    """Create the output folder (and check it is writable) before any work is done."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".nfca-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{out}: output folder cannot be written ({exc.strerror or exc})") from None
    return out


finished_runs: list[Path] = []  # run folders swapped in by this process (an interrupt after that lost nothing)
RUN_MARKER = ".nfca-run"  # written last into a run's folder: it holds one complete nfca run
_PARTIAL = ".nfca-partial"  # inside a run's temporary folder: the pid of the process writing it


@contextlib.contextmanager
def run_folder(out: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; when the block succeeds, it replaces `out`
    as a whole (the previous run, if any, is deleted). On any error or interruption the
    temporary folder is removed and `out` is left as it was. Leftovers of a killed run (kill -9)
    are removed by the next run into the same `out`.
    """
    out = Path(out).absolute()
    _check_replaceable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.nfca-"))
        (tmp / _PARTIAL).write_text(str(os.getpid()))
    except OSError as exc:
        raise OutputError(f"{out}: output folder cannot be written ({exc.strerror or exc})") from None
    try:
        yield tmp
        try:
            (tmp / _PARTIAL).unlink()
            (tmp / RUN_MARKER).write_text(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
            _swap(tmp, out)
            finished_runs.append(out)
        except OSError as exc:
            raise OutputError(f"{out}: output folder cannot be written ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: output folder cannot be written (it is a file)")
    if out.is_dir() and not (out / RUN_MARKER).is_file():
        try:
            with os.scandir(out) as it:
                entries = next(it, None)
        except OSError as exc:
            raise OutputError(f"{out}: output folder cannot be written ({exc.strerror or exc})") from None
        if entries is not None:
            raise OutputError(f"{out}: the folder holds files that are not an nfca run (no {RUN_MARKER} marker); "
                              "give a new or empty folder (nfca replaces a run's folder as a whole)")


def _remove_leftovers(out: Path) -> None:
    """Temporary folders of killed runs into `out`: named after it and holding a dead process's pid."""
    for p in out.parent.glob(f".{out.name}.nfca-*"):
        try:
            pid = int((p / _PARTIAL).read_text())
        except (OSError, ValueError):
            continue  # not ours, or a finished swap's old run (handled below)
        if not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RENAME_EXCHANGE = 2


def _swap(tmp: Path, out: Path) -> None:
    """Put `tmp` at `out`; the run `out` held, if any, ends at `tmp` (deleted by the caller)."""
    if not out.exists():
        os.rename(tmp, out)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(tmp), at_fdcwd, os.fsencode(out), _RENAME_EXCHANGE) == 0:
            return  # atomic: a reader sees the old run or the new one, never a mix
        if ctypes.get_errno() not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.nfca-"))
    (old / _PARTIAL).write_text(str(os.getpid()))
    os.rename(out, old / "old")
    os.rename(tmp, out)
    os.rename(old, tmp)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it onto `target` only if the block succeeds."""
    target = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix)
    except OSError as exc:
        raise OutputError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)  # some writers (GeoPackage) refuse to open an existing empty file
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(target: Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_csv(target: Path, df: pd.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return Path(target)


def write_json(target: Path, obj: dict) -> Path:
    return write_text(target, json.dumps(obj, indent=2, default=_jsonable, allow_nan=False) + "\n")


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "value"):
        return x.value
    return str(x)


def write_tables(study, out: Path, table: pd.DataFrame, formats: tuple[str, ...]) -> list[Path]:
    """envelopes.csv and summary.json of any study that has `summary()` (static or dynamic)."""
    written = []
    if "csv" in formats:
        written.append(write_csv(out / "envelopes.csv", table))
    if "json" in formats:
        written.append(write_json(out / "summary.json", study.summary()))
    return written


def write_study(study, out: Path, formats: tuple[str, ...] = FORMATS, crs: str | None = None) -> list[Path]:
    """Write an envelope study's outputs; returns the files written."""
    out = prepare_dir(out)
    table = study.table()
    written = write_tables(study, out, table, formats)
    if "gpkg" in formats and has_coordinates(study.feeder):
        written.append(write_geopackage(study, table, out / "envelopes.gpkg", crs))
    if "png" in formats:
        from nfca.io import plots

        for d in sorted(table["direction"].unique()):
            written.append(plots.envelope_bars(table[table["direction"] == d], out / f"envelopes_{d}.png", d))
        if {"optimal", "fair"} <= set(table["method"]):
            written.append(plots.fair_vs_optimal(table, out / "fair_vs_optimal.png"))
    return written


def has_coordinates(feeder) -> bool:
    return all(feeder.buses[u.bus].x is not None for u in feeder.end_users)


def write_geopackage(study, table: pd.DataFrame, target: Path, crs: str | None = None) -> Path:
    """End-users as points with their envelopes, lines with their verified loading (for QGIS)."""
    import geopandas as gpd
    from shapely.geometry import LineString, Point

    feeder = study.feeder
    wide = table.pivot_table(index="end_user", columns=["direction", "method"], values="guaranteed_kw")
    wide.columns = [f"{d}_{m}_kw" for d, m in wide.columns]
    base = table.drop_duplicates("end_user").set_index("end_user")[
        ["connection_point", "bus", "phases", "connection", "capacity_kva", "distance_m"]
    ]
    users = base.join(wide).reset_index()
    users["geometry"] = [Point(feeder.buses[b].x, feeder.buses[b].y) for b in users["bus"]]
    rows = []
    for line in feeder.lines:
        a, b = feeder.buses[line.bus_from], feeder.buses[line.bus_to]
        if a.x is None or b.x is None:
            continue
        row = {"name": line.name, "bus_from": line.bus_from, "bus_to": line.bus_to,
               "length_m": line.length_m, "ampacity_a": line.ampacity_a}
        for env, ver in zip(study.envelopes, study.verifications):
            row[f"{env.direction.value}_{env.method.value}_loading_pct"] = round(ver.line_loading_pct[line.name], 3)
        row["geometry"] = LineString([(a.x, a.y), (b.x, b.y)])
        rows.append(row)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        # without --crs the coordinates are written as they are in the feeder file (no CRS)
        warnings.filterwarnings("ignore", message=".*crs.*was not provided", category=UserWarning)
        gpd.GeoDataFrame(users, geometry="geometry", crs=crs).to_file(tmp, layer="end_users", driver="GPKG")
        if rows:
            gpd.GeoDataFrame(rows, geometry="geometry", crs=crs).to_file(tmp, layer="lines", driver="GPKG", mode="a")
    return Path(target)
