"""``nfca market``: run the TSO-DSO market schemes on a case and write the KPI tables.

The CLI only parses arguments and calls the library. Results go to stdout, diagnostics to stderr.
Every input is checked before anything is computed; a problem prints one line ``error: ...`` and
exits with the code of the project's table: 2 bad input, 3 a clearing with no solution, 6 an
output folder that cannot be written.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="TSO-DSO coordinated flexibility markets (seed chapter 4) with NFCA prequalification.",
    no_args_is_help=True,
    add_completion=False,
)

EXIT_INPUT, EXIT_INFEASIBLE, EXIT_OUTPUT = 2, 3, 6


def _fail(msg: str, code: int = EXIT_INPUT) -> typer.Exit:
    print(f"error: {msg}", file=sys.stderr)
    return typer.Exit(code)


def check_output_dir(out: Path) -> None:
    """Refuse an ``--out`` that is a file or cannot be written, before any computing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file, not a folder", EXIT_OUTPUT)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(f"--out {out}: cannot create the folder ({exc.strerror})", EXIT_OUTPUT) from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise _fail(f"--out {out}: the folder is not writable", EXIT_OUTPUT)


def _schemes(names: list[str]) -> list[str]:
    from market_bridge.schemes import SCHEMES, parse_scheme

    out: list[str] = []
    for s in names:
        out += list(SCHEMES) if s.lower() == "all" else [s]
    try:
        for s in out:
            parse_scheme(s)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    return out


@app.command()
def run(
    case: str = typer.Option("A", "--case", help="Shipped case A, B, C or D (seed section 4.2)."),
    scheme: list[str] = typer.Option(
        ["all"],
        "--scheme",
        help="Scheme or 'all' (repeatable): multilevel_01..06 (ml01..ml06), "
        "multilevel_06_seed (ml06_seed), bid_aggregation (ba), common (cm); "
        "'ml03@uniform_oe' picks a prequalification, 'X@nfca' caps the LV "
        "end-users by their envelopes.",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: kpis.csv/json, bids.csv, interfaces.csv, violations.csv."
    ),
    case_file: Path | None = typer.Option(None, "--case-file", help="An edited case TOML file (overrides --case)."),
    envelopes: Path | None = typer.Option(
        None, "--envelopes", help="envelopes.csv from 'nfca envelopes': LV end-users bid (needs an @nfca scheme)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Bid-data seed (default: the case file's)."),
) -> None:
    """Clear the chosen schemes on one case and write the KPI and per-bid tables."""
    from market_bridge.cases import CaseError, load_case
    from market_bridge.kpis import evaluate, write_outputs
    from market_bridge.schemes import PREQUALIFIED, uses_nfca
    from nfca.errors import OutputError

    names = _schemes(scheme)
    check_output_dir(out)
    try:
        c = load_case(case, case_file, envelopes, seed)
    except CaseError as exc:
        raise _fail(str(exc)) from exc
    nfca_runs = [n for n in names if uses_nfca(c, n)]
    if envelopes is not None and not nfca_runs:
        using = ", ".join(f"{s}@nfca" for s in PREQUALIFIED)
        raise _fail(
            f"--envelopes is used only by schemes with NFCA caps ({using}, or any scheme@nfca); "
            f"none of {', '.join(names)} uses it"
        )
    if nfca_runs and not c.lv_caps:
        raise _fail(f"{nfca_runs[0]}: NFCA caps need an envelopes file with participants (--envelopes)")
    df, results = evaluate(c, names)
    try:
        written = write_outputs(out, c, df, results)
    except OutputError as exc:
        raise _fail(str(exc), EXIT_OUTPUT) from exc
    for _, r in df.iterrows():
        label = r["scheme"] + (f"@{r['prequalification']}" if r["prequalification"] else "")
        print(
            f"{label:<28} {r['status']:<10} cost {r['cost_eur']:10.2f} EUR  ineff {r['inefficiency_pct']:8.2f} %  "
            f"lines {r['n_line_violations']:>3}  volt {r['n_voltage_violations']:>3}  "
            f"shortfall {r['shortfall_mw']:.3f} MW  {r['time_s']:.2f} s"
        )
    print(f"case {c.name}, seed {c.seed}: wrote {', '.join(p.name for p in written)} in {out}", file=sys.stderr)
    short = df[df["shortfall_mw"] > 0]
    for _, r in short.iterrows():
        print(
            f"notice: {r['scheme']} leaves {r['shortfall_mw']:.3f} MW of the imbalance unmet "
            f"(priced at the value of lost load)",
            file=sys.stderr,
        )
    bad = df[df["status"] != "optimal"]
    if len(bad):
        r = bad.iloc[0]
        raise _fail(f"clearing of {r['scheme']} on case {c.name} is {r['status']} ({r['message']})", EXIT_INFEASIBLE)


@app.command()
def tables(
    out: Path = typer.Option(..., "--out", help="Output folder for the tables and the figure."),
    steps: str = typer.Option(
        "4,2,1,0.5,0.25,0.125", "--steps", help="Bid-aggregation step sizes (MW), comma-separated."
    ),
    sweep_case: str = typer.Option("B", "--sweep-case", help="Case of the step-size sweep."),
    seed: list[int] | None = typer.Option(
        None, "--seed", help="Bid-data seeds (repeatable; default: both shipped seeds)."
    ),
) -> None:
    """Seed Tables 4-2 to 4-8 for cases A-D next to the seed's, the agreement counts and the
    bid-aggregation trade-off."""
    from market_bridge.cases import SEEDS, CaseError, case_file
    from market_bridge.tables import build_tables
    from nfca.errors import OutputError

    try:
        step_list = [float(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise _fail(f"--steps must be comma-separated numbers, got {steps!r}") from None
    if not step_list or min(step_list) <= 0:
        raise _fail(f"--steps must be positive numbers, got {steps!r}")
    try:
        case_file(sweep_case)
    except CaseError as exc:
        raise _fail(f"--sweep-case: {exc}") from exc
    check_output_dir(out)
    try:
        written = build_tables(
            out, step_list, sweep_case.upper(), tuple(seed or SEEDS), log=lambda m: print(m, file=sys.stderr)
        )
    except OutputError as exc:
        raise _fail(str(exc), EXIT_OUTPUT) from exc
    print("\n".join(str(p) for p in written))
