"""The `nfca` command. It only parses arguments and calls the library.

Conventions: results on stdout (a table, or summary.json with `--json`), progress and notes on
stderr (a progress bar in a terminal, one line per step in a log; nothing with `--quiet`),
errors as one line with a documented exit code. The study commands (envelopes, batch,
sweep-participation, activations) share one option set, `StudyArgs`: to add an option, add a
field there and use it in `StudyArgs.envelope_options()` or `StudyArgs.read()`.
"""

from __future__ import annotations

import sys

if sys.argv[1:2] in (["envelopes"], ["activations"]):
    # OpenDSS starts loading in its own process now, beside the imports below; the feeder is
    # sent to it once the arguments are parsed (`StudyArgs.prestart`)
    from nfca import engine as _engine

    _engine.prestart()

import dataclasses
import errno
import functools
import inspect
import math
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from feeders.cli import app as feeders_app
from market_bridge.cli import app as market_app
from nfca.errors import InfeasibleError, InputError, Interrupted, NfcaError
from nfca.model.box import Guarantee
from nfca.model.envelope import Direction, EnvelopeOptions, Method
from nfca.model.network import DEFAULT_CAPACITY_KVA

_LIB = EnvelopeOptions()  # the library's defaults are the command line's

app = typer.Typer(
    help="Guaranteed-capacity operating envelopes for non-firm connection agreements on LV feeders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Text from feeder files and paths is never interpreted: no emoji codes, no highlighting; markup only
# in nfca's own words (anything else goes through `escape`, errors through `one_line`).
err = Console(
    stderr=True,
    width=None if sys.stderr.isatty() else 120,  # logs: no 80-column cut
    emoji=False,
    highlight=False,
)
DEBUG = {"on": False}
POLICY_FAILED = 8  # `nfca activations`: the activation policy is not met (README, Exit codes)


class Format(str, Enum):
    """Output formats of the study commands (html: report.html; gpkg: `nfca envelopes` and `batch` only)."""

    csv = "csv"
    json = "json"
    gpkg = "gpkg"
    png = "png"
    html = "html"


DEFAULT_FORMATS = [Format.csv, Format.json, Format.gpkg, Format.html]  # nfca.io.outputs.DEFAULT_FORMATS
Formats = Annotated[
    list[Format],
    typer.Option(
        "--format", help="Output format(s); html is report.html (with its charts), png the figures as PNG files."
    ),
]


MESSAGE_CHARS = 500  # an error line is cut to about this, keeping where (file, line) and the end
WORD_CHARS = 120  # a single word (a value, a path) longer than this is cut in its middle
_WRITE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM}


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` safe for one terminal line: control characters shown as escapes, every word longer
    than WORD_CHARS cut in its middle, and the whole cut in the middle to about `limit`
    characters, keeping its start (file and line) and its end."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", " ".join(text.split()))
    text = re.sub(rf"\S{{{WORD_CHARS + 1},}}", lambda m: m.group()[:80] + "…" + m.group()[-30:], text)
    if len(text) <= limit:
        return text
    where = re.match(r"^.*? line \d+(?: \(redirected from .*? line \d+\))?:", text[: 2 * limit])
    head = len(where.group()) + 40 if where and len(where.group()) < limit - 60 else limit * 2 // 3
    return text[:head] + " … " + text[-(limit - head - 3) :]


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


def handled(fn, interrupted: Callable[[], str] | None = None):
    """Turn library errors into a one-line message and the documented exit code; Ctrl-C, SIGTERM
    and SIGHUP into "interrupted" (130, 143, 129) after everything half-written is removed, with
    `interrupted()` (default: what the run folders say) as the message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted) as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            _say(exc.message if isinstance(exc, Interrupted) and exc.message else (interrupted or _interrupted)())
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
                where = f"{os_error.filename}" if os_error.filename else "a temporary file (e.g. the solver's model)"
                _say(f"error: {where} cannot be written ({os_error.strerror or os_error}); nothing was written")
                raise typer.Exit(6) from None
            _say(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")  # a bug
            raise typer.Exit(1) from None
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    return wrapper


def _interrupted() -> str:
    from nfca.io.outputs import finished_runs

    return (
        f"interrupted; the run in {finished_runs[-1]} is complete"
        if finished_runs
        else "interrupted; nothing was written"
    )


def _version(show: bool) -> None:
    if show:
        from nfca import __version__

        typer.echo(f"nfca {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Options of every command: --debug, --version."""
    DEBUG["on"] = debug
    from nfca.solver import few_collections

    few_collections()


FeederArg = Annotated[Path, typer.Argument(help="OpenDSS feeder file (Master.dss).", show_default=False)]


# ----------------------------------------------------------------------------- shared option sets


@dataclass
class StudyArgs:
    """The options of every study command (envelopes, batch, sweep-participation, activations).

    Each field is one command-line option (its help in the annotation). To add an option, add a
    field and use it in `envelope_options()` (physics, limits, methods) or `read()` (the feeder
    and its end-users); every study command gets it."""

    method: Annotated[list[Method], typer.Option(help="Allocation method(s); repeat for several.")] = field(
        default_factory=lambda: [Method.optimal, Method.fair]
    )
    direction: Annotated[list[Direction], typer.Option(help="Direction(s); repeat for several.")] = field(
        default_factory=lambda: [Direction.import_, Direction.export]
    )
    participants: Annotated[
        str,
        typer.Option(
            help="End-users with an NFCA: 'all', a fraction (a seeded random subset) or a CSV of end_user names."
        ),
    ] = "all"
    seed: Annotated[int, typer.Option(help="Seed of the random subset of participants (and of the sweep's order).")] = 0
    capacities: Annotated[
        Path | None,
        typer.Option(
            help="CSV end_user[,capacity_kva][,firm_kw]: per end-user connection capacity and firm value (a feeder column selects rows in a batch)."
        ),
    ] = None
    default_capacity: Annotated[
        float, typer.Option(help="Capacity (kVA) of loads whose XfkVA is not set; 0 makes XfkVA compulsory.")
    ] = DEFAULT_CAPACITY_KVA
    firm_kw: Annotated[
        float | None,
        typer.Option(
            help="Firm value of every non-participant (kW, at most its capacity); default: its full capacity."
        ),
    ] = None
    firm_diversity: Annotated[
        float,
        typer.Option(
            help="Firm value of non-participants as this factor x capacity x power factor (after-diversity demand), e.g. 0.3."
        ),
    ] = _LIB.firm_diversity
    power_factor: Annotated[
        float, typer.Option(help="Power factor of every participant (vars consumed on import, absorbed on export).")
    ] = _LIB.power_factor
    vmin: Annotated[
        float,
        typer.Option(
            help="Lower voltage limit in pu of each end-user's nominal voltage from the feeder's voltage bases (EN 50160's 0.90 only on a 230 V base; see --vmin-v)."
        ),
    ] = _LIB.limits.vmin_pu
    vmax: Annotated[float, typer.Option(help="Upper voltage limit in pu of the voltage bases (see --vmax-v).")] = (
        _LIB.limits.vmax_pu
    )
    vmin_v: Annotated[
        float | None,
        typer.Option(
            help="Lower voltage limit in volts of what each end-user sees (phase-to-neutral; phase-to-phase for phase-to-phase and delta users), e.g. 207 (EN 50160 on 230 V); overrides --vmin."
        ),
    ] = None
    vmax_v: Annotated[float | None, typer.Option(help="Upper voltage limit in volts, e.g. 253; overrides --vmax.")] = (
        None
    )
    ampacity: Annotated[
        Path | None,
        typer.Option(
            help="CSV linecode,amps (or line,amps): ampacities of lines, over the file's normamps; line codes the feeder does not use are ignored."
        ),
    ] = None
    default_ampacity: Annotated[
        float | None,
        typer.Option(
            help="Ampacity (A) of every line the file and --ampacity leave without one (an explicit opt-in; without it such lines are an error)."
        ),
    ] = None
    v_neutral_max: Annotated[
        float | None,
        typer.Option(help="Limit (V) on the neutral-to-earth voltage at end-users' neutral conductors; default: none."),
    ] = None
    source_pu: Annotated[float | None, typer.Option(help="Source voltage (pu); default: the feeder file's.")] = None
    reduce: Annotated[bool, typer.Option(help="Exact network reduction before optimising.")] = _LIB.reduce
    kron: Annotated[
        bool,
        typer.Option(
            "--kron",
            help="Optimise on the Kron-reduced model (neutrals taken as perfectly earthed); verification still runs on the four-wire file.",
        ),
    ] = False
    ipopt_option: Annotated[
        list[str],
        typer.Option(
            "--ipopt-option",
            help="Ipopt option NAME=VALUE for every solve attempt (repeat for several), e.g. max_iter=50.",
        ),
    ] = field(default_factory=list)
    guarantee: Annotated[
        Guarantee,
        typer.Option(
            help="What a published set is promised for: 'box' (each participant anywhere between its export and its import envelope, independently of the others), 'direction' (the import box and the export box apart) or 'corner' (everyone at the envelope: ALEXANDER D3.3's definition, for comparison)."
        ),
    ] = _LIB.guarantee
    audit_points: Annotated[
        int, typer.Option(help="Seeded random points of each set's box also checked by OpenDSS.")
    ] = _LIB.audit_points
    export_weight: Annotated[
        float,
        typer.Option(
            help="Box guarantee: weight w of export against import; the methods maximise (1-w) log(import) + w log(export) of their measure."
        ),
    ] = _LIB.export_weight

    def envelope_options(self):
        """The library's EnvelopeOptions (limits included) from these options, every one checked
        (finite numbers, seed, Ipopt options by Ipopt) before any computing."""
        from nfca.model.envelope import EnvelopeOptions
        from nfca.model.limits import Limits

        _finite(
            default_capacity=self.default_capacity,
            firm_kw=self.firm_kw,
            firm_diversity=self.firm_diversity,
            power_factor=self.power_factor,
            vmin=self.vmin,
            vmax=self.vmax,
            v_neutral_max=self.v_neutral_max,
            source_pu=self.source_pu,
            vmin_v=self.vmin_v,
            vmax_v=self.vmax_v,
            default_ampacity=self.default_ampacity,
            export_weight=self.export_weight,
        )
        if self.seed < 0:
            raise InputError(f"--seed must be 0 or a positive whole number, got {self.seed}")

        limits = Limits(
            vmin_pu=self.vmin,
            vmax_pu=self.vmax,
            vmin_v=self.vmin_v,
            vmax_v=self.vmax_v,
            v_neutral_max_v=self.v_neutral_max,
        )
        return EnvelopeOptions(
            limits=limits,
            power_factor=self.power_factor,
            source_pu=self.source_pu,
            reduce=self.reduce,
            kron=self.kron,
            firm_kw=self.firm_kw,
            firm_diversity=self.firm_diversity,
            ipopt_options=_ipopt_options(self.ipopt_option),
            guarantee=Guarantee(self.guarantee).value,
            audit_points=self.audit_points,
            export_weight=self.export_weight,
            audit_seed=self.seed,
        )

    def read(self, path: Path, feeder_name: str | None = None):
        """The feeder with --capacities applied, and the participants chosen: (Feeder, frozenset)."""
        from nfca.studies.envelopes import prepare_feeder

        return prepare_feeder(
            path,
            self.participants,
            self.seed,
            self.capacities,
            self.default_capacity,
            feeder_name,
            self.ampacity_rules(),
        )

    def prestart(self, path: Path) -> None:
        """Start reading the feeder in an OpenDSS engine now: it compiles while the rest is imported."""
        from nfca import engine

        engine.prestart(path, self.default_capacity, self.ampacity_rules())

    def ampacity_rules(self):
        """--ampacity and --default-ampacity as the reader's ampacity rules."""
        from nfca.model.ratings import AmpacityRules, read_ampacity_table

        if self.ampacity is not None:
            return read_ampacity_table(self.ampacity, self.default_ampacity)
        return AmpacityRules(default_a=self.default_ampacity)

    def batch_spec(self, inputs: list[Path]):
        """The library's BatchSpec: what to compute for every feeder of a batch."""
        from nfca.studies.batch import BatchSpec

        return BatchSpec(
            self.envelope_options(),
            tuple(self.methods),
            tuple(self.directions),
            self.participants,
            self.seed,
            self.capacities,
            self.default_capacity,
            self.provenance(inputs),
            self.ampacity_rules(),
        )

    @property
    def methods(self) -> list[str]:
        """The methods as the library's names."""
        return [Method(m).value for m in self.method]

    @property
    def directions(self) -> list[str]:
        """The directions as the library's names."""
        return [Direction(d).value for d in self.direction]

    def provenance(self, inputs: list[Path | None]) -> dict:
        """What produced the results, for summary.json: version, command line, the options,
        SHA-256 of every input file, the participant rule and seed."""
        from nfca.io.provenance import provenance

        return provenance(
            inputs, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, self.participants, self.seed
        )


@dataclass
class OutputArgs:
    """How a command talks: results on stdout, progress on stderr."""

    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and --json).")] = False
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print each step with its time, and every notice.")
    ] = False
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results (summary.json) on stdout instead of a table.")
    ] = False

    def progress(self, total: int | None = None) -> Progress:
        """A progress reporter for `total` steps, quiet or verbose as asked."""
        return Progress(total, self.quiet, self.verbose)

    def note(self, text: str) -> None:
        """One line on stderr, unless --quiet."""
        if not self.quiet:
            err.print(text, highlight=False, soft_wrap=True)

    def notices(self, feeder, options=None) -> None:
        """What the reader assumed where the feeder file was silent, and (with the study's options)
        what the voltage limits mean for its loads: one line each on stderr."""
        from nfca.studies.envelopes import study_notices

        for n in feeder.notices if options is None else study_notices(feeder, options):
            self.note(str(n))

    def results(self, summary: dict, table: Callable[[dict], object]) -> None:
        """summary.json on stdout with --json, else the results table (nothing with --quiet)."""
        from nfca.io.outputs import to_json

        if self.as_json:
            sys.stdout.write(to_json(summary) + "\n")
        elif not self.quiet:
            Console(width=None if sys.stdout.isatty() else 120, emoji=False, highlight=False).print(table(summary))


def shared(*groups: type):
    """Give a command the options of `groups` (dataclasses of typer options): each group is passed
    to the command as one argument named after the group's annotation in its signature."""

    def decorate(fn):
        sig = inspect.signature(fn, eval_str=True)
        targets = {name: p.annotation for name, p in sig.parameters.items() if p.annotation in groups}
        own = [p for name, p in sig.parameters.items() if name not in targets]
        extra = []
        for group in targets.values():
            types = _type_hints(group)
            for f in dataclasses.fields(group):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                extra.append(
                    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=types[f.name])
                )

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for name, group in targets.items():
                kwargs[name] = group(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(group)})
            return fn(*args, **kwargs)

        params = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD
            else p
            for p in own
        ]
        positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params if p not in positional]
        wrapper.__signature__ = sig.replace(parameters=positional + keyword + extra)
        del wrapper.__wrapped__  # typer must read the new signature, not the command's own
        return wrapper

    return decorate


@functools.cache
def _type_hints(group: type) -> dict:
    import typing

    return typing.get_type_hints(group, include_extras=True)


class Progress:
    """One step at a time on stderr: a progress bar in a terminal, one line per step in a log
    (with the step's time under --verbose), nothing under --quiet."""

    def __init__(self, total: int | None, quiet: bool, verbose: bool):
        self.quiet, self.verbose, self.t0 = quiet, verbose, time.perf_counter()
        self.last = self.t0
        self.bar = None
        if not quiet and err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self.task = self.bar.add_task("starting", total=total)
            self.bar.start()

    def __call__(self, step: str, advance: float = 1) -> None:
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.task, description=step, advance=advance)
        elif not self.quiet:
            took = f" (previous step {now - self.last:.1f} s)" if self.verbose else ""
            err.print(f"nfca: {now - self.t0:6.1f} s  {step}{took}", highlight=False, soft_wrap=True)
        self.last = now

    def stop(self) -> None:
        """Remove the progress bar (before printing results)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ----------------------------------------------------------------------------- commands


@app.command()
@handled
@shared(StudyArgs, OutputArgs)
def envelopes(
    feeder: FeederArg,
    study: StudyArgs,
    output: OutputArgs,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("nfca-results"),
    fmt: Formats = DEFAULT_FORMATS,  # noqa: B006 (Typer shows it; never mutated)
    crs: Annotated[
        str | None,
        typer.Option(
            help="CRS of the bus coordinates (e.g. EPSG:31370, or 'local' for metres on a local grid); default: the feeder folder's crs.txt."
        ),
    ] = None,
    profiles: Annotated[
        str | None,
        typer.Option(
            help="End-user profiles (CSV: end_user,timestamp,p_kw or timestamp + one column per end-user; kW, consumption +) or 'loadshapes' (the feeder's OpenDSS load shapes): dynamic envelopes per interval, and static ones for the horizon."
        ),
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="With --profiles: interval length, e.g. 15min or 1h (mean power per interval); default: the profiles'."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="With --profiles: processes (default: one per core, at most one per method x direction)."),
    ] = None,
) -> None:
    """Guaranteed import/export per end-user, each envelope set verified by OpenDSS.

    Writes envelopes.csv, summary.json, envelopes.gpkg (with bus coordinates) and report.html
    to OUT (the PNG figures too with --format png); prints the results table (or --json) on stdout. Exit code 3 when some
    method or direction has no envelope (the others are written)."""
    study.prestart(feeder)  # OpenDSS reads it in its own process while the rest is imported
    _check_workers(workers)
    if crs is not None:
        from nfca.io.geo import parse_crs

        parse_crs(crs)
    if resolution is not None:
        from nfca.studies.profiles import parse_resolution

        parse_resolution(resolution)
    from nfca.io.outputs import load_writers, run_folder, write_study
    from nfca.studies.envelopes import run_envelopes

    opts = study.envelope_options()
    formats = tuple(x.value for x in fmt)
    n_sets = len(study.method) * len(study.direction)
    with run_folder(out) as folder, output.progress(n_sets + 3) as progress:
        progress("reading feeder")
        f, chosen = study.read(feeder)
        output.notices(f, opts)
        inputs = [feeder, study.capacities, _file(study.participants), _file(profiles), study.ampacity]
        if profiles is not None:  # dynamic envelopes over the profiles' horizon
            return _dynamic(
                f, profiles, resolution, study, output, opts, chosen, workers, folder, out, formats, inputs, progress
            )
        result = run_envelopes(
            f,
            study.methods,
            study.directions,
            opts,
            chosen,
            progress=lambda s: progress(s if s.startswith("verifying") else f"solving {s}"),
            while_verifying=lambda: load_writers(formats, f),
        )
        if not result.envelopes:  # no set has an envelope: say why, write nothing
            raise InfeasibleError(next(iter(result.infeasible.values())))
        result = dataclasses.replace(result, provenance=study.provenance(inputs))
        progress("writing outputs")
        files = write_study(result, folder, formats, crs)
    summary = result.summary
    output.results(summary, _summary_table)
    output.note(
        f"wrote {len(files)} file(s) to {out}" + ("" if not output.verbose else f": {', '.join(p.name for p in files)}")
    )
    _exit_if_partial(summary["methods"], output)


def _file(spec: str | None) -> Path | None:
    return Path(spec) if spec is not None and Path(spec).is_file() else None


def _exit_if_partial(per_method: dict, output: OutputArgs) -> None:
    """Exit code 3 (after writing the rest) when some method/direction has no envelope."""
    missing = [
        (m, d, s["reason"]) for m, per in per_method.items() for d, s in per.items() if s.get("status") == "infeasible"
    ]
    for m, d, reason in missing:
        _say(f"infeasible: {m} {d}: {reason}")
    if missing:
        raise typer.Exit(3)


def _dynamic(
    f,
    profiles,
    resolution,
    study: StudyArgs,
    output: OutputArgs,
    opts,
    chosen,
    workers,
    folder,
    out,
    formats,
    inputs,
    progress,
) -> None:
    from nfca.studies.dynamic import run_dynamic, write_dynamic
    from nfca.studies.profiles import load_profiles

    progress("reading profiles")
    prof = load_profiles(profiles, f, resolution)
    result = run_dynamic(
        f, prof, study.methods, study.directions, opts, chosen, workers, progress=lambda s: progress(f"solving {s}", 0)
    )
    result = dataclasses.replace(result, provenance=study.provenance(inputs))
    progress("writing outputs")
    files = write_dynamic(result, folder, formats)
    progress.stop()
    output.results(result.summary, _dynamic_table)
    output.note(f"{result.seconds:.1f} s in {result.workers} process(es); wrote {len(files)} file(s) to {out}")


def _summary_table(summary: dict):
    from rich.table import Table

    from nfca.model.voltages import describe_voltage_limits

    o = summary["options"]
    t = Table(
        title=f"{summary['feeder']}: {summary['participants']} of {summary['end_users']} end-users with an NFCA; "
        f"{describe_voltage_limits(summary['voltage_limits'], o)}, source {o['source_pu']:.3g} pu",
        caption=f"kW guaranteed; V: customer voltages (pu of nominal) and loading (%) in the OpenDSS "
        f"verification; non-participants: {o.get('firm', '')}",
    )
    for c in (
        "method",
        "dir",
        "total",
        "min",
        "max",
        "Jain",
        "V min",
        "V max",
        "load %",
        "verified",
        "limited by",
        "s",
    ):
        t.add_column(c, no_wrap=c != "limited by")
    for m, per in summary["methods"].items():
        for d, s in per.items():
            if s["status"] != "ok":
                t.add_row(m, d, "[red]infeasible[/]", *[""] * 6, "NO", escape(s["reason"][:60]), "")
                continue
            top = s["limiting"][0] if s["limiting"] else None
            t.add_row(
                m,
                d,
                f"{s['total_kw']:.1f}",
                f"{s['min_kw']:.2f}",
                f"{s['max_kw']:.2f}",
                f"{s['jain_index']:.3f}",
                f"{s['v_min_pu']:.3f}",
                f"{s['v_max_pu']:.3f}",
                f"{s['max_loading_pct']:.1f}",
                "yes" if s["verified"] else "NO",
                f"{top['type']} {escape(top['element'])} ({top['end_users']})" if top else "capacity",
                f"{s['seconds']:.2f}",
            )
    return t


def _dynamic_table(summary: dict):
    from rich.table import Table

    t = Table(
        title=f"{summary['feeder']}: {summary['participants']} of {summary['end_users']} end-users with an NFCA, "
        f"{summary['intervals']} x {summary['resolution_min']:g} min"
    )
    for c in ("method", "direction", "static kW", "dynamic kW min/mean/max", "Ipopt solves", "verified", "s"):
        t.add_column(c)
    for m, per in summary["dynamic"].items():
        for d, s in per.items():
            st, tot = summary["static"][m][d], s["total_kw"]
            t.add_row(
                m,
                d,
                f"{st['total_kw']:.1f}",
                f"{min(tot):.1f} / {sum(tot) / len(tot):.1f} / {max(tot):.1f}",
                str(s["solves"]),
                "yes" if s["verified"] and st["verified"] else "NO",
                f"{s['seconds']:.1f}",
            )
    return t


@app.command()
@handled
@shared(StudyArgs, OutputArgs)
def activations(
    feeder: FeederArg,
    study: StudyArgs,
    output: OutputArgs,
    profiles: Annotated[
        str,
        typer.Option(
            help="End-user profiles: a CSV (kW, consumption +) or 'loadshapes' (the feeder's).", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("nfca-activations"),
    fmt: Formats = DEFAULT_FORMATS,  # noqa: B006 (Typer shows it; never mutated)
    envelopes_dir: Annotated[
        Path | None,
        typer.Option(
            "--envelopes",
            help="Reuse the dynamic envelopes of an earlier `nfca envelopes --profiles` run (its output folder) instead of computing them.",
        ),
    ] = None,
    resolution: Annotated[
        str | None, typer.Option(help="Interval length, e.g. 15min (mean power per interval); default: the profiles'.")
    ] = None,
    max_activations: Annotated[
        int | None,
        typer.Option(help="Policy: activations allowed over the horizon (seed: ten a year); negative: no cap."),
    ] = 10,
    max_duration: Annotated[
        str | None, typer.Option(help="Policy: longest activation, e.g. 1h (seed: one hour); 'none': no cap.")
    ] = "1h",
    workers: Annotated[int | None, typer.Option(help="Processes for the envelopes (default: one per core).")] = None,
) -> None:
    """When NFCAs must be activated over the profiles, how often and how long, and the energy curtailed
    under static and dynamic limits; checks a temporary-activation policy (count and duration caps).
    Writes activations.csv, curtailment.csv, intervals.csv, activations.json and report.html to OUT
    (activations.png too with --format png). Exit code 8 when the policy is not met or an
    activation leaves a limit violated."""
    study.prestart(feeder)
    from nfca.io.outputs import run_folder
    from nfca.studies.activations import ActivationPolicy, analyse, read_dynamic, write_activations
    from nfca.studies.dynamic import run_dynamic
    from nfca.studies.profiles import load_profiles, parse_resolution

    cap_duration = (
        None
        if max_duration is None or max_duration.strip().lower() == "none"
        else parse_resolution(max_duration, "--max-duration")
    )
    policy = ActivationPolicy(None if max_activations is None or max_activations < 0 else max_activations, cap_duration)
    opts = study.envelope_options()
    _check_workers(workers)
    if resolution is not None:
        parse_resolution(resolution)
    with run_folder(out) as folder, output.progress(5) as progress:
        progress("reading feeder")
        f, chosen = study.read(feeder)
        output.notices(f, opts)
        progress("reading profiles")
        prof = load_profiles(profiles, f, resolution)
        if envelopes_dir is not None:
            progress(f"reading the envelopes of {envelopes_dir}")
            dyn = read_dynamic(envelopes_dir, f, prof, opts, study.methods)
        else:
            dyn = run_dynamic(
                f,
                prof,
                study.methods,
                study.directions,
                opts,
                chosen,
                workers,
                progress=lambda s: progress(f"envelopes: {s}", 0),
            )
        progress("power flows of the firm and the activated operation")
        result = dataclasses.replace(
            analyse(dyn, policy),
            provenance=study.provenance([feeder, study.capacities, _file(study.participants), _file(profiles)]),
        )
        progress("writing outputs")
        files = write_activations(result, folder, tuple(x.value for x in fmt))
    s = result.summary
    pol = s["policy"]
    unresolved = {
        f"{m} {lim}": r["unresolved_intervals"]
        for m, per in s["resolved"].items()
        for lim, r in per.items()
        if r["unresolved_intervals"]
    }

    def table(s: dict):
        from rich.table import Table

        t = Table(
            title=f"{s['feeder']}: {s['intervals_needing_activation']} of {s['intervals']} intervals need an "
            f"activation: {pol['activations']} activation(s), longest {pol['longest_min']:g} min; policy "
            f"{'satisfied' if pol['satisfied'] else 'NOT satisfied'}"
        )
        for c in (
            "method",
            "curtailed kWh: dynamic",
            "static",
            "permanent static",
            "unresolved intervals (dyn/static)",
        ):
            t.add_column(c)
        for m, per in s["curtailed_kwh"].items():
            r = s["resolved"][m]
            t.add_row(
                m,
                f"{per['dynamic']:.1f}",
                f"{per['static']:.1f}",
                f"{per['permanent_static']:.1f}",
                f"{r['dynamic']['unresolved_intervals']} / {r['static']['unresolved_intervals']}",
            )
        return t

    output.results(s, table)
    output.note(f"wrote {len(files)} file(s) to {out}")
    if not pol["satisfied"] or unresolved:
        why = (
            []
            if pol["satisfied"]
            else [
                f"{pol['activations']} activation(s), longest {pol['longest_min']:g} min "
                f"(cap {pol['max_count']} x {pol['max_duration_min']} min)"
            ]
        )
        why += [f"{k} limits leave {n} activated interval(s) violating a limit" for k, n in unresolved.items()]
        _say(f"policy not met: {'; '.join(why)}")
        raise typer.Exit(POLICY_FAILED)


def _ipopt_options(pairs: list[str]) -> dict:
    """NAME=VALUE pairs to Ipopt options, each typed and checked by Ipopt (see `_ipopt_value`)."""
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
    raise InputError(
        f"--ipopt-option {name}={value}: not a value Ipopt takes for {name}{f' ({expects})' if expects else ''}"
    )


def _finite(**values: float | None) -> None:
    """Every numeric option a finite number (Typer reads 'inf' and 'nan' as floats)."""
    for name, v in values.items():
        if v is not None and not math.isfinite(v):
            raise InputError(f"--{name.replace('_', '-')} must be a finite number, got {v}")


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")


@app.command()
@handled
@shared(OutputArgs)
def powerflow(
    feeder: FeederArg,
    output: OutputArgs,
    load_kw: Annotated[
        float | None, typer.Option(help="Put every end-user at this power (kW, pf 1) instead of the file's.")
    ] = None,
) -> None:
    """Three-phase power flow with the UTOPF model, compared with OpenDSS."""
    from nfca import engine

    _finite(load_kw=load_kw)
    engine.prestart()
    from nfca.studies.validation import compare_powerflow

    report = compare_powerflow(feeder, load_kw)
    for n in report["notices"]:
        output.note(f"{n['level']}: {n['message']}")

    def table(r: dict):
        from rich.table import Table

        t = Table(title=f"UTOPF power flow against OpenDSS: {feeder}", show_header=False)
        for k, v in r.items():
            if k != "notices":
                t.add_row(k, str(v))
        return t

    output.results(report, table)


@app.command("sweep-participation")
@handled
@shared(StudyArgs, OutputArgs)
def sweep_participation(
    feeder: FeederArg,
    study: StudyArgs,
    output: OutputArgs,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("nfca-sweep"),
    step: Annotated[int, typer.Option(help="Step in the number of participants.")] = 5,
    fmt: Formats = DEFAULT_FORMATS,  # noqa: B006 (Typer shows it; never mutated)
) -> None:
    """Guaranteed power against the number of NFCA end-users (seed Fig 5-4). End-users join in one
    seeded random order (--seed), so --participants is refused. Points where no envelope exists
    are marked infeasible (gaps in the charts). Writes participation.csv, participation.json and
    report.html to OUT (participation.png too with --format png)."""
    study.prestart(feeder)
    from nfca.io.outputs import run_folder, write_participation
    from nfca.studies.envelopes import ParticipationSweep
    from nfca.studies.envelopes import sweep_participation as sweep

    if step < 1:
        raise InputError(f"--step must be at least 1, got {step}")
    if study.participants != "all":
        raise InputError(
            "sweep-participation chooses the participants itself (end-users join in the --seed order): "
            "leave out --participants"
        )
    opts = study.envelope_options()
    with run_folder(out) as folder:
        f, _ = study.read(feeder)
        output.notices(f, opts)
        n = len(f.end_users)
        counts = sorted({n, *range(step, n + 1, step)})
        with output.progress(len(counts) * len(study.method) * len(study.direction)) as progress:
            df = sweep(f, counts, study.methods, study.directions, opts, study.seed, progress=progress)
        result = ParticipationSweep(f, opts, study.seed, df, str(feeder), study.provenance([feeder, study.capacities]))
        write_participation(result, folder, tuple(x.value for x in fmt))

    def table(s: dict):
        from rich.table import Table

        t = Table(title=f"{f.name}: guaranteed power against the number of participants")
        for c in df.columns:
            t.add_column(c)
        for r in df.itertuples(index=False):
            t.add_row(*[f"{x:.2f}" if isinstance(x, float) else str(x) for x in r])
        return t

    output.results(result.summary, table)


@app.command()
@handled
@shared(StudyArgs, OutputArgs)
def batch(
    feeders: Annotated[list[Path], typer.Argument(help="Feeder files, folders or manifest CSVs.", show_default=False)],
    study: StudyArgs,
    output: OutputArgs,
    out: Annotated[Path, typer.Option(help="Results folder (resumable).")] = Path("nfca-batch"),
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: one per core).")] = None,
    dask: Annotated[str | None, typer.Option(help="Address of a Dask scheduler to run on instead.")] = None,
    crs: Annotated[
        str | None,
        typer.Option(help="CRS of the bus coordinates, e.g. EPSG:31370; default: each feeder folder's crs.txt."),
    ] = None,
    fmt: Formats = DEFAULT_FORMATS,  # noqa: B006 (Typer shows it; never mutated)
) -> None:
    """Envelopes for many feeders (each written to OUT/feeders/NAME, with its report.html), then
    the feeder types and OUT/report.html linking the feeders (envelopes.csv and summary.json are
    always written: the types are read from them). Exit code 7 if some feeders failed."""
    from nfca.io.outputs import write_csv
    from nfca.studies.batch import discover, run_batch
    from nfca.studies.classify import classify as classify_results

    _check_workers(workers)
    if crs is not None:
        from nfca.io.geo import parse_crs

        parse_crs(crs)
    jobs = discover(feeders)
    with output.progress(len(jobs)) as progress:
        formats = tuple(dict.fromkeys(["csv", "json", *(x.value for x in fmt)]))
        spec = dataclasses.replace(
            study.batch_spec([*feeders, study.capacities, _file(study.participants), study.ampacity]), formats=formats
        )
        report = run_batch(
            jobs, out, spec, workers, dask, crs, progress=lambda name, status: progress(f"{name} {status}")
        )
        progress("classifying feeders")
        types = classify_results(out)
        write_csv(out / "feeder_types.csv", types)
        _classification_figures(out, types, "png" in formats)
    output.results(_batch_summary(out, report, types), _batch_table)
    output.note(
        f"{len(report.done)} computed, {len(report.skipped)} already done, {len(report.failed)} failed; results in {out}"
    )
    for name, msg in report.failed.items():
        _say(f"failed {name}: {msg}")
    if report.failed:
        raise typer.Exit(7)


def _batch_summary(out: Path, report, types) -> dict:
    return {
        "results": str(out),
        "computed": report.done,
        "skipped": report.skipped,
        "failed": report.failed,
        "feeders": types.to_dict(orient="records") if len(types) else [],
    }


def _batch_table(s: dict):
    from rich.table import Table

    t = Table(title=f"{len(s['feeders'])} feeders in {s['results']}")
    for c in (
        "feeder",
        "end-users",
        "type",
        "optimal import kW",
        "fair import kW",
        "optimal export kW",
        "fair export kW",
    ):
        t.add_column(c)
    for r in s["feeders"]:
        t.add_row(
            r["feeder"],
            str(r["end_users"]),
            str(r["type"]),
            f"{r['optimal_import_kw']:.1f}",
            f"{r['fair_import_kw']:.1f}",
            f"{r['optimal_export_kw']:.1f}",
            f"{r['fair_export_kw']:.1f}",
        )
    return t


@app.command()
@handled
@shared(OutputArgs)
def classify(
    results: Annotated[Path, typer.Argument(help="Results folder of `nfca batch`.", show_default=False)],
    output: OutputArgs,
    capacity_tol: Annotated[
        float, typer.Option(help="Type 1 when optimal and fair are within this fraction of capacity.")
    ] = 0.01,
    fair_tol: Annotated[float, typer.Option(help="Type 2 when fair is within this fraction of optimal.")] = 0.05,
    png: Annotated[bool, typer.Option("--png", help="Also write the figures as PNG files.")] = False,
) -> None:
    """Recompute RESULTS/feeder_types.csv and RESULTS/report.html (with its charts)."""
    from nfca.errors import InputError
    from nfca.io.outputs import write_csv
    from nfca.studies.classify import classify as classify_results

    types = classify_results(results, capacity_tol, fair_tol)
    if types.empty:
        raise InputError(f"{results}: no feeder results (feeders/*/summary.json) found")
    write_csv(results / "feeder_types.csv", types)
    _classification_figures(results, types, png)
    output.results({"results": str(results), "feeders": types.to_dict(orient="records")}, _batch_table)
    output.note(f"wrote {results / 'feeder_types.csv'} and {results / 'report.html'}")


def _classification_figures(results: Path, types, png: bool = False) -> None:
    """The batch's charts in RESULTS/report.html (drawn by the page: no matplotlib), and with
    `png` the same figures as PNG files (plus the grid map) beside it."""
    from nfca.io import charts
    from nfca.io.report import write_batch_report
    from nfca.studies.classify import incomplete

    specs, figures, typical = [], [], []
    if not types.empty:
        from nfca.io.schema import read_envelopes

        specs = [charts.feeder_bars(types, d) for d in ("import", "export")]
        for t in (2, 3):  # a representative feeder of each type: the one with most end-users
            of_type = types[types["type"] == t].sort_values("end_users", ascending=False)
            if len(of_type):
                name = of_type["feeder"].iloc[0]
                env = read_envelopes(results / "feeders" / name / "envelopes.csv")
                typical.append((t, name, env[env["direction"] == "import"]))
                specs.append(
                    {
                        **charts.envelope_bars(typical[-1][2], "import", caption=f"{name}, a type-{t} feeder"),
                        "id": f"type{t}-import",
                    }
                )
    if png and not types.empty:
        from nfca.io import plots

        figures = [plots.feeder_bars(types, results / f"feeder_types_{d}.png", d) for d in ("import", "export")]
        if any((results / "feeders" / n / "envelopes.gpkg").exists() for n in types["feeder"]):
            figures.append(plots.grid_map(results, types, results / "grid_map.png"))
        figures += [
            plots.envelope_bars(
                env, results / f"type{t}_{name}_import.png", "import", f"{name}, a type-{t} feeder"
            ).path
            for t, name, env in typical
        ]
    write_batch_report(results, types, [Path(p) for p in figures], incomplete(results), specs)


def _interrupted_file_by_file() -> str:
    return "interrupted; --out may hold part of this run's files (each one whole): rerun the command"


for _command in (*feeders_app.registered_commands, *market_app.registered_commands):
    # one error and signal convention for every command; these write file by file, not a run folder
    _command.callback = handled(_command.callback, _interrupted_file_by_file)
app.add_typer(feeders_app, name="feeders", help="Build reference and synthetic feeders.")
app.add_typer(market_app, name="market", help="TSO-DSO flexibility market clearings (seed chapter 4).")

if __name__ == "__main__":
    app()
