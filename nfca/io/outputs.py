"""Writing results: every file through `nfca.io.atomic` (a temporary name, then renamed into
place), so a run that stops half-way never leaves a half-written file."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pandas as pd

from nfca.errors import OutputError
from nfca.io.atomic import atomic_path, write_text

FORMATS = ("csv", "json", "gpkg", "png", "html")
__all__ = ["FORMATS", "prepare_dir", "write_csv", "write_json", "write_text", "write_tables", "write_study", "atomic_path"]


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


def write_csv(target: Path, df: pd.DataFrame) -> Path:
    """A table as CSV (floats to 6 significant digits, missing values empty)."""
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return Path(target)


def write_json(target: Path, obj: dict) -> Path:
    """A dict as indented JSON (NaN as null)."""
    return write_text(target, to_json(obj) + "\n")


def to_json(obj: dict) -> str:
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


def write_study(study, out: Path, formats: tuple[str, ...] = FORMATS, crs: str | None = None) -> list[Path]:
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
    figures = []
    if "png" in formats or "html" in formats:
        from nfca.io import plots

        figures = plots.study_figures(study, table, out if "png" in formats else None, crs)
        written += [f.path for f in figures if f.path is not None]
    if "html" in formats:
        from nfca.io.report import write_report

        written.append(write_report(study, table, out / "report.html", figures, crs))
    return written + write_tables(study, out, table, tuple(f for f in formats if f == "json"))
