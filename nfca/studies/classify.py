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

CAPACITY_TOL = 0.01  # optimal and fair within 1 % of the aggregated capacity: type 1
FAIR_TOL = 0.05  # fair within 5 % of optimal: type 2


def feeder_type(optimal_kw: float, fair_kw: float, capacity_kw: float,
                capacity_tol: float = CAPACITY_TOL, fair_tol: float = FAIR_TOL) -> int:
    if optimal_kw >= (1 - capacity_tol) * capacity_kw and fair_kw >= (1 - capacity_tol) * capacity_kw:
        return 1
    if fair_kw >= (1 - fair_tol) * optimal_kw:
        return 2
    return 3


def classify(results: Path, capacity_tol: float = CAPACITY_TOL, fair_tol: float = FAIR_TOL) -> pd.DataFrame:
    """One row per feeder in RESULTS/feeders/*/summary.json."""
    rows = []
    for summary_path in sorted(Path(results).glob("feeders/*/summary.json")):
        s = json.loads(summary_path.read_text())
        pf = s["options"]["power_factor"]
        row = {
            "feeder": summary_path.parent.name,
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
        rows.append(row)
    return pd.DataFrame(rows)
