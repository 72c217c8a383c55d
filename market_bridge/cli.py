"""``nfca market``: run the TSO-DSO market schemes on a case and write KPI tables.

The CLI only parses arguments and calls the library. Diagnostics go to stderr; bad input or an
infeasible clearing prints one line naming the problem and exits with code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="TSO-DSO coordinated flexibility markets (seed chapter 4) with NFCA prequalification.",
                  no_args_is_help=True, add_completion=False)


def _fail(msg: str) -> typer.Exit:
    print(f"error: {msg}", file=sys.stderr)
    return typer.Exit(2)


@app.command()
def run(
    case: str = typer.Option("A", "--case", help="Shipped case A, B, C or D (seed section 4.2)."),
    scheme: list[str] = typer.Option(["all"], "--scheme",
                                     help="Scheme name or 'all' (repeatable): multilevel_01..06 (ml01..ml06), "
                                          "bid_aggregation, common; 'ml03@uniform_oe' picks a prequalification."),
    out: Path = typer.Option(..., "--out", help="Output folder for kpis.csv and kpis.json."),
    case_file: Optional[Path] = typer.Option(None, "--case-file", help="An edited case TOML file (overrides --case)."),
    envelopes: Optional[Path] = typer.Option(None, "--envelopes", help="envelopes.csv from 'nfca envelopes' (LV bids)."),
) -> None:
    """Clear the chosen schemes on one case and write kpis.csv / kpis.json."""
    from market_bridge.cases import CaseError, load_case
    from market_bridge.kpis import evaluate, write_kpis
    from market_bridge.schemes import SCHEMES, parse_scheme

    names: list[str] = []
    for s in scheme:
        names += list(SCHEMES) if s.lower() == "all" else [s]
    try:
        for s in names:
            parse_scheme(s)
        c = load_case(case, case_file, envelopes)
    except (CaseError, ValueError) as exc:
        raise _fail(str(exc))
    try:
        df, _ = evaluate(c, names)
    except ValueError as exc:  # e.g. 'nfca' prequalification without envelopes
        raise _fail(str(exc))
    csv, js = write_kpis(df, out)
    for _, r in df.iterrows():
        print(f"{r['scheme']:<16} {r['status']:<10} cost {r['cost_eur']:10.2f} EUR  "
              f"ineff {r['inefficiency_pct']:7.2f} %  lines {r['n_line_violations']}  "
              f"volt {r['n_voltage_violations']}  {r['time_s']:.2f} s", file=sys.stderr)
    print(f"wrote {csv} and {js}", file=sys.stderr)
    bad = df[df["status"] != "ok"]
    if len(bad):
        r = bad.iloc[0]
        raise _fail(f"clearing of {r['scheme']} on case {c.name} is {r['status']} ({r['message']})")


@app.command()
def tables(
    out: Path = typer.Option(..., "--out", help="Output folder for the tables and the figure."),
    steps: str = typer.Option("4,2,1,0.5,0.25,0.125", "--steps", help="Bid-aggregation step sizes (MW), comma-separated."),
    sweep_case: str = typer.Option("B", "--sweep-case", help="Case of the step-size sweep."),
) -> None:
    """Seed Tables 4-2 to 4-8 for cases A-D next to the seed's, and the bid-aggregation trade-off."""
    from market_bridge.cases import CaseError
    from market_bridge.tables import build_tables

    try:
        step_list = [float(s) for s in steps.split(",") if s.strip()]
        if not step_list or min(step_list) <= 0:
            raise ValueError("steps must be positive numbers")
        written = build_tables(out, step_list, sweep_case, log=lambda m: print(m, file=sys.stderr))
    except (CaseError, ValueError) as exc:
        raise _fail(str(exc))
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
