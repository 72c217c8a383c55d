"""KPIs of seed §4.1.3 for each scheme: cost, inefficiency, grid safety, time, unqualified volume.

Grid safety is checked after activation by a LinDistFlow power flow of every distribution network
(the seed's check) and a DC power flow of the transmission network. Violation volumes are the
excess over the limit in percent of the limit: a line at 130 % loading is a 30 % violation; a
node at 0.88 pu against a 0.90 pu minimum is a 2.2 % violation.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from market_bridge.cases import Case
from market_bridge.clearing import distribution_state, transmission_injection
from market_bridge.schemes import SchemeResult, common, run_scheme

TOL = 1e-6  # MW or pu: solver tolerance, not a violation

KPI_COLUMNS = [
    "case", "scheme", "prequalification", "status", "cost_eur", "inefficiency_pct",
    "n_line_violations", "max_line_violation_pct", "n_voltage_violations", "max_voltage_violation_pct",
    "n_transmission_violations", "time_s", "unqualified_up_pct", "unqualified_down_pct",
    "up_mw", "down_mw", "distribution_up_mw", "distribution_down_mw", "lv_envelope_exceedances",
    "message",
]


def grid_violations(case: Case, act: dict[str, float]) -> dict[str, float]:
    """Number and largest volume (% of limit) of line and voltage violations in all distribution
    networks, and the number of transmission line violations, after ``act`` is activated."""
    n_line = n_volt = 0
    max_line = max_volt = 0.0
    for dname, net in case.distributions.items():
        st = distribution_state(case, dname, act)
        over = st.s_mva - net.limit_mva
        bad = over > TOL
        n_line += int(bad.sum())
        if bad.any():
            max_line = max(max_line, float(np.max(over[bad] / net.limit_mva[bad])) * 100)
        v = st.v_pu[1:]
        hi, lo = v - net.vmax_pu, net.vmin_pu - v
        n_volt += int((hi > TOL).sum() + (lo > TOL).sum())
        if (hi > TOL).any():
            max_volt = max(max_volt, float(hi.max() / net.vmax_pu) * 100)
        if (lo > TOL).any():
            max_volt = max(max_volt, float(lo.max() / net.vmin_pu) * 100)
    t = case.transmission
    flows = t.flows(transmission_injection(case, act))
    n_t = int((np.abs(flows) - t.limit_mw > 1e-4).sum())
    return {"n_line_violations": n_line, "max_line_violation_pct": max_line,
            "n_voltage_violations": n_volt, "max_voltage_violation_pct": max_volt,
            "n_transmission_violations": n_t}


def kpi_row(case: Case, res: SchemeResult, common_cost: float) -> dict[str, Any]:
    """One KPI row (see ``KPI_COLUMNS``)."""
    act = res.activation
    row: dict[str, Any] = {"case": case.name, "scheme": res.scheme, "prequalification": res.prequalification,
                           "status": res.status, "cost_eur": res.cost, "time_s": res.time_s, "message": res.message}
    ok = res.status == "ok"
    row["inefficiency_pct"] = ((res.cost - common_cost) / abs(common_cost) * 100
                               if ok and math.isfinite(common_cost) and abs(common_cost) > 0 else float("nan"))
    if ok:
        row.update(grid_violations(case, act))
    else:
        row.update({k: float("nan") for k in ("n_line_violations", "max_line_violation_pct", "n_voltage_violations",
                                              "max_voltage_violation_pct", "n_transmission_violations")})
    row["unqualified_up_pct"] = 100 * res.unqualified_up if res.unqualified_up is not None else float("nan")
    row["unqualified_down_pct"] = 100 * res.unqualified_down if res.unqualified_down is not None else float("nan")
    for b_area, prefix in ((lambda b: True, ""), (lambda b: b.area != "T", "distribution_")):
        for d in ("up", "down"):
            row[f"{prefix}{d}_mw"] = float(sum(act.get(b.bid_id, 0.0) for b in case.bids if b.direction == d and b_area(b)))
    row["lv_envelope_exceedances"] = (int(sum(act.get(i, 0.0) > cap + 1e-9 for i, cap in case.lv_caps.items()))
                                      if case.lv_caps else float("nan"))
    return {k: row.get(k, float("nan")) for k in KPI_COLUMNS}


def evaluate(case: Case, schemes: Iterable[str]) -> tuple[pd.DataFrame, list[SchemeResult]]:
    """Run ``schemes`` on ``case`` and return the KPI table (the common market always runs, as the
    reference of the inefficiency) and the raw results."""
    names = list(dict.fromkeys(schemes))
    ref = common(case)
    results = [ref if n in ("common", "cm") else run_scheme(case, n) for n in names]
    rows = [kpi_row(case, r, ref.cost if ref.status == "ok" else float("nan")) for r in results]
    return pd.DataFrame(rows, columns=KPI_COLUMNS), results


# ------------------------------------------------------------------ atomic output


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


def write_kpis(df: pd.DataFrame, out: Path) -> tuple[Path, Path]:
    """``kpis.csv`` and ``kpis.json`` (NaN as empty / null) in ``out``."""
    out = Path(out)
    csv, js = out / "kpis.csv", out / "kpis.json"
    write_atomic(csv, df.to_csv(index=False, float_format="%.6g"))
    records = [{k: _jsonable(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    write_atomic(js, json.dumps(records, indent=1))
    return csv, js
