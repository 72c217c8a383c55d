"""Writing results: every file goes to a temporary name in its folder and is renamed into place,
so a run that stops half-way never leaves a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
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
    return write_text(target, json.dumps(obj, indent=2, default=_jsonable) + "\n")


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
