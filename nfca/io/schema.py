"""The results schema: every column nfca publishes, declared once with its unit, type and meaning.

`envelopes.csv`, the per-set figures of `summary.json`, the GeoPackage layers and the readers of
envelope files (`market_bridge`) are all produced from these declarations, so a column cannot be
added in one place and forgotten in another. Units follow the field's convention: SI in the
name (`_kw`, `_kva`, `_pu`, `_m`, `_v`, `_pct`), import = consumption, export = injection, both
as non-negative magnitudes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from nfca.errors import InputError
from nfca.model.envelope import firm_kw

if TYPE_CHECKING:  # pandas loads with the first table, not before the solves
    import pandas as pd


@dataclass(frozen=True)
class Column:
    """One published quantity."""

    name: str
    unit: str  # "" when dimensionless or text
    dtype: str  # "str", "float", "int" or "bool"
    description: str


def _cols(*rows: tuple[str, str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*r) for r in rows)


# Binding limit types (column `binding_type`) and the unit of `binding_value` for each.
BINDING_UNITS = {
    "capacity": "kVA",  # the end-user's connection capacity: nothing else stops it
    "voltage": "pu",  # an end-user voltage limit (phase-to-neutral, or phase-to-phase on 3-wire grids)
    "current": "A",  # a line conductor's ampacity (normamps)
    "rating": "A",  # a transformer's rated current on its LV terminals
    "neutral": "V",  # the neutral-to-earth voltage limit (--v-neutral-max)
    "firm": "",  # a non-participant: firm connection, no envelope
    "none": "",  # held by the method's rule (fair shares) with no limit of its own active
    "infeasible": "",  # no envelope exists for this method and direction
}

STATUS_OK, STATUS_INFEASIBLE = "ok", "infeasible"

ENVELOPES = _cols(
    ("end_user", "", "str", "end-user (one connection contract): the load's name in the feeder file"),
    (
        "connection_point",
        "",
        "str",
        "connection point: the bus where the end-user connects (several end-users can share one)",
    ),
    ("bus", "", "str", "bus of the connection point in the feeder file"),
    ("phases", "", "str", "phases the end-user is connected to (a, ab, abc)"),
    ("connection", "", "str", "wye (phase to neutral) or delta (phase to phase)"),
    ("capacity_kva", "kVA", "float", "connection capacity (the load's XfkVA, --default-capacity or --capacities)"),
    (
        "firm_kw",
        "kW",
        "float",
        "firm value: the power a non-participant is assumed to use in this direction while the envelopes hold",
    ),
    ("direction", "", "str", "import (consumption) or export (injection)"),
    ("method", "", "str", "allocation method: optimal, fair, proportional, propfair or maxmin"),
    ("participant", "", "bool", "true when the end-user has a non-firm connection agreement (gets an envelope)"),
    (
        "status",
        "",
        "str",
        "ok, or infeasible when no envelope exists for this method and direction (reason in binding)",
    ),
    (
        "guaranteed_kw",
        "kW",
        "float",
        "guaranteed power (the envelope), rounded down to whole watts; empty when infeasible",
    ),
    ("binding", "", "str", "the limit that stops the end-user, as text (or the reason no envelope exists)"),
    (
        "binding_type",
        "",
        "str",
        "capacity, voltage, current, rating, neutral; firm for non-participants, none, infeasible",
    ),
    (
        "binding_element",
        "",
        "str",
        "the bus (voltage, neutral), line (current) or transformer (rating) of the binding limit",
    ),
    (
        "binding_phase",
        "",
        "str",
        "phase(s) of a binding voltage limit (a, ab, an), the neutral's node for a neutral limit",
    ),
    (
        "binding_value",
        "",
        "float",
        "the binding limit's value: kVA (capacity), pu (voltage), A (current, rating), V (neutral)",
    ),
    ("v_min_verified_pu", "pu", "float", "lowest voltage the end-user sees in the OpenDSS verification of this set"),
    ("v_max_verified_pu", "pu", "float", "highest voltage the end-user sees in the OpenDSS verification of this set"),
    ("distance_m", "m", "float", "cable length from the transformer (source) to the connection point"),
)
# Dynamic studies: `timestamp` first (`static` for the static set), `forecast_kw` last.
TIMESTAMP = Column("timestamp", "", "str", "start of the interval, or static for the envelope valid in every interval")
FORECAST = Column(
    "forecast_kw",
    "kW",
    "float",
    "the end-user's forecast net power in the interval (consumption +); static rows: its extreme over the horizon in the direction",
)
DYNAMIC_ENVELOPES = (TIMESTAMP, *ENVELOPES, FORECAST)

# summary.json, per method and direction ("methods" of `nfca envelopes`, "static" of dynamic runs).
SET_SUMMARY = _cols(
    ("status", "", "str", "ok, or infeasible (no envelope exists; reason in `reason`)"),
    ("reason", "", "str", "why no envelope exists (empty when status is ok)"),
    ("total_kw", "kW", "float", "sum of the participants' guaranteed power"),
    ("min_kw", "kW", "float", "smallest participant envelope"),
    ("max_kw", "kW", "float", "largest participant envelope"),
    ("jain_index", "", "float", "Jain's fairness index of the participants' envelopes (1 when all are equal)"),
    ("solver_status", "", "str", "Ipopt's outcome, normalised (optimal, acceptable, infeasible, ...)"),
    (
        "solver_message",
        "",
        "str",
        "what the solver said, in its words and nfca's (e.g. that the most even optimal split was not found under the corner and the highest total's split is published)",
    ),
    ("iterations", "", "int", "Ipopt iterations"),
    (
        "solves",
        "",
        "int",
        "Ipopt solves (progressive filling, retries and the corner's most even optimal split take several; a level bisected on the power flow counts one, with 0 iterations)",
    ),
    ("seconds", "s", "float", "time to compute the set"),
    ("v_min_pu", "pu", "float", "lowest end-user voltage in the OpenDSS verification"),
    ("v_max_pu", "pu", "float", "highest end-user voltage in the OpenDSS verification"),
    ("max_loading_pct", "%", "float", "highest line or transformer loading in the OpenDSS verification"),
    ("v_neutral_max_v", "V", "float", "highest neutral-to-earth voltage at an end-user in the OpenDSS verification"),
    ("guarantee", "", "str", "what the set is promised for: box, direction or corner (see nfca.model.box)"),
    ("scenarios", "", "int", "operating points (vertices of the box) the optimisation held every limit at"),
    (
        "points_checked",
        "",
        "int",
        "points OpenDSS checked as part of the promise: the box's corners and each limit's worst vertex",
    ),
    ("audit_points", "", "int", "seeded random points of the box OpenDSS also checked"),
    (
        "audit_violations",
        "",
        "int",
        "audit points where a limit breaks (0 for a robust set; the corner guarantee does not promise them)",
    ),
    (
        "margins",
        "",
        "str",
        "smallest distance to each family of limits over all checked points: voltage_low_pu, voltage_high_pu, current_pct, rating_pct, neutral_v",
    ),
    ("verified", "", "bool", "every limit holds in the OpenDSS verification"),
    ("violations", "", "str", "limits broken in the verification (a list)"),
    (
        "limiting",
        "",
        "str",
        "the elements that bind the participants, most frequent first (a list of {element, type, end_users})",
    ),
)

# GeoPackage layers: fixed columns; per envelope set `<direction>_<method>_<quantity>` columns follow.
GPKG_END_USERS = _cols(
    *[
        (c.name, c.unit, c.dtype, c.description)
        for c in ENVELOPES
        if c.name
        in (
            "end_user",
            "connection_point",
            "bus",
            "phases",
            "connection",
            "capacity_kva",
            "firm_kw",
            "participant",
            "distance_m",
        )
    ]
)
GPKG_END_USER_SET = ("guaranteed_kw", "binding", "binding_type", "binding_element", "binding_phase", "binding_value")
GPKG_LINES = _cols(
    ("name", "", "str", "line name in the feeder file"),
    ("bus_from", "", "str", "upstream bus"),
    ("bus_to", "", "str", "downstream bus"),
    ("length_m", "m", "float", "length"),
    ("ampacity_a", "A", "float", "rated current per conductor (normamps)"),
)
GPKG_TRANSFORMERS = _cols(
    ("name", "", "str", "transformer name in the feeder file"),
    ("bus", "", "str", "LV bus"),
    ("kva", "kVA", "float", "rated power"),
    ("rating_a", "A", "float", "rated current on the LV terminals"),
)
GPKG_LIMITS = _cols(
    ("set", "", "str", "the envelope set, <direction>_<method>"),
    ("direction", "", "str", "import or export"),
    ("method", "", "str", "allocation method"),
    ("rank", "", "int", "1 for the element binding the most participants of the set"),
    ("binding_type", "", "str", "voltage, current, rating or neutral"),
    ("binding_element", "", "str", "the bus, line (drawn at its middle) or transformer (at its LV bus)"),
    ("end_users", "", "int", "participants this element binds"),
)
GPKG_LOADING = "loading_pct"  # per set: `<direction>_<method>_loading_pct`, verified loading

DTYPES = {"str": "object", "float": "float64", "int": "int64", "bool": "bool"}


def names(columns: Iterable[Column]) -> list[str]:
    """The column names, in order."""
    return [c.name for c in columns]


def frame(rows: list[dict] | pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly `columns`, in order (missing ones empty)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for c in columns:
        if c.name not in df.columns:
            df[c.name] = math.nan if c.dtype == "float" else ""
    return df[names(columns)]


def describe(columns: tuple[Column, ...] = ENVELOPES) -> pd.DataFrame:
    """The schema as a table (column, unit, dtype, description), e.g. for a data dictionary."""
    import pandas as pd

    return pd.DataFrame([{f.name: getattr(c, f.name) for f in fields(Column)} for c in columns])


# ----------------------------------------------------------------------------- envelope rows


def set_rows(
    feeder, env, options, v_min: dict[str, float], v_max: dict[str, float], dist: dict[str, float]
) -> list[dict]:
    """The `ENVELOPES` rows of one envelope set (static or one interval of a dynamic study)."""
    rows = []
    for u in feeder.end_users:
        b = env.binding[u.name]
        text = str(b)
        firm = firm_kw(u, options) if env.firm_kw is None else env.direction.sign * env.firm_kw[u.name]
        rows.append(
            {
                "end_user": u.name,
                "connection_point": u.bus,
                "bus": u.bus,
                "phases": u.phases,
                "connection": u.connection,
                "capacity_kva": u.capacity_kva,
                "firm_kw": round(firm, 6),
                "direction": env.direction.value,
                "method": env.method.value,
                "participant": bool(env.participant[u.name]),
                "status": STATUS_OK,
                "guaranteed_kw": env.guaranteed_kw[u.name],
                "binding": text,
                **binding_fields(b, feeder, u.capacity_kva),
                "v_min_verified_pu": round(v_min[u.name], 6),
                "v_max_verified_pu": round(v_max[u.name], 6),
                "distance_m": round(dist[u.bus], 3),
            }
        )
    return rows


def infeasible_rows(
    feeder, options, method: str, direction: str, reason: str, participants, dist: dict[str, float]
) -> list[dict]:
    """The rows of a method and direction with no envelope: status `infeasible` and the reason."""
    return [
        {
            "end_user": u.name,
            "connection_point": u.bus,
            "bus": u.bus,
            "phases": u.phases,
            "connection": u.connection,
            "capacity_kva": u.capacity_kva,
            "firm_kw": round(firm_kw(u, options), 6),
            "direction": direction,
            "method": method,
            "participant": u.name in participants,
            "status": STATUS_INFEASIBLE,
            "guaranteed_kw": math.nan,
            "binding": reason,
            "binding_type": "infeasible",
            "binding_element": "",
            "binding_phase": "",
            "binding_value": math.nan,
            "v_min_verified_pu": math.nan,
            "v_max_verified_pu": math.nan,
            "distance_m": round(dist[u.bus], 3),
        }
        for u in feeder.end_users
    ]


def jain_index(x) -> float:
    """Jain's fairness index, (sum x)^2 / (n sum x^2): 1 when all equal, 1/n when one takes all."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    if x.size == 0 or not np.any(x):
        return 1.0
    return float(x.sum() ** 2 / (x.size * (x**2).sum()))


def set_summary(env, verifications, rows: pd.DataFrame) -> dict:
    """The `SET_SUMMARY` figures of one envelope set; `verifications` are its OpenDSS checks
    (one, or one per interval for a static set of a dynamic study); `rows` its ENVELOPES rows."""
    g = [env.guaranteed_kw[k] for k, p in env.participant.items() if p]
    vs = list(verifications)
    return {
        "status": STATUS_OK,
        "reason": "",
        "total_kw": round(float(sum(g)), 3),
        "min_kw": round(float(min(g)), 3) if g else 0.0,
        "max_kw": round(float(max(g)), 3) if g else 0.0,
        "jain_index": round(jain_index(g), 6),
        "solver_status": str(env.result.status.value if hasattr(env.result.status, "value") else env.result.status),
        "solver_message": env.result.message,
        "iterations": int(env.iterations),
        "solves": int(env.solves),
        "seconds": round(float(env.seconds), 3),
        "v_min_pu": round(min(v.v_min_pu for v in vs), 6),
        "v_max_pu": round(max(v.v_max_pu for v in vs), 6),
        "max_loading_pct": round(max(v.max_loading_pct for v in vs), 4),
        "v_neutral_max_v": round(max(v.v_neutral_max_v for v in vs), 4),
        "guarantee": env.guarantee.value,
        "scenarios": len(env.scenarios),
        "points_checked": int(sum(v.points_checked for v in vs)),
        "audit_points": int(sum(v.audit_points for v in vs)),
        "audit_violations": int(sum(v.audit_violations for v in vs)),
        "margins": {k: round(min(v.margins[k] for v in vs), 6) for k in vs[0].margins} if vs else {},
        "verified": all(v.verified for v in vs),
        "violations": [x for v in vs for x in v.violations][:10],
        "limiting": limiting_elements(rows),
    }


def infeasible_summary(reason: str) -> dict:
    """The `SET_SUMMARY` of a method and direction with no envelope."""
    return {c.name: None for c in SET_SUMMARY} | {
        "status": STATUS_INFEASIBLE,
        "reason": reason,
        "verified": False,
        "violations": [],
        "limiting": [],
    }


# ----------------------------------------------------------------------------- binding limits

_VOLTAGE = re.compile(r"^voltage bus (?P<bus>\S+) phases? (?P<phase>\S+) (?P<value>[\d.]+) pu")
_NEUTRAL = re.compile(r"^neutral voltage bus (?P<bus>\S+) node (?P<node>\d+) (?P<value>[\d.eE+-]+) V")
_CURRENT = re.compile(r"^ampacity line (?P<line>\S+)")
_RATING = re.compile(r"^rating (?P<element>\S+)")


def binding_fields(binding, feeder, capacity_kva: float) -> dict:
    """The binding limit as data (`binding_type`, `_element`, `_phase`, `_value`).

    `binding` is what the envelope problem reports per end-user: a record with `kind`,
    `element`, `phase` and `value` (used as it is), or its text (read here, the one place that
    parses it)."""
    out = {"binding_type": "none", "binding_element": "", "binding_phase": "", "binding_value": math.nan}
    if hasattr(binding, "kind"):
        kind = {"fairness": "none"}.get(binding.kind, binding.kind)
        value = capacity_kva if kind == "capacity" and binding.value is None else binding.value
        return {
            "binding_type": kind,
            "binding_element": binding.element or "",
            "binding_phase": binding.phase or "",
            "binding_value": math.nan if value is None else float(value),
        }
    text = str(binding)
    if text in ("capacity", "firm"):
        return out | {"binding_type": text, "binding_value": capacity_kva if text == "capacity" else math.nan}
    if m := _VOLTAGE.match(text):
        return out | {
            "binding_type": "voltage",
            "binding_element": m["bus"],
            "binding_phase": m["phase"],
            "binding_value": float(m["value"]),
        }
    if m := _NEUTRAL.match(text):
        return out | {
            "binding_type": "neutral",
            "binding_element": m["bus"],
            "binding_phase": f"node {m['node']}",
            "binding_value": float(m["value"]),
        }
    if m := _CURRENT.match(text):
        amps = {line.name: line.ampacity_a for line in feeder.lines}
        return out | {
            "binding_type": "current",
            "binding_element": m["line"],
            "binding_value": amps.get(m["line"], math.nan),
        }
    if m := _RATING.match(text):
        ratings = {el.name: el.rating_a for el in feeder.elements}
        return out | {
            "binding_type": "rating",
            "binding_element": m["element"],
            "binding_value": ratings.get(m["element"], math.nan),
        }
    return out


def limiting_elements(table: pd.DataFrame) -> list[dict]:
    """Elements that bind participants in one set, most end-users first: what a planner upgrades."""
    part = table[
        table["participant"].astype(bool) & ~table["binding_type"].isin(["capacity", "firm", "none", "infeasible"])
    ]
    if part.empty:
        return []
    counts = part.groupby(["binding_type", "binding_element"], sort=False).size().reset_index(name="end_users")
    counts = counts.sort_values(["end_users", "binding_element"], ascending=[False, True])
    return [
        {"element": r.binding_element, "type": r.binding_type, "end_users": int(r.end_users)}
        for r in counts.itertuples()
    ]


# ----------------------------------------------------------------------------- reading back

REQUIRED = (
    "end_user",
    "connection_point",
    "bus",
    "phases",
    "connection",
    "capacity_kva",
    "direction",
    "method",
    "guaranteed_kw",
    "binding",
)


def read_envelopes(path: Path | str) -> pd.DataFrame:
    """Read an `envelopes.csv` written by nfca and check it against the schema.

    Raises InputError naming the file and the problem. Rows of infeasible sets (status
    `infeasible`) are dropped: they carry no envelope."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(
            path,
            dtype={c.name: str for c in ENVELOPES if c.dtype == "str"},
            keep_default_na=False,
            na_values={c.name: [""] for c in ENVELOPES if c.dtype == "float"},
        )
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"{path}: cannot read envelopes ({' '.join(str(exc).split())})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"{path}: not an nfca envelopes file, it lacks column(s) {', '.join(missing)}")
    if "status" in df.columns:
        df = df[df["status"] != STATUS_INFEASIBLE].copy()
    if not df["direction"].isin(["import", "export"]).all():
        bad = sorted(set(df["direction"]) - {"import", "export"})
        raise InputError(f"{path}: direction must be import or export, got {bad[0]!r}")
    for name in ("guaranteed_kw", "capacity_kva"):
        x = pd.to_numeric(df[name], errors="coerce")
        if x.isna().any() or (x < 0).any():
            row = int(x[x.isna() | (x < 0)].index[0]) + 2
            raise InputError(f"{path} line {row}: {name} must be a number >= 0")
        df[name] = x.astype(float)
    if "participant" in df.columns:
        df["participant"] = df["participant"].astype(str).str.lower().isin(["true", "1"])
    return df.reset_index(drop=True)
