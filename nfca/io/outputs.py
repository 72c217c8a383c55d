"""Writing results: a run's folder is replaced as a whole, and every file goes through
`nfca.io.atomic` (a temporary name, then renamed into place), so a run that stops half-way never
leaves a half-written file nor files of two runs side by side.

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
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nfca.errors import OutputError
from nfca.io.atomic import atomic_path, write_text

if TYPE_CHECKING:  # pandas loads with the tables, not before the solves
    import pandas as pd

    from nfca.model.network import Feeder

FORMATS = ("csv", "json", "gpkg", "png", "html")
DEFAULT_FORMATS = ("csv", "json", "gpkg", "html")  # PNG figures (matplotlib) only when asked
__all__ = [
    "FORMATS",
    "DEFAULT_FORMATS",
    "RUN_MARKER",
    "run_folder",
    "prepare_dir",
    "write_csv",
    "write_json",
    "write_text",
    "write_tables",
    "write_study",
    "write_participation",
    "atomic_path",
]


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
    if out.is_symlink():  # replace the folder it points to, not the link
        out = out.resolve()
    _check_replaceable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.nfca-"))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # a folder like any other (mkdtemp makes it private)
        (tmp / _PARTIAL).write_text(str(os.getpid()))
    except OSError as exc:
        raise OutputError(f"{out}: output folder cannot be written ({exc.strerror or exc})") from None
    try:
        yield tmp
        try:
            (tmp / _PARTIAL).unlink()
            write_text(tmp / RUN_MARKER, json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
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
            raise OutputError(
                f"{out}: the folder holds files that are not an nfca run (no {RUN_MARKER} marker); "
                "give a new or empty folder (nfca replaces a run's folder as a whole)"
            )


def _remove_leftovers(out: Path) -> None:
    """Temporary folders of killed runs into `out`: named after it and holding a dead process's pid."""
    for p in out.parent.glob(f".{out.name}.nfca-*"):
        try:
            pid = int((p / _PARTIAL).read_text())
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                p.rmdir()  # killed before its marker was written: empty (a folder with files is not ours)
            continue
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


def write_csv(target: Path, df: pd.DataFrame) -> Path:
    """A table as CSV (floats to 6 significant digits, missing values empty)."""
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return Path(target)


def write_json(target: Path, obj: dict) -> Path:
    """A dict as indented JSON (NaN as null)."""
    return write_text(target, to_json(obj) + "\n")


def to_json(obj: dict) -> str:
    """`obj` as indented JSON text, NaN and infinities as null."""
    return json.dumps(_clean(obj), indent=2, default=_jsonable, allow_nan=False)


def _clean(x):
    if isinstance(x, dict):
        return {(k if isinstance(k, str) else str(k)): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _jsonable(x):
    if hasattr(x, "item"):
        return _clean(x.item())
    if hasattr(x, "value"):
        return x.value
    return str(x)


def write_tables(study, out: Path, table: pd.DataFrame, formats: tuple[str, ...]) -> list[Path]:
    """envelopes.csv and summary.json of any study that has `summary` (static or dynamic)."""
    written = []
    if "csv" in formats:
        written.append(write_csv(out / "envelopes.csv", table))
    if "json" in formats:
        written.append(write_json(out / "summary.json", study.summary))
    return written


def load_writers(formats: tuple[str, ...], feeder: Feeder) -> None:
    """Import what the writers of `formats` use for `feeder` (geopandas for a GeoPackage, which
    needs coordinates; matplotlib for png; the report's page code for html), so that it loads
    while the process would otherwise wait."""
    import pandas  # noqa: F401  (every writer's tables)

    from nfca.io.geo import has_coordinates

    if "gpkg" in formats and has_coordinates(feeder):
        import geopandas  # noqa: F401
        import pyogrio  # noqa: F401
    if "png" in formats:
        from nfca.io import plots  # noqa: F401
    if "html" in formats:
        from nfca.io import charts, report  # noqa: F401


def write_study(study, out: Path, formats: tuple[str, ...] = DEFAULT_FORMATS, crs: str | None = None) -> list[Path]:
    """Write an envelope study's outputs (`formats` of FORMATS); returns the files written.

    The GeoPackage needs the coordinates' CRS (`crs`, else the feeder folder's crs.txt:
    `nfca.io.geo.feeder_crs`); it is checked before anything is written. summary.json is
    written last: a folder with it is complete (what a batch's resume looks for)."""
    from nfca.io import geo

    crs = geo.feeder_crs(study.feeder, crs) if "gpkg" in formats else None
    out = prepare_dir(out)
    table = study.to_dataframe()
    written = write_tables(study, out, table, tuple(f for f in formats if f != "json"))
    if crs is not None:
        written.append(geo.write_geopackage(study, table, out / "envelopes.gpkg", crs))
    if "png" in formats:  # report.html draws its own charts: matplotlib only for the PNG files
        from nfca.io import plots

        written += [f.path for f in plots.study_figures(study, table, out, crs)]
    if "html" in formats:
        from nfca.io.report import write_report

        written.append(write_report(study, table, out / "report.html"))
    return written + write_tables(study, out, table, tuple(f for f in formats if f == "json"))


def write_participation(sweep, out: Path, formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:
    """Write a participation sweep (`nfca.studies.envelopes.ParticipationSweep`): participation.csv,
    participation.json, report.html (its charts drawn in the page) and, with "png" in `formats`,
    participation.png. Returns the files written."""
    out = prepare_dir(out)
    df, summary, title = sweep.points, sweep.summary, sweep.description
    written = []
    if "csv" in formats:
        written.append(write_csv(out / "participation.csv", df))
    if "json" in formats:
        written.append(write_json(out / "participation.json", summary))
    if "png" in formats:  # the report draws its own charts: matplotlib only for the PNG file
        from nfca.io import plots

        written.append(plots.participation_sweep(df, out / "participation.png", title.replace("; ", ";\n", 1)))
    if "html" in formats:
        from nfca.io.charts import participation_charts
        from nfca.io.report import table_html, write_page

        written.append(
            write_page(
                out / "report.html",
                f"Guaranteed power against participation: {sweep.feeder.name}",
                title,
                [
                    (
                        "Points (mean guaranteed kW per participant; infeasible: no envelope exists, the reason says why)",
                        table_html(df, "points"),
                    )
                ],
                participation_charts(df, title),
                summary,
            )
        )
    return written
