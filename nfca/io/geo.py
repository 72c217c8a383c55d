"""Where things are: the coordinate reference system, end-user positions and the GeoPackage.

OpenDSS bus coordinates carry no CRS, so it is given (`--crs`) or read from the feeder's own
folder (`crs.txt`: an EPSG code, a WKT, or `local`). `local` means metres on a local grid with
no geographic reference (an engineering CRS, so QGIS still measures in metres). A GeoPackage is
never written with an undefined CRS.

End-users sharing a connection point (a building with twenty contracts) sit on the same bus; on
a map they are spread on a small sunflower spiral around it, so each can be seen and clicked.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from nfca.errors import InputError
from nfca.io import schema
from nfca.io.atomic import atomic_path

CRS_FILE = "crs.txt"
LOCAL_CRS_WKT = (
    'ENGCRS["local grid (metres)",EDATUM["feeder file bus coordinates"],CS[Cartesian,2],'
    'AXIS["easting (X)",east,ORDER[1],LENGTHUNIT["metre",1]],'
    'AXIS["northing (Y)",north,ORDER[2],LENGTHUNIT["metre",1]]]'
)
GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))


def has_coordinates(feeder) -> bool:
    """Every end-user's bus has coordinates in the feeder file."""
    return bool(feeder.end_users) and all(feeder.buses[u.bus].x is not None for u in feeder.end_users)


def feeder_crs(feeder, crs: str | None = None) -> str | None:
    """The CRS of the feeder's coordinates: `crs` if given, else the feeder folder's crs.txt;
    None when the feeder has no coordinates. Raises InputError when it has some but no CRS."""
    if not has_coordinates(feeder):
        return None
    source = "--crs"
    if crs is None:
        path = Path(feeder.path).parent / CRS_FILE
        if not path.is_file():
            raise InputError(
                f"{feeder.path}: the feeder has bus coordinates but no coordinate reference system: give --crs "
                f"(e.g. EPSG:31370, or 'local' for metres on a local grid) or put it in {path.parent / CRS_FILE}, "
                "or leave gpkg out of --format"
            )
        text = path.read_text(encoding="utf-8").strip()
        crs, source = (text.splitlines()[0].strip() if text else ""), str(path)
    return parse_crs(crs, source)


def parse_crs(crs: str, source: str = "--crs") -> str:
    """`crs` checked by pyproj (`local`: metres on a local grid); InputError naming `source`.
    The CLI calls it before any computing."""
    if crs.lower() == "local":
        return LOCAL_CRS_WKT
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(crs)
    except CRSError:
        raise InputError(
            f"{source}: not a coordinate reference system: {crs!r} (give e.g. EPSG:31370 or 'local')"
        ) from None
    return crs


def is_metric(crs: str | None) -> bool:
    """The CRS measures in metres (so a scale bar in metres is right)."""
    if crs is None:
        return False
    if crs == LOCAL_CRS_WKT:
        return True
    from pyproj import CRS

    units = {a.unit_name for a in CRS.from_user_input(crs).axis_info}
    return units <= {"metre", "meter"}


def bus_xy(feeder) -> dict[str, tuple[float, float]]:
    """Bus positions: the feeder file's coordinates, or else a schematic (x: cable distance from
    the source in metres, y: the tree drawn with its end buses one above the other)."""
    if has_coordinates(feeder):
        return {n: (b.x, b.y) for n, b in feeder.buses.items() if b.x is not None}
    children: dict[str, list[str]] = {}
    for bus, (up, _) in feeder.parent.items():
        if up is not None:
            children.setdefault(up, []).append(bus)
    dist = feeder.distance_m()
    spacing = max(10.0, max(dist.values(), default=0.0) / max(8, len(feeder.end_users)))
    y: dict[str, float] = {}
    next_leaf = [0.0]

    def place(bus: str) -> float:  # iterative post-order would do too; feeders are shallow trees
        kids = children.get(bus, [])
        if not kids:
            y[bus] = next_leaf[0]
            next_leaf[0] += spacing
        else:
            y[bus] = float(np.mean([place(k) for k in kids]))
        return y[bus]

    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * len(feeder.buses) + 100))
    place(feeder.source.bus)
    return {b: (dist.get(b, 0.0), -y[b]) for b in y}


def end_user_xy(feeder) -> dict[str, tuple[float, float]]:
    """Map position of every end-user: its bus, spread on a spiral when several share a spot."""
    pos = bus_xy(feeder)
    by_spot: dict[tuple[float, float], list[str]] = {}
    for u in feeder.end_users:
        by_spot.setdefault(pos[u.bus], []).append(u.name)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    extent = math.hypot(max(xs) - min(xs), max(ys) - min(ys)) if xs else 1.0
    step = max(extent, 1e-9) * 0.009  # spacing of the spiral's points, ~1 % of the feeder's extent
    out = {}
    for (x, y), names in by_spot.items():
        if len(names) == 1:
            out[names[0]] = (x, y)
            continue
        for k, name in enumerate(names):
            r = step * math.sqrt(k + 0.5)
            out[name] = (x + r * math.cos(k * GOLDEN_ANGLE), y + r * math.sin(k * GOLDEN_ANGLE))
    return out


def limit_points(feeder, table: pd.DataFrame) -> list[dict]:
    """The limiting elements of every envelope set as points (a line at its middle, a
    transformer at its LV bus), ranked by the end-users they bind: where to reinforce."""
    from shapely.geometry import Point

    where: dict[str, tuple[float, float]] = {}
    for line in feeder.lines:
        a, b = feeder.buses[line.bus_from], feeder.buses[line.bus_to]
        if a.x is not None and b.x is not None:
            where[f"current:{line.name}"] = ((a.x + b.x) / 2, (a.y + b.y) / 2)
    for el in feeder.elements:
        lv = list(dict.fromkeys(bus for bus, _ in el.terminals))[-1]
        if feeder.buses[lv].x is not None:
            where[f"rating:{el.name}"] = (feeder.buses[lv].x, feeder.buses[lv].y)
    rows = []
    for (d, m), part in table[table["status"] == schema.STATUS_OK].groupby(["direction", "method"], sort=False):
        for rank, lim in enumerate(schema.limiting_elements(part), start=1):
            key = f"{lim['type']}:{lim['element']}"
            bus = feeder.buses.get(lim["element"])
            xy = where.get(key) or ((bus.x, bus.y) if bus is not None and bus.x is not None else None)
            if xy is not None:
                rows.append(
                    {
                        "set": f"{d}_{m}",
                        "direction": d,
                        "method": m,
                        "rank": rank,
                        "binding_type": lim["type"],
                        "binding_element": lim["element"],
                        "end_users": lim["end_users"],
                        "geometry": Point(*xy),
                    }
                )
    return rows


def write_geopackage(study, table: pd.DataFrame, target: Path, crs: str) -> Path:
    """Layers for QGIS: `end_users` (points, per envelope set its guarantee and binding limit),
    `lines` (with the verified loading per set), `transformers` (at their LV bus) and `limits`
    (each set's limiting elements, ranked by the end-users they bind)."""
    import geopandas as gpd
    from shapely.geometry import LineString, Point

    feeder = study.feeder
    sets = table[["direction", "method"]].drop_duplicates().itertuples(index=False)
    base = table.drop_duplicates("end_user").set_index("end_user")[
        [c.name for c in schema.GPKG_END_USERS if c.name != "end_user"]
    ]
    users = base.copy()
    for d, m in sets:
        part = table[(table["direction"] == d) & (table["method"] == m)].set_index("end_user")
        for col in schema.GPKG_END_USER_SET:
            name = f"{d}_{m}_kw" if col == "guaranteed_kw" else f"{d}_{m}_{col}"
            users[name] = part[col]
    users = users.reset_index()
    xy = end_user_xy(feeder)
    users["geometry"] = [Point(*xy[n]) for n in users["end_user"]]
    loads = {
        f"{e.direction.value}_{e.method.value}": v.line_loading_pct
        for e, v in zip(study.envelopes, study.verifications)
    }
    lines = []
    for line in feeder.lines:
        a, b = feeder.buses[line.bus_from], feeder.buses[line.bus_to]
        if a.x is None or b.x is None:
            continue
        row = {
            "name": line.name,
            "bus_from": line.bus_from,
            "bus_to": line.bus_to,
            "length_m": line.length_m,
            "ampacity_a": line.ampacity_a,
        }
        row |= {f"{k}_{schema.GPKG_LOADING}": round(v[line.name], 3) for k, v in loads.items()}
        lines.append(row | {"geometry": LineString([(a.x, a.y), (b.x, b.y)])})
    transformers = []
    for el in feeder.elements:
        if el.kind != "transformer":
            continue
        buses = list(dict.fromkeys(bus for bus, _ in el.terminals))
        lv = buses[-1]
        if feeder.buses[lv].x is None:
            continue
        kvas = el.description.get("kva") or [math.nan]
        row = {"name": el.name, "bus": lv, "kva": float(kvas[0]), "rating_a": el.rating_a}
        row |= {f"{k}_{schema.GPKG_LOADING}": round(v.get(el.name, math.nan), 3) for k, v in loads.items()}
        transformers.append(row | {"geometry": Point(feeder.buses[lv].x, feeder.buses[lv].y)})
    layers = [
        ("end_users", users),
        ("lines", lines),
        ("transformers", transformers),
        ("limits", limit_points(feeder, table)),
    ]
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*engineering.*", category=UserWarning)
        for k, (layer, rows) in enumerate(layers):
            if len(rows):
                gpd.GeoDataFrame(rows, geometry="geometry", crs=crs).to_file(
                    tmp, layer=layer, driver="GPKG", mode="w" if k == 0 else "a"
                )
    return Path(target)
