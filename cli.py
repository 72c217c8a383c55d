"""The `nfca` command. It only parses arguments and calls the library."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from feeders.cli import app as feeders_app
from market_bridge.cli import app as market_app
from nfca.studies.classify import CAPACITY_TOL, FAIR_TOL
from nfca.errors import NfcaError

app = typer.Typer(
    help="Guaranteed-capacity operating envelopes for non-firm connection agreements on LV feeders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)  # logs: no 80-column cut
DEBUG = {"on": False}


class MethodName(str, Enum):
    optimal = "optimal"
    fair = "fair"
    proportional = "proportional"
    propfair = "propfair"
    maxmin = "maxmin"


class DirectionName(str, Enum):
    import_ = "import"
    export = "export"


class Format(str, Enum):
    csv = "csv"
    json = "json"
    gpkg = "gpkg"
    png = "png"


def handled(fn):
    """Turn library errors into a one-line message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NfcaError as exc:
            if DEBUG["on"]:
                raise
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug: say so in one line; --debug shows the traceback
            if DEBUG["on"]:
                raise
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (rerun with --debug for details)",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False) -> None:
    DEBUG["on"] = debug


FeederArg = Annotated[Path, typer.Argument(help="OpenDSS feeder file (Master.dss).", show_default=False)]


def _options(vmin: float, vmax: float, power_factor: float, source_pu: Optional[float], reduce: bool,
             kron: bool = False, v_neutral_max: Optional[float] = None):
    from nfca.model.envelope import EnvelopeOptions
    from nfca.model.limits import Limits

    limits = Limits(vmin_pu=vmin, vmax_pu=vmax, v_neutral_max_v=v_neutral_max)
    return EnvelopeOptions(limits=limits, power_factor=power_factor, source_pu=source_pu, reduce=reduce, kron=kron)


@app.command()
@handled
def envelopes(
    feeder: FeederArg,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("nfca-results"),
    method: Annotated[list[MethodName], typer.Option(help="Method(s); repeat for several.")] = [MethodName.optimal, MethodName.fair],
    direction: Annotated[list[DirectionName], typer.Option(help="Direction(s); repeat for several.")] = [DirectionName.import_, DirectionName.export],
    participants: Annotated[str, typer.Option(help="'all', a fraction (seeded random subset) or a CSV of end_user names.")] = "all",
    seed: Annotated[int, typer.Option(help="Seed for a random subset of participants.")] = 0,
    capacities: Annotated[Optional[Path], typer.Option(help="CSV end_user,capacity_kva overriding connection capacities.")] = None,
    default_capacity: Annotated[float, typer.Option(help="Capacity (kVA) of loads whose XfkVA is not set.")] = 9.2,
    power_factor: Annotated[float, typer.Option(help="Power factor of every participant.")] = 1.0,
    vmin: Annotated[float, typer.Option(help="Lower voltage limit (pu of nominal, EN 50160).")] = 0.90,
    vmax: Annotated[float, typer.Option(help="Upper voltage limit (pu of nominal, EN 50160).")] = 1.10,
    source_pu: Annotated[Optional[float], typer.Option(help="Source voltage (pu); default: the feeder file's.")] = None,
    fmt: Annotated[list[Format], typer.Option("--format", help="Output format(s).")] = list(Format),
    reduce: Annotated[bool, typer.Option(help="Exact network reduction before optimising.")] = True,
    crs: Annotated[Optional[str], typer.Option(help="Coordinate reference system of the bus coordinates, e.g. EPSG:31370.")] = None,
    kron: Annotated[bool, typer.Option("--kron", help="Optimise on the Kron-reduced model (neutrals taken as perfectly earthed); verification still runs on the four-wire file.")] = False,
    v_neutral_max: Annotated[Optional[float], typer.Option(help="Limit (volts) on the neutral-to-earth voltage at end-users' neutral conductors; default: none.")] = None,
    ipopt_option: Annotated[list[str], typer.Option("--ipopt-option", help="Ipopt option NAME=VALUE for every solve attempt (repeat for several), e.g. max_iter=50.")] = [],
    profiles: Annotated[Optional[str], typer.Option(help="End-user profiles (CSV: end_user,timestamp,p_kw or timestamp + one column per end-user; kW, consumption +) or 'loadshapes' (the feeder's OpenDSS load shapes): dynamic envelopes per interval, and static ones for the horizon.")] = None,
    resolution: Annotated[Optional[str], typer.Option(help="With --profiles: interval length, e.g. 15min or 1h (mean power per interval); default: the profiles'.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="With --profiles: processes (default: one per core, at most one per method x direction).")] = None,
) -> None:
    """Guaranteed import/export per end-user, each envelope set verified by OpenDSS."""
    from nfca.engine.opendss import read_feeder
    from nfca.io.outputs import prepare_dir, write_study
    from nfca.studies.envelopes import run_envelopes, select_participants, with_capacities

    opts = _options(vmin, vmax, power_factor, source_pu, reduce, kron, v_neutral_max)
    if ipopt_option:
        opts = dataclasses.replace(opts, ipopt_options=_ipopt_options(ipopt_option))
    prepare_dir(out)
    with err.status("reading feeder") as status:
        f = read_feeder(feeder, default_capacity_kva=default_capacity)
        if capacities is not None:
            f = with_capacities(f, capacities)
        chosen = select_participants(f, participants, seed)
        if profiles is not None:  # dynamic envelopes over the profiles' horizon
            return _dynamic(f, profiles, resolution, method, direction, opts, chosen, workers, out, fmt, status)
        study = run_envelopes(f, [m.value for m in method], [d.value for d in direction], opts, chosen,
                              progress=lambda s: status.update(f"solving {s}"))
        status.update("writing outputs")
        files = write_study(study, out, tuple(x.value for x in fmt), crs)
    _print_summary(study.summary())
    err.print(f"wrote {len(files)} file(s) to {out}", highlight=False)


def _dynamic(f, profiles, resolution, method, direction, opts, chosen, workers, out, fmt, status) -> None:
    from nfca.studies.dynamic import run_dynamic, write_dynamic
    from nfca.studies.profiles import load_profiles

    status.update("reading profiles")
    prof = load_profiles(profiles, f, resolution)
    study = run_dynamic(f, prof, [m.value for m in method], [d.value for d in direction], opts, chosen, workers,
                        progress=lambda s: status.update(f"solving {s}"))
    status.update("writing outputs")
    files = write_dynamic(study, out, tuple(x.value for x in fmt))
    status.stop()
    _print_dynamic_summary(study.summary())
    err.print(f"wrote {len(files)} file(s) to {out}", highlight=False)


def _print_dynamic_summary(summary: dict) -> None:
    from rich.table import Table

    t = Table(title=f"{summary['feeder']}: {summary['participants']} of {summary['end_users']} end-users with an NFCA, "
                    f"{summary['intervals']} x {summary['resolution_min']:g} min")
    for c in ("method", "direction", "static kW", "dynamic kW min/mean/max", "Ipopt solves", "verified", "s"):
        t.add_column(c)
    for m, per in summary["dynamic"].items():
        for d, s in per.items():
            st, tot = summary["static"][m][d], s["total_kw"]
            t.add_row(m, d, f"{st['total_kw']:.1f}", f"{min(tot):.1f} / {sum(tot) / len(tot):.1f} / {max(tot):.1f}",
                      str(s["solves"]), "yes" if s["verified"] and st["verified"] else "NO", f"{s['seconds']:.1f}")
    err.print(t)
    err.print(f"{summary['seconds']:.1f} s in {summary['workers']} process(es)", highlight=False)


@app.command()
@handled
def activations(
    feeder: FeederArg,
    profiles: Annotated[str, typer.Option(help="End-user profiles: a CSV (kW, consumption +) or 'loadshapes' (the feeder's).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("nfca-activations"),
    resolution: Annotated[Optional[str], typer.Option(help="Interval length, e.g. 15min (mean power per interval); default: the profiles'.")] = None,
    method: Annotated[list[MethodName], typer.Option(help="Method(s) of the envelopes; repeat for several.")] = [MethodName.optimal, MethodName.fair],
    participants: Annotated[str, typer.Option(help="'all', a fraction (seeded random subset) or a CSV of end_user names.")] = "all",
    seed: Annotated[int, typer.Option(help="Seed for a random subset of participants.")] = 0,
    max_activations: Annotated[Optional[int], typer.Option(help="Policy: activations allowed over the horizon (seed: ten a year); negative: no cap.")] = 10,
    max_duration: Annotated[Optional[str], typer.Option(help="Policy: longest activation, e.g. 1h (seed: one hour); 'none': no cap.")] = "1h",
    capacities: Annotated[Optional[Path], typer.Option(help="CSV end_user,capacity_kva overriding connection capacities.")] = None,
    power_factor: Annotated[float, typer.Option(help="Power factor of every end-user.")] = 1.0,
    vmin: Annotated[float, typer.Option(help="Lower voltage limit (pu).")] = 0.90,
    vmax: Annotated[float, typer.Option(help="Upper voltage limit (pu).")] = 1.10,
    source_pu: Annotated[Optional[float], typer.Option(help="Source voltage (pu); default: the feeder file's.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Processes for the envelopes (default: one per core).")] = None,
) -> None:
    """When NFCAs must be activated over the profiles, how often and how long, and the energy curtailed
    under static and dynamic limits; checks a temporary-activation policy (count and duration caps)."""
    from nfca.studies.activations import ActivationPolicy, analyse, write_activations
    from nfca.engine.opendss import read_feeder
    from nfca.studies.dynamic import run_dynamic
    from nfca.io.outputs import prepare_dir
    from nfca.studies.profiles import load_profiles, parse_resolution
    from nfca.studies.envelopes import select_participants, with_capacities

    cap_duration = None if max_duration is None or max_duration.strip().lower() == "none" else parse_resolution(max_duration)
    policy = ActivationPolicy(None if max_activations is None or max_activations < 0 else max_activations, cap_duration)
    opts = _options(vmin, vmax, power_factor, source_pu, True)
    prepare_dir(out)
    with err.status("reading feeder") as status:
        f = read_feeder(feeder)
        if capacities is not None:
            f = with_capacities(f, capacities)
        chosen = select_participants(f, participants, seed)
        prof = load_profiles(profiles, f, resolution)
        study = run_dynamic(f, prof, [m.value for m in method], ["import", "export"], opts, chosen, workers,
                            progress=lambda s: status.update(f"envelopes: {s}"))
        status.update("power flows of the firm and the activated operation")
        result = analyse(study, policy)
        status.update("writing outputs")
        files = write_activations(result, out)
    s = result.summary()
    pol = s["policy"]
    err.print(f"{s['intervals_needing_activation']} of {s['intervals']} intervals need an activation: "
              f"{pol['activations']} activation(s), longest {pol['longest_min']:g} min; policy "
              f"{'satisfied' if pol['satisfied'] else 'NOT satisfied'}", highlight=False)
    for m, per in s["curtailed_kwh"].items():
        err.print(f"  {m}: curtailed " + ", ".join(f"{k} {v:.1f} kWh" for k, v in per.items()), highlight=False)
    err.print(f"wrote {len(files)} file(s) to {out}", highlight=False)


def _ipopt_options(pairs: list[str]) -> dict:
    """NAME=VALUE pairs to Ipopt options (integers, then numbers, else strings)."""
    from nfca.errors import InputError

    out: dict = {}
    for pair in pairs:
        name, sep, value = (x.strip() for x in pair.partition("="))
        if not (sep and name and value):
            raise InputError(f"--ipopt-option must be NAME=VALUE, got '{pair}'")
        for cast in (int, float, str):
            try:
                out[name] = cast(value)
                break
            except ValueError:
                continue
    return out


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    t = Table(title=f"{summary['feeder']}: {summary['participants']} of {summary['end_users']} end-users with an NFCA",
              caption="kW guaranteed; V: customer voltages (pu) and loading (%) in the OpenDSS verification")
    for c in ("method", "dir", "total", "min", "max", "Jain", "V min", "V max", "load %", "verified", "s"):
        t.add_column(c, no_wrap=True)
    for m, per in summary["methods"].items():
        for d, s in per.items():
            t.add_row(m, d, f"{s['total_kw']:.1f}", f"{s['min_kw']:.2f}", f"{s['max_kw']:.2f}", f"{s['jain_index']:.3f}",
                      f"{s['v_min_pu']:.3f}", f"{s['v_max_pu']:.3f}", f"{s['max_loading_pct']:.1f}",
                      "yes" if s["verified"] else "NO", f"{s['seconds']:.2f}")
    err.print(t)


@app.command()
@handled
def powerflow(
    feeder: FeederArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object on stdout.")] = False,
    load_kw: Annotated[Optional[float], typer.Option(help="Put every end-user at this power (kW, pf 1) instead of the file's.")] = None,
) -> None:
    """Three-phase power flow with the UTOPF model, compared with OpenDSS."""
    from nfca.studies.validation import compare_powerflow

    report = compare_powerflow(feeder, load_kw)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        for k, v in report.items():
            err.print(f"{k:>16}: {v}", highlight=False)


@app.command("sweep-participation")
@handled
def sweep_participation(
    feeder: FeederArg,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("nfca-sweep"),
    step: Annotated[int, typer.Option(help="Step in the number of participants.")] = 5,
    method: Annotated[list[MethodName], typer.Option(help="Method(s).")] = [MethodName.optimal, MethodName.fair],
    direction: Annotated[list[DirectionName], typer.Option(help="Direction(s).")] = [DirectionName.import_, DirectionName.export],
    seed: Annotated[int, typer.Option(help="Seed of the order in which end-users join.")] = 0,
    vmin: float = 0.90, vmax: float = 1.10, power_factor: float = 1.0,
) -> None:
    """Guaranteed power against the number of NFCA end-users (seed Fig 5-4)."""
    from nfca.io import plots
    from nfca.engine.opendss import read_feeder
    from nfca.io.outputs import prepare_dir, write_csv
    from nfca.studies.envelopes import sweep_participation as sweep

    prepare_dir(out)
    f = read_feeder(feeder)
    n = len(f.end_users)
    counts = sorted({n, *range(step, n + 1, step)})
    with err.status("sweeping") as status:
        df = sweep(f, counts, [m.value for m in method], [d.value for d in direction],
                   _options(vmin, vmax, power_factor, None, True), seed, progress=lambda s: status.update(s))
    write_csv(out / "participation.csv", df)
    plots.participation_sweep(df, out / "participation.png")
    err.print(df.to_string(index=False), highlight=False)


@app.command()
@handled
def batch(
    feeders: Annotated[list[Path], typer.Argument(help="Feeder files, folders or manifest CSVs.", show_default=False)],
    out: Annotated[Path, typer.Option(help="Results folder (resumable).")] = Path("nfca-batch"),
    workers: Annotated[Optional[int], typer.Option(help="Local worker processes (default: one per core).")] = None,
    dask: Annotated[Optional[str], typer.Option(help="Address of a Dask scheduler to run on instead.")] = None,
    crs: Annotated[Optional[str], typer.Option(help="CRS of the bus coordinates, e.g. EPSG:31370.")] = None,
    vmin: float = 0.90, vmax: float = 1.10, power_factor: float = 1.0,
) -> None:
    """Optimal and fair envelopes (import and export) for many feeders, then the feeder types."""
    from rich.progress import Progress

    from nfca.studies.batch import discover, run_batch
    from nfca.studies.classify import classify as classify_results
    from nfca.io.outputs import write_csv

    jobs = discover(feeders)
    opts = _options(vmin, vmax, power_factor, None, True)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("feeders", total=len(jobs))
        report = run_batch(jobs, out, opts, workers, dask, crs, progress=lambda name, status: bar.advance(task))
    types = classify_results(out)
    write_csv(out / "feeder_types.csv", types)
    _classification_figures(out, types)
    err.print(f"{len(report.done)} computed, {len(report.skipped)} already done, {len(report.failed)} failed; "
              f"results in {out}", highlight=False)
    for name, msg in report.failed.items():
        err.print(f"[red]failed[/] {escape(name)}: {escape(msg)}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(7)


@app.command()
@handled
def classify(
    results: Annotated[Path, typer.Argument(help="Results folder of `nfca batch`.", show_default=False)],
    capacity_tol: Annotated[float, typer.Option(help="Type 1 when optimal and fair are within this fraction of capacity.")] = CAPACITY_TOL,
    fair_tol: Annotated[float, typer.Option(help="Type 2 when fair is within this fraction of optimal.")] = FAIR_TOL,
) -> None:
    """Recompute RESULTS/feeder_types.csv and its figures."""
    from nfca.studies.classify import classify as classify_results
    from nfca.errors import InputError
    from nfca.io.outputs import write_csv

    types = classify_results(results, capacity_tol, fair_tol)
    if types.empty:
        raise InputError(f"{results}: no feeder results (feeders/*/summary.json) found")
    write_csv(results / "feeder_types.csv", types)
    _classification_figures(results, types)
    err.print(types["type"].value_counts().sort_index().rename("feeders").to_string(), highlight=False)


def _classification_figures(results: Path, types) -> None:
    import pandas as pd

    from nfca.io import plots

    if types.empty:
        return
    for d in ("import", "export"):
        plots.feeder_bars(types, results / f"feeder_types_{d}.png", d)
    plots.grid_map(results, types, results / "grid_map.png")
    for t in (2, 3):  # a representative feeder of each type: the one with most end-users
        of_type = types[types["type"] == t].sort_values("end_users", ascending=False)
        if len(of_type):
            name = of_type["feeder"].iloc[0]
            env = pd.read_csv(results / "feeders" / name / "envelopes.csv")
            plots.envelope_bars(env[env["direction"] == "import"], results / f"type{t}_{name}_import.png", "import")


app.add_typer(feeders_app, name="feeders", help="Build reference and synthetic feeders.")
app.add_typer(market_app, name="market", help="TSO-DSO flexibility market clearings (seed chapter 4).")

if __name__ == "__main__":
    app()
