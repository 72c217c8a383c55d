"""Seed Tables 4-2 to 4-8 measured on cases A-D, side by side with the seed's published values,
and the bid-aggregation trade-off (inefficiency and time against step size)."""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from market_bridge.cases import load_case
from market_bridge.kpis import evaluate, kpi_row, write_atomic
from market_bridge.schemes import SCHEMES, bid_aggregation, common, multilevel_03

CASES = ("A", "B", "C", "D")
LABEL = {"multilevel_01": "Multilevel 01", "multilevel_02": "Multilevel 02", "multilevel_03": "Multilevel 03",
         "multilevel_04": "Multilevel 04", "multilevel_05": "Multilevel 05", "multilevel_06": "Multilevel 06",
         "bid_aggregation": "Bid aggregation", "common": "Common market"}

# Published values of the seed (ALEXANDER D3.3, Tables 4-2 to 4-6), cases A-D, rows in SCHEMES order.
SEED = {
    "inefficiency_pct": [[3.09, -3.98, -4.54, 157.20], [3.09, 22.82, 23.99, 157.20], [3.09, 29.70, 20.18, 157.20],
                         [3.09, 10.17, 0.00, 157.20], [-0.17, 11.06, 23.39, -53.54], [-0.17, 53.14, 8.81, -53.54],
                         [0.31, 1.42, 1.17, 27.27], [0, 0, 0, 0]],
    "n_line_violations": [[0, 40, 24, 0], [0, 18, 0, 0], [0] * 4, [0] * 4, [12, 17, 0, 12], [12, 0, 0, 12],
                          [0] * 4, [0] * 4],
    "max_line_violation_pct": [[0, 167.40, 147.4, 0], [0, 265.73, 0, 0], [0] * 4, [0] * 4, [173.4, 110.13, 0, 173.4],
                               [173.4, 0, 0, 173.4], [0] * 4, [0] * 4],
    "n_voltage_violations": [[0, 10, 9, 0], [0, 35, 0, 0], [0] * 4, [0] * 4, [0, 21, 0, 0], [0] * 4, [0] * 4, [0] * 4],
    "max_voltage_violation_pct": [[0, 21.19, 17.10, 0], [0, 31.80, 0, 0], [0] * 4, [0] * 4, [0, 18.34, 0, 0],
                                  [0] * 4, [0] * 4, [0] * 4],
}
# Seed Table 4-7 (unqualified volume, %, up/down) and Table 4-8 (ML03 by prequalification method).
SEED_T47 = {"multilevel_03": [(79.4, 100), (75.6, 100), (95.0, 71.7), (79.4, 100)],
            "multilevel_06": [(67.3, 98.0), (100, 98.0), (96.4, 98.2), (67.3, 98.0)]}
SEED_T48 = {
    "price_oe": {"inefficiency_pct": [3.09, 29.7, 20.2, 157.2], "time_s": [12.25, 8.71, 11.74, 11.56],
                 "unqualified_up_pct": [79.4, 75.6, 95.0, 79.4], "unqualified_down_pct": [100, 100, 71.7, 100]},
    "uniform_oe": {"inefficiency_pct": [3.09, 66.8, 38.6, 157.2], "time_s": [12.11, 9.82, 11.72, 11.90],
                   "unqualified_up_pct": [79.4, 75.6, 73.4, 79.4], "unqualified_down_pct": [100, 100, 100, 100]},
    "interrface": {"inefficiency_pct": [3.09, 41.8, 41.4, 157.2], "time_s": [512.8, 475.43, 551.17, 534.39],
                   "unqualified_up_pct": [88.6, 91.7, 89.9, 88.6], "unqualified_down_pct": [100, 100, 100, 100]},
}
TITLES = {"inefficiency_pct": "Table 4-2 Market inefficiency [%]",
          "n_line_violations": "Table 4-3 Number of congestions",
          "max_line_violation_pct": "Table 4-4 Maximum volume of congestion [% of limit]",
          "n_voltage_violations": "Table 4-5 Number of voltage violations",
          "max_voltage_violation_pct": "Table 4-6 Maximum volume of voltage violation [% of limit]",
          "time_s": "Figure 4-2 (as a table) Computational time [s]"}


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.0f}" if float(v).is_integer() and abs(v) < 1e6 else f"{v:.2f}"


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def kpi_tables(kpis: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables 4-2..4-6 and the time table: rows schemes, columns 'Case X' as 'ours (seed)'."""
    out = {}
    for key, title in TITLES.items():
        rows = []
        for i, s in enumerate(SCHEMES):
            row = {"Market scheme": LABEL[s]}
            for j, c in enumerate(CASES):
                ours = kpis[(kpis["case"] == c) & (kpis["scheme"] == s)][key]
                val = _fmt(float(ours.iloc[0])) if len(ours) else "-"
                seed = f" ({_fmt(SEED[key][i][j])})" if key in SEED else ""
                row[f"Case {c}"] = val + seed
            rows.append(row)
        out[title] = pd.DataFrame(rows)
    return out


def table_47(kpis: pd.DataFrame) -> pd.DataFrame:
    """Table 4-7: unqualified up/down volume of ML03 and ML06, ours (seed)."""
    rows = []
    for s in ("multilevel_03", "multilevel_06"):
        row = {"Market scheme": LABEL[s]}
        for j, c in enumerate(CASES):
            r = kpis[(kpis["case"] == c) & (kpis["scheme"] == s)]
            up, down = (float(r["unqualified_up_pct"].iloc[0]), float(r["unqualified_down_pct"].iloc[0])) if len(r) else (np.nan, np.nan)
            row[f"Case {c} Up"] = f"{_fmt(up)} ({_fmt(SEED_T47[s][j][0])})"
            row[f"Case {c} Down"] = f"{_fmt(down)} ({_fmt(SEED_T47[s][j][1])})"
        rows.append(row)
    return pd.DataFrame(rows)


def table_48(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 4-8: ML03 per prequalification method; ``rows`` are KPI rows of ML03 runs."""
    out = []
    for key, label in (("inefficiency_pct", "Market inefficiency [%]"), ("violations", "Number of grid violations"),
                       ("time_s", "Computational time [s]"), ("unqualified_up_pct", "Unqualified upward [%]"),
                       ("unqualified_down_pct", "Unqualified downward [%]")):
        for j, c in enumerate(CASES):
            row = {"KPI": label, "Case": c}
            for method in SEED_T48:
                r = rows[(rows["case"] == c) & (rows["prequalification"] == method)]
                if key == "violations":
                    val = float(r["n_line_violations"].iloc[0] + r["n_voltage_violations"].iloc[0]) if len(r) else np.nan
                    seed = 0.0
                else:
                    val = float(r[key].iloc[0]) if len(r) else np.nan
                    seed = SEED_T48[method][key][j]
                shown = _fmt(val)
                if len(r) and r["status"].iloc[0] != "ok" and key not in ("time_s", "unqualified_up_pct",
                                                                           "unqualified_down_pct"):
                    shown = str(r["status"].iloc[0])  # e.g. the TSO layer cannot balance with what qualified
                row[method] = f"{shown} ({_fmt(seed)})"
            out.append(row)
    return pd.DataFrame(out)


def aggregation_sweep(case_name: str, steps: list[float]) -> pd.DataFrame:
    """Inefficiency and time of bid aggregation against the step size on one case."""
    case = load_case(case_name)
    ref = common(case)
    rows = []
    for step in sorted(steps, reverse=True):
        start = time.perf_counter()
        res = bid_aggregation(case, step)
        k = kpi_row(case, res, ref.cost)
        rows.append({"case": case.name, "step_mw": step, "inefficiency_pct": k["inefficiency_pct"],
                     "time_s": time.perf_counter() - start, "lps": res.message,
                     "violations": k["n_line_violations"] + k["n_voltage_violations"]})
    return pd.DataFrame(rows)


def _figure(sweep: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(sweep["step_mw"], sweep["inefficiency_pct"], "o-", color="tab:blue")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("aggregation step [MW]")
    ax.set_ylabel("market inefficiency [%]", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(sweep["step_mw"], sweep["time_s"], "s--", color="tab:red")
    ax2.set_ylabel("computation time [s]", color="tab:red")
    ax.set_title(f"Bid aggregation trade-off, case {sweep['case'].iloc[0]}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def build_tables(out: Path, steps: list[float], sweep_case: str = "B",
                 log: Callable[[str], None] = lambda m: None) -> list[Path]:
    """Run every scheme on cases A-D, ML03 with each prequalification method, the step sweep,
    and write ``tables.md``, CSVs and ``aggregation_tradeoff.png`` into ``out``."""
    out = Path(out)
    kpi_frames, pq_rows = [], []
    for c in CASES:
        log(f"case {c}: all schemes")
        case = load_case(c)
        df, results = evaluate(case, SCHEMES)
        kpi_frames.append(df)
        ref_cost = float(df[df["scheme"] == "common"]["cost_eur"].iloc[0])
        for method in SEED_T48:
            pq_rows.append(kpi_row(case, multilevel_03(case, method), ref_cost))
    kpis = pd.concat(kpi_frames, ignore_index=True)
    pq = pd.DataFrame(pq_rows)
    log(f"bid-aggregation sweep on case {sweep_case}: steps {steps}")
    sweep = aggregation_sweep(sweep_case, steps)

    written = []
    md = ["# TSO-DSO market schemes: measured (seed) values", "",
          "Each cell is `ours (seed)`; seed values from ALEXANDER D3.3 chapter 4.", ""]
    for title, table in kpi_tables(kpis).items():
        md += [f"## {title}", "", _markdown(table), ""]
    md += ["## Table 4-7 Unqualified volume of distributed flexibility for TSO-level markets [%]", "",
           _markdown(table_47(kpis)), ""]
    md += ["## Table 4-8 Multilevel 03 by prequalification method", "", _markdown(table_48(pq)), ""]
    sw = sweep.copy()
    sw["inefficiency_pct"] = sw["inefficiency_pct"].map(lambda v: f"{v:.3f}")
    sw["time_s"] = sw["time_s"].map(lambda v: f"{v:.2f}")
    md += [f"## Bid aggregation: inefficiency and time against step size (case {sweep_case})", "",
           _markdown(sw), "", "![trade-off](aggregation_tradeoff.png)", ""]
    for name, data in (("tables.md", "\n".join(md)), ("kpis_all_cases.csv", kpis.to_csv(index=False, float_format="%.6g")),
                       ("prequalification_methods.csv", pq.to_csv(index=False, float_format="%.6g")),
                       ("aggregation_tradeoff.csv", sweep.to_csv(index=False, float_format="%.6g"))):
        write_atomic(out / name, data)
        written.append(out / name)
    write_atomic(out / "aggregation_tradeoff.png", _figure(sweep))
    written.append(out / "aggregation_tradeoff.png")
    return written
