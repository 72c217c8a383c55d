"""KPIs of seed §4.1.3 for each scheme (cost, inefficiency, grid safety, time, unqualified volume)
and the per-bid, per-interface and per-violation tables behind them.

Grid safety is checked after activation by a LinDistFlow power flow of every distribution network
(the seed's check) and a DC power flow of the transmission network. Violation volumes are the
excess over the limit in percent of the limit: a line at 130 % loading is a 30 % violation; a
node at 0.88 pu against a 0.90 pu minimum is a 2.2 % violation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from market_bridge.cases import Case
from market_bridge.clearing import distribution_state, net_activation, transmission_injection
from market_bridge.schemes import SchemeResult, parse_scheme, run_scheme, uses_nfca
from nfca.io.atomic import write_text

TOL = 1e-6  # MW or pu: solver tolerance, not a violation
KPI_COLUMNS = [
    "case",
    "seed",
    "scheme",
    "prequalification",
    "status",
    "cost_eur",
    "bid_cost_eur",
    "shortfall_mw",
    "inefficiency_pct",
    "n_line_violations",
    "max_line_violation_pct",
    "n_voltage_violations",
    "max_voltage_violation_pct",
    "n_transmission_violations",
    "time_s",
    "unqualified_up_pct",
    "unqualified_down_pct",
    "up_mw",
    "down_mw",
    "distribution_up_mw",
    "distribution_down_mw",
    "lv_envelope_exceedances",
    "message",
]
VIOLATION_COLUMNS = [
    "case",
    "seed",
    "scheme",
    "prequalification",
    "network",
    "element",
    "quantity",
    "limit",
    "value",
    "excess_pct",
]
BID_COLUMNS = [
    "case",
    "seed",
    "scheme",
    "prequalification",
    "layer",
    "bid_id",
    "area",
    "bus",
    "direction",
    "kind",
    "end_user",
    "price_eur_per_mw",
    "offered_mw",
    "qualified_mw",
    "activated_mw",
]
INTERFACE_COLUMNS = [
    "case",
    "seed",
    "scheme",
    "prequalification",
    "layer",
    "network",
    "transmission_bus",
    "layer_net_activation_mw",
    "interface_import_mw",
]
# Decimals kept in the written tables: 1 W, 0.0001 EUR and %, 1 ms. Solver noise (2e-14) goes.
DECIMALS = {"mw": 6, "eur": 4, "pct": 4, "_s": 3, "_pu": 6, "limit": 6, "value": 6}


def violations(case: Case, act: dict[str, float]) -> list[dict[str, Any]]:
    """Every limit broken after ``act`` is activated: distribution branches (MVA) and node
    voltages (pu) by LinDistFlow, transmission lines (MW) by the DC power flow."""
    out = []
    for dname, net in case.distributions.items():
        st = distribution_state(case, dname, act)
        for k in np.flatnonzero(st.s_mva - net.limit_mva > TOL):
            out.append(
                {
                    "network": dname,
                    "element": f"branch {net.branch_key(k)}",
                    "quantity": "flow_mva",
                    "limit": net.limit_mva[k],
                    "value": st.s_mva[k],
                }
            )
        for n in range(1, net.n_nodes):
            v = st.v_pu[n]
            if v - net.vmax_pu > TOL or net.vmin_pu - v > TOL:
                lim = net.vmax_pu if v > net.vmax_pu else net.vmin_pu
                out.append(
                    {
                        "network": dname,
                        "element": f"node {net.bus_ids[n]}",
                        "quantity": "voltage_pu",
                        "limit": lim,
                        "value": v,
                    }
                )
    t = case.transmission
    flows = t.flows(transmission_injection(case, act))
    for k in np.flatnonzero(np.abs(flows) - t.limit_mw > 1e-4):
        out.append(
            {
                "network": "T",
                "element": f"line {t.line_key(t.lines[k])}",
                "quantity": "flow_mw",
                "limit": t.limit_mw[k],
                "value": abs(flows[k]),
            }
        )
    for row in out:
        row["excess_pct"] = abs(row["value"] - row["limit"]) / row["limit"] * 100
    return out


def grid_violations(case: Case, act: dict[str, float]) -> dict[str, float]:
    """Number and largest volume (% of limit) of line and voltage violations in all distribution
    networks, and the number of transmission line violations, after ``act`` is activated."""
    rows = violations(case, act)
    lines = [r["excess_pct"] for r in rows if r["quantity"] == "flow_mva"]
    volts = [r["excess_pct"] for r in rows if r["quantity"] == "voltage_pu"]
    return {
        "n_line_violations": len(lines),
        "max_line_violation_pct": max(lines, default=0.0),
        "n_voltage_violations": len(volts),
        "max_voltage_violation_pct": max(volts, default=0.0),
        "n_transmission_violations": sum(r["quantity"] == "flow_mw" for r in rows),
    }


def _clean(key: str, v: Any) -> Any:
    """Round a table value to the decimals of its column; -0.0 and solver dust become 0."""
    if isinstance(v, (float, np.floating)) and math.isfinite(v):
        digits = next((d for suffix, d in DECIMALS.items() if key.endswith(suffix)), 6)
        return round(float(v), digits) + 0.0
    return v


def _row(keys: list[str], row: dict[str, Any]) -> dict[str, Any]:
    return {k: _clean(k, row.get(k, float("nan"))) for k in keys}


def kpi_row(case: Case, res: SchemeResult, common_cost: float) -> dict[str, Any]:
    """One KPI row (see ``KPI_COLUMNS``); ``common_cost`` is the reference of the inefficiency."""
    act = res.activation
    ok = res.status.ok
    row: dict[str, Any] = {
        "case": case.name,
        "seed": case.seed,
        "scheme": res.scheme,
        "prequalification": res.prequalification,
        "status": str(res.status),
        "cost_eur": res.cost,
        "time_s": res.time_s,
        "message": res.message,
        "shortfall_mw": res.shortfall_mw if ok else float("nan"),
    }
    row["bid_cost_eur"] = res.cost - case.voll_eur_per_mw * res.shortfall_mw if ok else float("nan")
    row["inefficiency_pct"] = (
        (res.cost - common_cost) / abs(common_cost) * 100
        if ok and math.isfinite(common_cost) and abs(common_cost) > 0
        else float("nan")
    )
    if ok:
        row.update(grid_violations(case, act))
    row["unqualified_up_pct"] = 100 * res.unqualified_up if res.unqualified_up is not None else float("nan")
    row["unqualified_down_pct"] = 100 * res.unqualified_down if res.unqualified_down is not None else float("nan")
    for prefix, bids in (("", case.bids), ("distribution_", case.distribution_bids)):
        for d in ("up", "down"):
            row[f"{prefix}{d}_mw"] = float(sum(act.get(b.bid_id, 0.0) for b in bids if b.direction == d))
    row["lv_envelope_exceedances"] = (
        int(sum(act.get(i, 0.0) > cap + 1e-6 for i, cap in case.lv_caps.items()))
        if case.lv_caps and ok
        else float("nan")
    )
    return _row(KPI_COLUMNS, row)


def bid_rows(case: Case, res: SchemeResult) -> list[dict[str, Any]]:
    """Per layer and bid: offered, qualified and activated volume (MW) and price (``bids.csv``)."""
    bids = {b.bid_id: b for b in list(case.bids) + case.voll_bids}
    rows = []
    for lr in res.layers:
        for bid_id in sorted(set(lr.offered) | {k for k in lr.activation if k.startswith("voll:")}):
            b = bids[bid_id]
            rows.append(
                _row(
                    BID_COLUMNS,
                    {
                        "case": case.name,
                        "seed": case.seed,
                        "scheme": res.scheme,
                        "prequalification": res.prequalification,
                        "layer": lr.name + ("" if lr.activates else " (reservation)"),
                        "bid_id": bid_id,
                        "area": b.area,
                        "bus": b.bus,
                        "direction": b.direction,
                        "kind": b.kind,
                        "end_user": b.end_user,
                        "price_eur_per_mw": b.price,
                        "offered_mw": lr.offered.get(bid_id, 0.0),
                        "qualified_mw": lr.qualified.get(bid_id, 0.0),
                        "activated_mw": lr.activation.get(bid_id, 0.0),
                    },
                )
            )
    return rows


def interface_rows(case: Case, res: SchemeResult) -> list[dict[str, Any]]:
    """Per distribution network, its import from the transmission bus before the market and after
    each activating layer (``interfaces.csv``)."""
    rows = []
    done: dict[str, float] = {}
    layers = [("base", {})] + [(lr.name, lr.activation) for lr in res.layers if lr.activates]
    for name, act in layers:
        for dname, net in case.distributions.items():
            step = net_activation(case.bids_in(dname), act)
            done[dname] = done.get(dname, 0.0) + step
            rows.append(
                _row(
                    INTERFACE_COLUMNS,
                    {
                        "case": case.name,
                        "seed": case.seed,
                        "scheme": res.scheme,
                        "prequalification": res.prequalification,
                        "layer": name,
                        "network": dname,
                        "transmission_bus": case.interface_bus[dname],
                        "layer_net_activation_mw": step,
                        "interface_import_mw": float(net.load_mw.sum()) - done[dname],
                    },
                )
            )
    return rows


def violation_rows(case: Case, res: SchemeResult) -> list[dict[str, Any]]:
    """Every limit the outcome breaks (``violations.csv``)."""
    if not res.status.ok:
        return []
    head = {"case": case.name, "seed": case.seed, "scheme": res.scheme, "prequalification": res.prequalification}
    return [_row(VIOLATION_COLUMNS, head | r) for r in violations(case, res.activation)]


def evaluate(case: Case, schemes: Iterable[str]) -> tuple[pd.DataFrame, list[SchemeResult]]:
    """Run ``schemes`` on ``case``; return the KPI table and the raw results. The common market is
    the reference of the inefficiency and always runs; schemes under NFCA caps (``@nfca``) are
    measured against ``common@nfca``, which then joins the table."""
    names = list(dict.fromkeys(schemes))
    ref = {False: run_scheme(case, "common")}
    if any(uses_nfca(case, n) for n in names):
        ref[True] = run_scheme(case, "common@nfca")
        if not any(parse_scheme(n)[0] == "common" and uses_nfca(case, n) for n in names):
            names.append("common@nfca")
    results = []
    for n in names:
        capped = uses_nfca(case, n)
        results.append(ref[capped] if parse_scheme(n)[0] == "common" else run_scheme(case, n))
    rows = []
    for n, r in zip(names, results):
        base = ref[uses_nfca(case, n)]
        rows.append(kpi_row(case, r, base.cost if base.status.ok else float("nan")))
    return pd.DataFrame(rows, columns=KPI_COLUMNS), results


# ------------------------------------------------------------------ output


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """A table as CSV, atomically; values already rounded (``_clean``), NaN as empty."""
    return write_text(path, df.to_csv(index=False))


def write_outputs(out: Path, case: Case, kpis: pd.DataFrame, results: list[SchemeResult]) -> list[Path]:
    """``kpis.csv``, ``kpis.json``, ``bids.csv``, ``interfaces.csv`` and ``violations.csv`` in ``out``."""
    out = Path(out)
    tables = {
        "kpis.csv": kpis,
        "bids.csv": pd.DataFrame([r for res in results for r in bid_rows(case, res)], columns=BID_COLUMNS),
        "interfaces.csv": pd.DataFrame(
            [r for res in results for r in interface_rows(case, res)], columns=INTERFACE_COLUMNS
        ),
        "violations.csv": pd.DataFrame(
            [r for res in results for r in violation_rows(case, res)], columns=VIOLATION_COLUMNS
        ),
    }
    written = [write_csv(df, out / name) for name, df in tables.items()]
    records = [{k: _jsonable(v) for k, v in r.items()} for r in kpis.to_dict(orient="records")]
    write_text(out / "kpis.json", json.dumps(records, indent=1))
    return written[:1] + [out / "kpis.json"] + written[1:]
