"""Feeder types by how fairness costs capacity (ALEXANDER D3.3 section 5.2).

- type 1: optimal = fair = connection capacity (the feeder is oversized for its users);
- type 2: aggregated fair ~ optimal < capacity (fairness moves power between users, costs none);
- type 3: aggregated fair significantly below optimal.

"=" and "~" use the tolerances below (relative), which are options of `nfca classify`. The type
is judged on the guaranteed power of both directions together (import + export); the per-direction
types are reported beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nfca.errors import InputError

CAPACITY_TOL = 0.01  # optimal and fair within 1 % of the aggregated capacity: type 1
FAIR_TOL = 0.05  # fair within 5 % of optimal: type 2


def feeder_type(
    optimal_kw: float,
    fair_kw: float,
    capacity_kw: float,
    capacity_tol: float = CAPACITY_TOL,
    fair_tol: float = FAIR_TOL,
) -> int:
    """The feeder type (1, 2 or 3) from its aggregated optimal, fair and capacity."""
    if optimal_kw >= (1 - capacity_tol) * capacity_kw and fair_kw >= (1 - capacity_tol) * capacity_kw:
        return 1
    if fair_kw >= (1 - fair_tol) * optimal_kw:
        return 2
    return 3


def _typable(summary: dict) -> bool:
    sets = summary.get("methods", {})
    return all(
        sets.get(m, {}).get(d, {}).get("status", "ok") == "ok" and d in sets.get(m, {})
        for m in ("optimal", "fair")
        for d in ("import", "export")
    )


def _summaries(results: Path):
    """(feeder name, summary.json) of every complete feeder result (damaged ones are left to the
    next `nfca batch`, which recomputes them)."""
    from nfca.studies.batch import is_done

    for folder in sorted(p for p in Path(results).glob("feeders/*") if p.is_dir()):
        if not is_done(results, folder.name):
            continue
        try:
            yield folder.name, json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{folder}: results not readable ({exc}); rerun nfca batch to recompute this feeder"
            ) from None


def incomplete(results: Path) -> dict[str, str]:
    """Feeders with results but no optimal or fair envelope in some direction: name -> reason."""
    out = {}
    for name, s in _summaries(results):
        if not _typable(s):
            reasons = [
                f"{m} {d}: {x.get('reason') or 'not computed'}"
                for m in ("optimal", "fair")
                for d in ("import", "export")
                for x in [s.get("methods", {}).get(m, {}).get(d, {})]
                if x.get("status", "missing") != "ok"
            ]
            out[name] = "; ".join(reasons)
    return out


def classify(results: Path, capacity_tol: float = CAPACITY_TOL, fair_tol: float = FAIR_TOL) -> pd.DataFrame:
    """One row per complete feeder result in RESULTS/feeders/*/ (see `batch.is_done`) that has
    optimal and fair envelopes in both directions (a feeder where one has no envelope cannot be
    typed; `incomplete` lists them)."""
    rows = []
    for name, s in _summaries(results):
        if not _typable(s):
            continue
        try:
            rows.append(_row(name, s, capacity_tol, fair_tol))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{Path(results) / 'feeders' / name}: results not readable ({type(exc).__name__}: "
                f"{exc}); rerun nfca batch to recompute this feeder"
            ) from None
    return pd.DataFrame(rows)


def _row(name: str, s: dict, capacity_tol: float, fair_tol: float) -> dict:
    pf = s["options"]["power_factor"]
    row = {
        "feeder": name,
        "end_users": s["end_users"],
        "connection_points": s["connection_points"],
        "length_m": s.get("length_m"),
        "capacity_kw": round(s["capacity_kva"] * pf, 3),
    }
    for d in ("import", "export"):
        opt = s["methods"]["optimal"][d]["total_kw"]
        fair = s["methods"]["fair"][d]["total_kw"]
        t = feeder_type(opt, fair, row["capacity_kw"], capacity_tol, fair_tol)
        row |= {f"optimal_{d}_kw": opt, f"fair_{d}_kw": fair, f"type_{d}": t}
    opt = row["optimal_import_kw"] + row["optimal_export_kw"]
    fair = row["fair_import_kw"] + row["fair_export_kw"]
    row["fair_over_optimal"] = round(fair / opt, 4) if opt > 0 else 1.0
    row["type"] = feeder_type(opt, fair, 2 * row["capacity_kw"], capacity_tol, fair_tol)
    return row
