"""The `nfca` command. It only parses arguments and calls the library."""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import re
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from feeders.cli import app as feeders_app
from market_bridge.cli import app as market_app
from nfca.studies.classify import CAPACITY_TOL, FAIR_TOL
from nfca.errors import InputError, Interrupted, NfcaError

app = typer.Typer(
    help="Guaranteed-capacity operating envelopes for non-firm connection agreements on LV feeders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Text from feeder files and paths is printed as it is: no rich markup, emoji codes or highlighting.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120,  # logs: no 80-column cut
              markup=False, emoji=False, highlight=False)
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


MESSAGE_CHARS = 500  # an error line is cut to about this, keeping where (file, line) and the end
WORD_CHARS = 120  # a single word (a value, a path) longer than this is cut in its middle
_WRITE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM}


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` safe for one terminal line: control characters shown as escapes, every word longer
    than WORD_CHARS cut in its middle, and the whole cut in the middle to about `limit`
    characters, keeping its start (file and line) and its end."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: "\\x%02x" % ord(m.group()), " ".join(text.split()))
    text = re.sub(r"\S{%d,}" % (WORD_CHARS + 1), lambda m: m.group()[:80] + "…" + m.group()[-30:], text)
    if len(text) <= limit:
        return text
    where = re.match(r"^.*? line \d+(?: \(redirected from .*? line \d+\))?:", text[: 2 * limit])
    head = len(where.group()) + 40 if where and len(where.group()) < limit - 60 else limit * 2 // 3
    return text[:head] + " … " + text[-(limit - head - 3):]


def _say(text: str) -> None:
    sys.stderr.write(one_line(text) + "\n")
    sys.stderr.flush()


def _write_error(exc: BaseException) -> OSError | None:
    """The OS error (no space, file too large, permission) behind an exception raised while writing."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _on_signal(signum, frame):
    raise Interrupted(128 + signum)


def handled(fn):
    """Turn library errors into a one-line message and the documented exit code; Ctrl-C, SIGTERM
    and SIGHUP into "interrupted" (130, 143, 129) after everything half-written is removed."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted) as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            _say(exc.message if isinstance(exc, Interrupted) and exc.message else _interrupted())
            raise typer.Exit(code) from None
        except NfcaError as exc:
            if DEBUG["on"]:
                raise
            _say(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if DEBUG["on"]:
                raise
            os_error = _write_error(exc)
            if os_error is not None:  # a full disk, a file size limit, a permission: not a bug
                where = f"{os_error.filename}: " if os_error.filename else ""
                _say(f"error: {where}cannot be written ({os_error.strerror or os_error}); nothing was written")
                raise typer.Exit(6) from None
            _say(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")  # a bug
            raise typer.Exit(1) from None
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    return wrapper


def _interrupted() -> str:
    from nfca.io.outputs import finished_runs

    return f"interrupted; the run in {finished_runs[-1]} is complete" if finished_runs else \
        "interrupted; nothing was written"


def _print_notices(feeder) -> None:
    for notice in feeder.notices:
        _say(str(notice))


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
    from nfca import engine

    engine.prestart()  # OpenDSS loads in its own process while the rest is imported
    _finite(default_capacity=default_capacity, power_factor=power_factor, vmin=vmin, vmax=vmax, source_pu=source_pu,
            v_neutral_max=v_neutral_max)
    _check_seed(seed)
    _check_crs(crs)
    _check_workers(workers)
    from nfca.studies.profiles import parse_resolution

    if resolution is not None:
        parse_resolution(resolution)
    from nfca.io.outputs import run_folder, write_study
    from nfca.studies.envelopes import run_envelopes, select_participants, with_capacities

    opts = _options(vmin, vmax, power_factor, source_pu, reduce, kron, v_neutral_max)
    if ipopt_option:
        opts = dataclasses.replace(opts, ipopt_options=_ipopt_options(ipopt_option))
    with run_folder(out) as tmp, err.status("reading feeder") as status:
        f, shapes = engine.read(feeder, default_capacity_kva=default_capacity)
        _print_notices(f)
        if capacities is not None:
            f = with_capacities(f, capacities)
        chosen = select_participants(f, participants, seed)
        if profiles is not None:  # dynamic envelopes over the profiles' horizon
            summary, files = _dynamic(f, shapes, profiles, resolution, method, direction, opts, chosen, workers,
                                      tmp, fmt, status)
        else:
            study = run_envelopes(f, [m.value for m in method], [d.value for d in direction], opts, chosen,
                                  progress=lambda s: status.update(f"solving {s}"))
            status.update("writing outputs")
            summary, files = study.summary(), write_study(study, tmp, tuple(x.value for x in fmt), crs)
    (_print_summary if profiles is None else _print_dynamic_summary)(summary)
    err.print(f"wrote {len(files)} file(s) to {out}")


def _dynamic(f, shapes, profiles, resolution, method, direction, opts, chosen, workers, tmp, fmt, status):
    from nfca.studies.dynamic import run_dynamic, write_dynamic
    from nfca.studies.profiles import load_profiles

    status.update("reading profiles")
    prof = load_profiles(profiles, f, resolution, shapes)
    study = run_dynamic(f, prof, [m.value for m in method], [d.value for d in direction], opts, chosen, workers,
                        progress=lambda s: status.update(f"solving {s}"))
    status.update("writing outputs")
    return study.summary(), write_dynamic(study, tmp, tuple(x.value for x in fmt))


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
    from nfca import engine

    engine.prestart()
    from nfca.studies.activations import ActivationPolicy, analyse, write_activations
    from nfca.studies.dynamic import run_dynamic
    from nfca.io.outputs import run_folder
    from nfca.studies.profiles import load_profiles, parse_resolution
    from nfca.studies.envelopes import select_participants, with_capacities

    _finite(power_factor=power_factor, vmin=vmin, vmax=vmax, source_pu=source_pu)
    _check_seed(seed)
    _check_workers(workers)
    if resolution is not None:
        parse_resolution(resolution)
    cap_duration = None if max_duration is None or max_duration.strip().lower() == "none" else parse_resolution(max_duration, "--max-duration")
    policy = ActivationPolicy(None if max_activations is None or max_activations < 0 else max_activations, cap_duration)
    opts = _options(vmin, vmax, power_factor, source_pu, True)
    with run_folder(out) as tmp, err.status("reading feeder") as status:
        f, shapes = engine.read(feeder)
        _print_notices(f)
        if capacities is not None:
            f = with_capacities(f, capacities)
        chosen = select_participants(f, participants, seed)
        prof = load_profiles(profiles, f, resolution, shapes)
        study = run_dynamic(f, prof, [m.value for m in method], ["import", "export"], opts, chosen, workers,
                            progress=lambda s: status.update(f"envelopes: {s}"))
        status.update("power flows of the firm and the activated operation")
        result = analyse(study, policy)
        status.update("writing outputs")
        files = write_activations(result, tmp)
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
    out: dict = {}
    for pair in pairs:
        name, sep, value = (x.strip() for x in pair.partition("="))
        if not (sep and name and value):
            raise InputError(f"--ipopt-option must be NAME=VALUE, got '{pair}'")
        out[name] = _ipopt_value(name, value)
    return out


def _ipopt_value(name: str, value: str):
    """`value` typed as Ipopt's option `name` takes it (integer, number or string), checked by
    Ipopt itself (name, type, range, allowed strings); InputError saying what Ipopt expects."""
    import os
    import tempfile

    import cyipopt
    import numpy as np

    class _Nothing:
        def objective(self, x):
            return 0.0

        def gradient(self, x):
            return np.zeros(1)

    typed: list = []
    for cast in (int, float):
        try:
            typed.append(cast(value))
        except ValueError:
            pass
    if any(isinstance(v, float) and not math.isfinite(v) for v in typed):
        raise InputError(f"--ipopt-option {name}={value}: not a finite number")
    typed.append(value)
    problem = cyipopt.Problem(n=1, m=0, problem_obj=_Nothing(), lb=[0.0], ub=[1.0])
    with tempfile.TemporaryFile() as said:  # Ipopt explains a refusal on its standard output
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(said.fileno(), 1)
        try:
            for v in typed:
                try:
                    problem.add_option(name, v)
                    return v
                except TypeError:
                    continue
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            problem.close()
        said.seek(0)
        text = said.read().decode(errors="replace")
    if "not a valid option" in text:
        raise InputError(f"--ipopt-option {name}: not an Ipopt option")
    kind = re.search(r"### \S+ \(([^)]*)\)", text)
    rule = re.search(r"^(.*<=.*|.*<.*\+inf.*)$", text, re.M)
    expects = ", ".join(x for x in ((kind.group(1) if kind else ""), (rule.group(1).strip() if rule else "")) if x)
    raise InputError(f"--ipopt-option {name}={value}: not a value Ipopt takes for {name}"
                     f"{f' ({expects})' if expects else ''}")


def _finite(**values: float | None) -> None:
    """Every numeric option a finite number (Typer reads 'inf' and 'nan' as floats)."""
    for name, v in values.items():
        if v is not None and not math.isfinite(v):
            raise InputError(f"--{name.replace('_', '-')} must be a finite number, got {v}")


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise InputError(f"--seed must be 0 or a positive whole number, got {seed}")


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")


def _check_crs(crs: str | None) -> None:
    """--crs must be a coordinate reference system pyproj knows, checked before any computing."""
    if crs is None:
        return
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(crs)
    except CRSError:
        raise InputError(f"--crs: '{crs}' is not a coordinate reference system (e.g. EPSG:31370)") from None


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
    _finite(power_factor=power_factor, vmin=vmin, vmax=vmax)
    _check_seed(seed)
    if step < 1:
        raise InputError(f"--step must be at least 1, got {step}")
    from nfca.io import plots
    from nfca.engine import read_feeder
    from nfca.io.outputs import run_folder, write_csv
    from nfca.studies.envelopes import sweep_participation as sweep

    with run_folder(out) as tmp:
        f = read_feeder(feeder)
        n = len(f.end_users)
        counts = sorted({n, *range(step, n + 1, step)})
        with err.status("sweeping") as status:
            df = sweep(f, counts, [m.value for m in method], [d.value for d in direction],
                       _options(vmin, vmax, power_factor, None, True), seed, progress=lambda s: status.update(s))
        write_csv(tmp / "participation.csv", df)
        plots.participation_sweep(df, tmp / "participation.png")
    err.print(df.to_string(index=False))


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

    _finite(power_factor=power_factor, vmin=vmin, vmax=vmax)
    _check_crs(crs)
    _check_workers(workers)
    jobs = discover(feeders)
    opts = _options(vmin, vmax, power_factor, None, True)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("feeders", total=len(jobs))
        report = run_batch(jobs, out, opts, workers, dask, crs, progress=lambda name, status: bar.advance(task))
    types = classify_results(out)
    write_csv(out / "feeder_types.csv", types)
    _classification_figures(out, types)
    err.print(f"{len(report.done)} computed, {len(report.skipped)} already done, {len(report.failed)} failed; "
              f"results in {out}")
    for name, msg in report.failed.items():
        _say(f"failed {name}: {msg}")
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
