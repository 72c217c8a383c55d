"""Dynamic envelopes over a horizon of intervals, and the static envelopes valid for all of them
(seed section 3.5.1, Fig 3-11).

Semantics (profiles in kW, consumption positive, generation negative; `nfca.studies.profiles`):

* dynamic, interval t: every participant's guaranteed import and export, promised over the
  study's box (`nfca.model.box`: each participant anywhere within its envelopes) with every
  non-participant at its forecast net power p_u(t) (vars at the options' power factor,
  q = tan(phi) |p|): a non-participant's PV leaves more room for import, its consumption more
  for export;
* static: one envelope set for the whole horizon, holding in every interval's box. Not simply
  the envelope at each non-participant's worst forecast: the phases are coupled (through the
  neutral, or the mutual impedance of a Kron-reduced cable), so less generation on one phase can
  raise another phase's voltage. Its scenarios are (vertex, interval) pairs found by constraint
  generation (`_HorizonRun`).

What holds: the static set holds in every interval, so the dynamic fair level is at least the
static one and the dynamic optimal total at least the static total; one user's dynamic optimal
envelope can still be below its static one (the optimum moves power between users). With every
end-user a participant nothing varies over time: dynamic = static.

Speed: one persistent model per method (and direction) over the horizon: a new forecast changes
the non-participants' bounds, not the NLP, and the solve is warm-started from the previous
interval. Intervals with the same non-participant powers are solved once; an interval where
every participant at capacity holds in the whole box (the model's power flow at the corners and
worst vertices) gets capacity without optimising. Chains run in parallel processes. Every
interval's envelopes, dynamic and static, are verified by OpenDSS on the full feeder at the
box's corners and worst vertices; the study's audit points are spread over the intervals.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from nfca.errors import InfeasibleError, SolverError, VerificationError
from nfca.model.box import Guarantee, Point
from nfca.model.envelope import Direction, EnvelopeOptions, EnvelopeSet, Method
from nfca.model.network import Feeder
from nfca.model.voltages import check_voltage_limits
from nfca.opf.problem import EXCESS_TOL, PER_ROUND, EnvelopeProblem, _label, _Run
from nfca.opf.worstcase import box_powers, worst_vertices
from nfca.solver import few_collections
from nfca.studies.envelopes import one_direction_box
from nfca.studies.profiles import Profiles
from nfca.verify import Verification, verify_many

METHODS = (Method.optimal, Method.fair)
DIRECTIONS = (Direction.import_, Direction.export)
STATIC = "static"  # the timestamp of static rows in envelopes.csv

# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ChainResult:
    """One method x direction over the horizon."""

    method: Method
    direction: Direction
    static: EnvelopeSet
    static_verifications: tuple[Verification, ...]  # the static set in every interval
    dynamic: tuple[EnvelopeSet, ...]  # per interval
    verifications: tuple[Verification, ...]  # per interval
    unique: int  # distinct non-participant situations (intervals solved or skipped)
    solves: int  # of them, optimised with Ipopt
    skipped: int  # of them, every participant at capacity (power flow), not optimised
    iterations: int
    seconds: float
    timing: dict  # seconds of the dynamic solves, the static solves and the verification; static rounds

    @property
    def verified(self) -> bool:
        return all(v.verified for v in self.verifications) and all(v.verified for v in self.static_verifications)


@dataclass(frozen=True)
class DynamicStudy:
    feeder: Feeder
    options: EnvelopeOptions
    profiles: Profiles
    participants: frozenset[str]
    chains: tuple[ChainResult, ...]
    workers: int
    seconds: float
    provenance: dict = field(default_factory=dict)  # what produced the study, for summary.json

    @property
    def verified(self) -> bool:
        return all(c.verified for c in self.chains)

    def __repr__(self) -> str:
        p = self.profiles
        return (
            f"<DynamicStudy {self.feeder.name}: {len(self.participants)} of {len(self.feeder.end_users)} end-users "
            f"with an NFCA, {len(p)} intervals of {p.interval}, {len(self.chains)} envelope series; "
            f"{'verified' if self.verified else 'NOT verified'}>"
        )

    def static_study(self):
        """The static sets as a Study, each with its extremes over the intervals (for the report)."""
        from nfca.studies.envelopes import Study

        return Study(
            self.feeder,
            self.options,
            tuple(c.static for c in self.chains),
            tuple(_worst(c.static_verifications) for c in self.chains),
            self.seconds,
            self.participants,
            provenance=self.provenance,
        )

    def chain(self, method: Method | str, direction: Direction | str) -> ChainResult:
        method, direction = Method(method), Direction(direction)
        return next(c for c in self.chains if c.method is method and c.direction is direction)

    def worst_case_kw(self, direction: Direction | str) -> dict[str, float]:
        return worst_case(self.profiles, Direction(direction))

    def to_dataframe(self) -> pd.DataFrame:
        """envelopes.csv (`nfca.io.schema.DYNAMIC_ENVELOPES`; a copy of `_table`)."""
        return self._table.copy()

    @cached_property
    def _table(self) -> pd.DataFrame:
        """envelopes.csv (`nfca.io.schema.DYNAMIC_ENVELOPES`): a `timestamp` column (`static` for
        the static rows) before the columns of `nfca envelopes`, and each end-user's `forecast_kw`
        (net, consumption +) in that interval; static rows carry each end-user's extreme forecast
        over the horizon in their direction (`worst_case`) and the lowest / highest voltage
        verified over all intervals."""
        from nfca.io import schema

        dist = self.feeder.distance_m()
        users = self.feeder.end_users
        stamps = [str(t) for t in self.profiles.timestamps]
        kw = self.profiles.kw.to_numpy()
        rows = []
        for c in self.chains:
            worst = self.worst_case_kw(c.direction)
            sets = [(STATIC, c.static, c.static_verifications, [worst[u.name] for u in users])]
            sets += [(stamps[k], env, (c.verifications[k],), kw[k].tolist()) for k, env in enumerate(c.dynamic)]
            for stamp, env, vers, forecast in sets:
                vmin = {u.name: min(v.user_v_min_pu[u.name] for v in vers) for u in users}
                vmax = {u.name: max(v.user_v_max_pu[u.name] for v in vers) for u in users}
                block = schema.set_rows(self.feeder, env, self.options, vmin, vmax, dist)
                for row, f in zip(block, forecast):
                    row["timestamp"], row["forecast_kw"] = stamp, round(float(f), 6)
                rows += block
        return schema.frame(rows, schema.DYNAMIC_ENVELOPES)

    @cached_property
    def summary(self) -> dict:
        """Compact: the static sets as in `nfca envelopes` (`nfca.io.schema.SET_SUMMARY`), the
        dynamic ones as lists per interval."""
        from nfca.io import schema
        from nfca.studies.envelopes import limits_and_notices, options_summary

        part = sorted(self.participants)
        p = self.profiles
        table = self._table
        static_rows = table[table["timestamp"] == STATIC]
        out: dict = {
            "feeder": self.feeder.name,
            "path": str(self.feeder.path),
            "end_users": len(self.feeder.end_users),
            "connection_points": len(self.feeder.connection_points),
            "participants": len(part),
            "capacity_kva": round(sum(u.capacity_kva for u in self.feeder.end_users), 3),
            "length_m": round(self.feeder.length_m, 3),
            "profiles": p.source,
            "intervals": len(p),
            "resolution_min": round(p.interval / pd.Timedelta(minutes=1), 6),
            "start": str(p.timestamps[0]),
            "end": str(p.timestamps[-1] + p.interval),
            "options": options_summary(self.options, self.feeder),
            "verified": self.verified,
            "complete": True,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "provenance": self.provenance,
            **limits_and_notices(self.feeder, self.options),
            "timestamps": [str(t) for t in p.timestamps],
            "static": {},
            "dynamic": {},
        }
        for c in self.chains:
            rows = static_rows[
                (static_rows["method"] == c.method.value) & (static_rows["direction"] == c.direction.value)
            ]
            out["static"].setdefault(c.method.value, {})[c.direction.value] = schema.set_summary(
                c.static, c.static_verifications, rows
            )
            totals = [round(sum(e.guaranteed_kw[n] for n in part), 3) for e in c.dynamic]
            mins = [round(min((e.guaranteed_kw[n] for n in part), default=0.0), 3) for e in c.dynamic]
            out["dynamic"].setdefault(c.method.value, {})[c.direction.value] = {
                "total_kw": totals,
                "min_kw": mins,
                "v_min_pu": [round(v.v_min_pu, 6) for v in c.verifications],
                "v_max_pu": [round(v.v_max_pu, 6) for v in c.verifications],
                "max_loading_pct": [round(v.max_loading_pct, 3) for v in c.verifications],
                "verified": all(v.verified for v in c.verifications),
                "violations": [x for v in c.verifications for x in v.violations][:5],
                "unique": c.unique,
                "solves": c.solves,
                "skipped": c.skipped,
                "iterations": c.iterations,
                "seconds": round(c.seconds, 3),
            }
        return out


def worst_case(profiles: Profiles, direction: Direction) -> dict[str, float]:
    """Per end-user, the net power over the horizon that leaves the others least room: the
    highest consumption for import, the lowest net power (most generation) for export."""
    kw = profiles.kw.max() if direction is Direction.import_ else profiles.kw.min()
    return {k: float(v) for k, v in kw.items()}


# ----------------------------------------------------------------------------- the study


def run_dynamic(
    feeder: Feeder,
    profiles: Profiles,
    methods: Iterable[Method | str] = METHODS,
    directions: Iterable[Direction | str] = DIRECTIONS,
    options: EnvelopeOptions = EnvelopeOptions(),
    participants: frozenset[str] | None = None,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    require_verified: bool = True,
) -> DynamicStudy:
    """Dynamic and static envelopes of every method (and direction) over the profiles' horizon,
    every interval verified by OpenDSS over the box it promises; raise VerificationError if any
    fails (nothing is returned)."""
    t0 = time.perf_counter()
    check_voltage_limits(feeder, options.limits)
    profiles = profiles.for_feeder(feeder)
    names = frozenset(u.name for u in feeder.end_users)
    chosen = names if participants is None else frozenset(participants)
    directions = tuple(Direction(d) for d in directions)
    options = one_direction_box(options, list(directions))
    if options.guarantee is Guarantee.box:
        jobs = [(Method(m), DIRECTIONS) for m in methods]
    else:
        jobs = [(Method(m), (d,)) for d in directions for m in methods]
    if workers is None:
        workers = min(len(jobs), os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(jobs)))
    # the longest first (optimal and export take more Ipopt iterations), so the processes finish together
    order = sorted(jobs, key=lambda j: (j[0] is not Method.optimal, Direction.export not in j[1]))
    args = [(feeder, options, chosen, m, d, profiles) for m, d in order]
    if progress:
        progress(f"{len(jobs)} envelope series x {len(profiles)} intervals in {workers} process(es)")
    results = _run_chains(args, workers)
    wanted = [(Method(m), d) for d in directions for m in methods]
    chains = sorted((c for r in results for c in r), key=lambda c: wanted.index((c.method, c.direction)))
    study = DynamicStudy(feeder, options, profiles, chosen, tuple(chains), workers, time.perf_counter() - t0)
    if require_verified and not study.verified:
        for c in study.chains:
            for label, vers in (("dynamic", c.verifications), ("static", c.static_verifications)):
                for k, v in enumerate(vers):
                    if not v.verified:
                        raise VerificationError(
                            f"the {label} {c.method.value} {c.direction.value} envelopes failed OpenDSS verification "
                            f"at {profiles.timestamps[k]}: {v.violations[0]}; nothing was written"
                        )
    return study


def _run_chains(args: list[tuple], workers: int) -> list[list[ChainResult]]:
    """`_run_chain` of every job, in `workers` processes: this one and workers - 1 spawned, each
    taking the next job in the given order as it frees up (this process takes the first, while
    the others start). A chain's result does not depend on the process that computes it; of
    failed jobs, the first in the given order is raised, as by `pool.map`."""
    if workers == 1:
        return [_run_chain(*a) for a in args]
    results: list = [None] * len(args)
    jobs = iter(range(len(args)))
    lock = threading.Lock()
    failed: dict[int, BaseException] = {}

    def take() -> int | None:
        with lock:  # nothing more after an interrupt
            return None if any(not isinstance(e, Exception) for e in failed.values()) else next(jobs, None)

    def run(one: Callable[[tuple], list[ChainResult]]) -> None:
        while (k := take()) is not None:
            try:
                results[k] = one(args[k])
            except BaseException as exc:  # handed to the caller once every process has stopped
                failed[k] = exc

    with ProcessPoolExecutor(
        max_workers=workers - 1, mp_context=get_context("spawn"), initializer=few_collections
    ) as pool:
        helpers = [
            threading.Thread(target=run, args=(lambda a: pool.submit(_run_chain_packed, a).result(),), daemon=True)
            for _ in range(workers - 1)
        ]
        with lock:  # this process takes the first job, the spawned ones start meanwhile
            for t in helpers:
                t.start()
            first = next(jobs)
        try:
            results[first] = _run_chain(*args[first])
        except BaseException as exc:
            failed[first] = exc
        run(lambda a: _run_chain(*a))
        for t in helpers:
            t.join()
    if failed:
        stop = [e for e in failed.values() if not isinstance(e, Exception)]
        raise stop[0] if stop else failed[min(failed)]
    return results


def _run_chain_packed(a: tuple) -> list[ChainResult]:
    return _run_chain(*a)


def _run_chain(
    feeder: Feeder,
    options: EnvelopeOptions,
    participants: frozenset[str],
    method: Method,
    dirs: tuple[Direction, ...],
    profiles: Profiles,
) -> list[ChainResult]:
    """One method (and direction, or both for a box) over the horizon: the dynamic sets of every
    distinct non-participant situation on one persistent model, the static set by constraint
    generation over the intervals, and OpenDSS verification of both in every interval."""
    t0 = time.perf_counter()
    problem = EnvelopeProblem(feeder, options, participants)
    names = list(profiles.kw.columns)
    kw = profiles.kw.to_numpy(dtype=float)
    non = [k for k, n in enumerate(names) if n not in participants]
    by_key: dict[tuple, int] = {}  # non-participant powers -> index into the distinct situations
    firms: list[dict[str, float]] = []
    labels: list[str] = []
    index = []
    for k, ts in enumerate(profiles.timestamps):
        key = tuple(np.round(kw[k, non], 9).tolist())
        if key not in by_key:
            by_key[key] = len(firms)
            firms.append(dict(zip(names, kw[k].tolist())))
            labels.append(f"at {ts}")
        index.append(by_key[key])
    run = _Run(problem, method, options.guarantee, dirs, firms[0])
    dynamic, skipped, solves, iterations = [], 0, 0, 0
    t_dyn = time.perf_counter()
    for firm, label in zip(firms, labels):
        run.set_forecast(firm)
        t1 = time.perf_counter()
        try:
            sets = run.capacity_sets(t1)
            skipped += sets is not None
            sets = sets or run.envelope_sets(t1)
        except (InfeasibleError, SolverError) as exc:
            raise type(exc)(f"{label}: {exc}") from None
        solves += len(run.runs)
        iterations += sum(r.iterations for r in run.runs)
        dynamic.append(sets)
    t_static = time.perf_counter()
    static_run = _HorizonRun(
        problem,
        method,
        options.guarantee,
        dirs,
        firms,
        labels,
        first=int(np.argmin([sum(e.total_kw for e in sets) for sets in dynamic])),
    )
    try:
        static = static_run.envelope_sets(time.perf_counter())
    except (InfeasibleError, SolverError) as exc:
        raise type(exc)(f"static {method.value} envelopes: {exc}") from None
    t_verify = time.perf_counter()
    n_audit = options.audit_points
    per = -(-n_audit // len(firms)) if n_audit else 0  # the audit spread over the distinct situations
    static_at = [
        [replace(e, firm_kw=firm, worst_points=tuple(static_run.worst_points_at(k))) for e in static]
        for k, firm in enumerate(firms)
    ]
    checked = [_compact(v) for v in verify_many(feeder, dynamic + static_at, options, audit_points=per)]
    vers, static_vers = checked[: len(firms)], checked[len(firms) :]
    timing = {
        "dynamic_s": round(t_static - t_dyn, 3),
        "static_s": round(t_verify - t_static, 3),
        "verify_s": round(time.perf_counter() - t_verify, 3),
        "static_scenarios": len(static_run.blocks),
        "static_solves": len(static_run.runs),
    }
    seconds = time.perf_counter() - t0
    out = []
    for j, d in enumerate(dirs):
        out.append(
            ChainResult(
                method=method,
                direction=d,
                static=static[j],
                static_verifications=tuple(static_vers[i] for i in index),
                dynamic=tuple(dynamic[i][j] for i in index),
                verifications=tuple(vers[i] for i in index),
                unique=len(firms),
                solves=solves,
                skipped=skipped,
                iterations=iterations + static[j].iterations,
                seconds=seconds,
                timing=timing,
            )
        )
    return out


def _compact(v: Verification) -> Verification:
    """Drop the per-line loadings (hundreds per interval); keep the maximum."""
    return replace(v, line_loading_pct={})


class _HorizonRun(_Run):
    """The static set: one envelope set that holds in every interval's box (non-participants at
    that interval's forecast). Its scenarios are (vertex, interval) pairs, found by constraint
    generation: every interval is screened with the scenarios' vertices, the intervals that come
    nearest are searched for their worst vertices, those that break a limit are added."""

    SEARCHED = 4  # intervals searched in full per round, besides those a screened vertex breaks

    def __init__(
        self,
        problem: EnvelopeProblem,
        method: Method,
        guarantee: Guarantee,
        dirs: tuple[Direction, ...],
        firms: list[dict[str, float]],
        labels: list[str],
        first: int,
    ):
        self.interval_ranges = [problem.ranges(guarantee, dirs, f)[:2] for f in firms]
        self.labels = labels
        super().__init__(problem, method, guarantee, dirs, firms[first])
        self.first = first

    def _violated(self) -> list[tuple[Point, tuple]]:
        P = self.P
        gi, ge = self.envelopes_pu()
        patterns = list({p.t.tobytes(): p.t for p in self.points}.values())
        excess = []
        for ranges in self.interval_ranges:  # every interval at the scenarios' vertices, all at once
            lo, hi = self.box_pu(gi, ge, ranges)
            i, _, ok = P.points.solve(box_powers(lo, hi, P.tan_phi, np.array(patterns)))
            worst = np.max(P.points.lim.excess_of(np.abs(P.points.quantities(i)))) if ok.all() else np.inf
            excess.append(worst)
        order = np.argsort(excess)[::-1]
        have = {(p.t.tobytes(), id(r[0])) for p, r in zip(self.points, self.block_ranges)}
        found = []
        for k in order[: self.SEARCHED]:
            ranges = self.interval_ranges[k]
            lo, hi = self.box_pu(gi, ge, ranges)
            if self.corner is not None:  # the one point of the corner guarantee, in interval k
                t = patterns[0]
                ex, _ = P.points.excess(box_powers(lo, hi, P.tan_phi, t))
                if ex.max() > EXCESS_TOL and (t.tobytes(), id(ranges[0])) not in have:
                    found.append(
                        (float(ex.max()), Point(t, f"every participant at its envelope {self.labels[k]}"), ranges)
                    )
                continue
            for c in worst_vertices(P.points, lo, hi, P.tan_phi):
                if c.excess > EXCESS_TOL and (c.t.tobytes(), id(ranges[0])) not in have:
                    found.append((c.excess, Point(c.t, f"{_label(P, c)} {self.labels[k]}"), ranges))
        found.sort(key=lambda x: -x[0])
        return [(p, r) for _, p, r in found[:PER_ROUND]]

    def worst_points_at(self, k: int) -> list[Point]:
        """Each limit's worst vertex of interval k's box at the published values (for OpenDSS)."""
        if self.corner is not None:
            return []
        P = self.P
        gi, ge = self.published
        lo, hi = self.box_pu(gi, ge, self.interval_ranges[k])
        return [Point(c.t, _label(P, c)) for c in worst_vertices(P.points, lo, hi, P.tan_phi)]

    def _sets(self, gi, ge, res, binding, t0):
        sb = self.P.net.s_base_va
        self.published = tuple(np.minimum(np.floor(g * sb + 1e-3), np.round(self.P.cap * sb, 6)) / sb for g in (gi, ge))
        return super()._sets(gi, ge, res, binding, t0)

    def worst_points(self, lo, hi) -> list[Point]:
        return []  # they depend on the interval: `worst_points_at`

    def firm_violations(self) -> list[str]:
        """The limits the non-participants alone break in any interval."""
        saved = (self.np_lo, self.np_hi)
        try:
            for ranges, label in zip(self.interval_ranges, self.labels):
                self.np_lo, self.np_hi = ranges
                bad = super().firm_violations()
                if bad:
                    return [f"{x} {label}" for x in bad]
            return []
        finally:
            self.np_lo, self.np_hi = saved


# ----------------------------------------------------------------------------- outputs


def write_dynamic(study: DynamicStudy, out: Path, formats: tuple[str, ...] | None = None) -> list[Path]:
    """envelopes.csv (with `timestamp`), summary.json, report.html (the static sets on the map,
    the per-user time charts, seed Fig 3-11) and, with "png" in `formats`, the time plots
    envelopes_time_<direction>.png. Returns the files written."""
    from nfca.io.outputs import DEFAULT_FORMATS, prepare_dir, write_tables

    formats = DEFAULT_FORMATS if formats is None else formats
    out = prepare_dir(out)
    table = study.to_dataframe()
    written = write_tables(study, out, table, tuple(f for f in formats if f != "json"))
    directions = list(dict.fromkeys(c.direction.value for c in study.chains))
    if "png" in formats:  # the report draws its own charts: matplotlib only for the PNG files
        from nfca.io import plots

        title = plots.context(study.summary)
        for d in directions:
            target = out / f"envelopes_time_{d}.png"
            written.append(plots.envelope_timeseries(table[table["direction"] == d], target, d, title).path)
    if "html" in formats:
        from nfca.io import charts
        from nfca.io.report import chart_caption, write_report

        static = study.static_study()
        static_table = static.to_dataframe()
        summary = {**study.summary, "methods": study.summary["static"]}
        caption = chart_caption(summary)
        page = [charts.envelope_timeseries(table, d, caption) for d in directions]
        page += charts.study_charts(static_table, study.options.power_factor, caption)
        note = (
            f"Static envelopes: valid in every one of the {len(study.profiles)} intervals (dynamic ones per "
            "interval in envelopes.csv and the time charts)."
        )
        written.append(write_report(static, static_table, out / "report.html", summary=summary, note=note, charts=page))
    return written + write_tables(study, out, table, tuple(f for f in formats if f == "json"))


def _worst(vs: tuple[Verification, ...]) -> Verification:
    """One verification holding the extremes of several (a static set over the intervals)."""
    users = vs[0].user_v_min_pu
    return Verification(
        converged=all(v.converged for v in vs),
        v_min_pu=min(v.v_min_pu for v in vs),
        v_max_pu=max(v.v_max_pu for v in vs),
        max_loading_pct=max(v.max_loading_pct for v in vs),
        verified=all(v.verified for v in vs),
        violations=tuple(x for v in vs for x in v.violations),
        user_v_min_pu={u: min(v.user_v_min_pu[u] for v in vs) for u in users},
        user_v_max_pu={u: max(v.user_v_max_pu[u] for v in vs) for u in users},
        line_loading_pct={k: max(v.line_loading_pct[k] for v in vs) for k in vs[0].line_loading_pct},
        v_neutral_max_v=max(v.v_neutral_max_v for v in vs),
    )
