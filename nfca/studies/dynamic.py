"""Dynamic envelopes over a horizon of intervals, and the static envelopes valid for all of them
(seed section 3.5.1, Fig 3-11).

Semantics (profiles in kW, consumption positive, generation negative; `nfca.profiles`):

* dynamic, interval t: every participant's guaranteed import (export) with all participants at
  their envelope at once and every non-participant at its forecast net power p_u(t) (vars at the
  options' power factor, q = tan(phi) |p|), in both directions: a non-participant's PV lowers the
  import it adds and its consumption offsets the export of the others;
* static: one envelope set for the whole horizon, feasible in every interval with the
  non-participants at that interval's forecast. Not simply the envelope at each non-participant's
  worst forecast: the phases are coupled (through the neutral, or the mutual impedance of a
  Kron-reduced cable), so less generation on one phase can raise another phase's voltage. It is
  solved on the intervals that bind, by constraint generation (`_Chain.static`), and verified by
  OpenDSS in every interval.

What holds: the static set is feasible in every interval, so the dynamic fair level (the largest
common level of the interval) is at least the static one and the dynamic optimal total is at
least the static total; one user's dynamic optimal envelope can still be below its static one
(the optimum moves power between users). With every end-user a participant nothing varies over
time: dynamic = static.

Speed: one Pyomo model and one PyNumero NLP per method x direction ("chain"); the
non-participants' power enters as bounds of fixed-by-bounds variables, so an interval costs an
Ipopt call warm-started (primal and dual) from the previous interval, not an NL file. Intervals
with the same non-participant powers are solved once; an interval where every participant at
capacity is within limits (a power flow of the model, the model's margins) gets capacity without
optimising. A failed warm start is retried cold, then by `EnvelopeProblem.solve` (with its
retries). Chains run in parallel processes. Every interval's envelopes, dynamic and static, are
verified by OpenDSS on the full feeder.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from functools import cached_property
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import scipy.sparse as sp

from nfca.model.envelope import Direction, EnvelopeOptions, EnvelopeSet, Method

from nfca.opf.problem import TIE_BREAK, EnvelopeProblem
from nfca.errors import InfeasibleError, SolverError, VerificationError
from nfca.model.network import Feeder
from nfca.model.voltages import check_voltage_limits
from nfca.studies.profiles import Profiles
from nfca.opf.formulation import (
    ZBusPowerFlow, add_neutral_voltage_limits,
    add_thermal_limits, add_voltage_limits, build_model, fixed_point_voltages, init_leg_currents, set_voltages,
    voltages,
)
from nfca.solver import IpoptSession, Result
from nfca.verify import Verification, verify

METHODS = (Method.optimal, Method.fair)
DIRECTIONS = (Direction.import_, Direction.export)
STATIC = "static"  # the timestamp of static rows in envelopes.csv

# Warm start from the previous interval's primal-dual point: push it only marginally into the
# interior and start the barrier small.
WARM_OPTIONS = {
    "warm_start_init_point": "yes",
    "warm_start_bound_push": 1e-9,
    "warm_start_bound_frac": 1e-9,
    "warm_start_slack_bound_push": 1e-9,
    "warm_start_slack_bound_frac": 1e-9,
    "warm_start_mult_bound_push": 1e-9,
    "mu_init": 1e-6,
}

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
    fallbacks: int  # intervals that needed the cold generic path (EnvelopeProblem.solve)
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
        return (f"<DynamicStudy {self.feeder.name}: {len(self.participants)} of {len(self.feeder.end_users)} end-users "
                f"with an NFCA, {len(p)} intervals of {p.interval}, {len(self.chains)} envelope series; "
                f"{'verified' if self.verified else 'NOT verified'}>")

    def static_study(self):
        """The static sets as a Study, each with its extremes over the intervals (for the report)."""
        from nfca.studies.envelopes import Study

        return Study(self.feeder, self.options, tuple(c.static for c in self.chains),
                     tuple(_worst(c.static_verifications) for c in self.chains), self.seconds, self.participants,
                     provenance=self.provenance)

    def chain(self, method: Method | str, direction: Direction | str) -> ChainResult:
        method, direction = Method(method), Direction(direction)
        return next(c for c in self.chains if c.method is method and c.direction is direction)

    def worst_case_kw(self, direction: Direction | str) -> dict[str, float]:
        return worst_case(self.profiles, Direction(direction))

    def to_dataframe(self) -> pd.DataFrame:
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
        table = self.to_dataframe()
        static_rows = table[table["timestamp"] == STATIC]
        out: dict = {
            "feeder": self.feeder.name, "path": str(self.feeder.path),
            "end_users": len(self.feeder.end_users),
            "connection_points": len(self.feeder.connection_points), "participants": len(part),
            "capacity_kva": round(sum(u.capacity_kva for u in self.feeder.end_users), 3),
            "length_m": round(self.feeder.length_m, 3),
            "profiles": p.source, "intervals": len(p), "resolution_min": round(p.interval / pd.Timedelta(minutes=1), 6),
            "start": str(p.timestamps[0]), "end": str(p.timestamps[-1] + p.interval),
            "options": options_summary(self.options, self.feeder),
            "verified": self.verified, "complete": True, "seconds": round(self.seconds, 3), "workers": self.workers,
            "provenance": self.provenance, **limits_and_notices(self.feeder, self.options),
            "timestamps": [str(t) for t in p.timestamps], "static": {}, "dynamic": {},
        }
        for c in self.chains:
            rows = static_rows[(static_rows["method"] == c.method.value) & (static_rows["direction"] == c.direction.value)]
            out["static"].setdefault(c.method.value, {})[c.direction.value] = schema.set_summary(
                c.static, c.static_verifications, rows)
            totals = [round(sum(e.guaranteed_kw[n] for n in part), 3) for e in c.dynamic]
            mins = [round(min((e.guaranteed_kw[n] for n in part), default=0.0), 3) for e in c.dynamic]
            out["dynamic"].setdefault(c.method.value, {})[c.direction.value] = {
                "total_kw": totals, "min_kw": mins,
                "v_min_pu": [round(v.v_min_pu, 6) for v in c.verifications],
                "v_max_pu": [round(v.v_max_pu, 6) for v in c.verifications],
                "max_loading_pct": [round(v.max_loading_pct, 3) for v in c.verifications],
                "verified": all(v.verified for v in c.verifications),
                "violations": [x for v in c.verifications for x in v.violations][:5],
                "unique": c.unique, "solves": c.solves, "skipped": c.skipped, "fallbacks": c.fallbacks,
                "iterations": c.iterations, "seconds": round(c.seconds, 3),
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
    """Dynamic and static envelopes of every method x direction over the profiles' horizon, every
    interval verified by OpenDSS; raise VerificationError if any fails (nothing is returned)."""
    t0 = time.perf_counter()
    check_voltage_limits(feeder, options.limits)
    profiles = profiles.for_feeder(feeder)
    names = frozenset(u.name for u in feeder.end_users)
    chosen = names if participants is None else frozenset(participants)
    jobs = [(Method(m), Direction(d)) for d in directions for m in methods]
    if workers is None:
        workers = min(len(jobs), os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(jobs)))
    # the longest first (export and optimal take more Ipopt iterations), so the processes finish together
    order = sorted(jobs, key=lambda j: (j[1] is not Direction.export, j[0] is not Method.optimal))
    args = [(feeder, options, chosen, m, d, profiles) for m, d in order]
    if progress:
        progress(f"{len(jobs)} envelope series x {len(profiles)} intervals in {workers} process(es)")
    if workers == 1:
        chains = [_run_chain(*a) for a in args]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            chains = list(pool.map(_run_chain_packed, args))
    chains = sorted(chains, key=lambda c: jobs.index((c.method, c.direction)))
    study = DynamicStudy(feeder, options, profiles, chosen, tuple(chains), workers, time.perf_counter() - t0)
    if require_verified and not study.verified:
        for c in study.chains:
            for label, vers in (("dynamic", c.verifications), ("static", c.static_verifications)):
                for k, v in enumerate(vers):
                    if not v.verified:
                        raise VerificationError(
                            f"the {label} {c.method.value} {c.direction.value} envelopes failed OpenDSS verification "
                            f"at {profiles.timestamps[k]}: {v.violations[0]}; nothing was written")
    return study


def _run_chain_packed(a: tuple) -> ChainResult:
    return _run_chain(*a)


def _run_chain(feeder: Feeder, options: EnvelopeOptions, participants: frozenset[str], method: Method,
               direction: Direction, profiles: Profiles) -> ChainResult:
    t0 = time.perf_counter()
    chain = _Chain(feeder, options, participants, method, direction)
    names = list(profiles.kw.columns)
    kw = profiles.kw.to_numpy(dtype=float)
    non = [k for k, n in enumerate(names) if n not in participants]
    by_key: dict[tuple, int] = {}  # non-participant powers -> index into unique
    unique_envs: list[EnvelopeSet] = []
    unique_firm: list[dict[str, float]] = []
    index = []
    skipped = 0
    t_dyn = time.perf_counter()
    for k, ts in enumerate(profiles.timestamps):
        key = tuple(np.round(kw[k, non], 9).tolist())
        if key not in by_key:
            firm = dict(zip(names, kw[k].tolist()))
            env, at_capacity = chain.envelope(firm, f"at {ts}")
            skipped += at_capacity
            by_key[key] = len(unique_envs)
            unique_envs.append(env)
            unique_firm.append(firm)
        index.append(by_key[key])
    t_static = time.perf_counter()
    static = chain.static(unique_envs, unique_firm, [str(profiles.timestamps[index.index(i)]) for i in range(len(unique_envs))])
    statics = [replace(static, firm_kw=f) for f in unique_firm]
    t_verify = time.perf_counter()
    vers = [_compact(v) for v in verify(feeder, unique_envs + statics, options)]
    timing = {"dynamic_s": round(t_static - t_dyn, 3), "static_s": round(t_verify - t_static, 3),
              "verify_s": round(time.perf_counter() - t_verify, 3), "static_rounds": chain.static_rounds,
              "static_intervals": chain.static_intervals}
    n = len(unique_envs)
    dynamic = tuple(unique_envs[i] for i in index)
    return ChainResult(
        method=method, direction=direction, static=static,
        static_verifications=tuple(vers[n + i] for i in index),
        dynamic=dynamic, verifications=tuple(vers[i] for i in index),
        unique=n, solves=chain.solves, skipped=skipped, fallbacks=chain.fallbacks,
        iterations=sum(e.iterations for e in unique_envs) + static.iterations,
        seconds=time.perf_counter() - t0, timing=timing,
    )


def _compact(v: Verification) -> Verification:
    """Drop the per-line loadings (hundreds per interval); keep the maximum."""
    return replace(v, line_loading_pct={})


# ----------------------------------------------------------------------------- one chain


class _Chain:
    """One method x direction: a model whose non-participants' power is set by bounds."""

    def __init__(self, feeder: Feeder, options: EnvelopeOptions, participants: frozenset[str],
                 method: Method, direction: Direction):
        self.feeder, self.options, self.participants = feeder, options, participants
        self.method, self.direction = Method(method), Direction(direction)
        self.problem = EnvelopeProblem(feeder, options, participants)
        P, m = self.problem, self.problem.m
        self.free = [u for u in m.U if P.part[u]]
        self.non = [u for u in m.U if not P.part[u]]
        self.screen = _CapacityScreen(P)
        self.generic: EnvelopeProblem | None = None
        self.solves = self.fallbacks = self.static_rounds = self.static_intervals = 0
        self.warm = None
        self.solutions: dict[int, np.ndarray] = {}  # id(EnvelopeSet) -> the model's voltages (pu)
        self.nlp = None
        if self.free and self.method is not Method.maxmin:  # maxmin is iterative: generic path
            self._build()

    # -- the persistent NLP
    def _build(self) -> None:
        from pyomo.contrib.pynumero.interfaces.pyomo_nlp import PyomoNLP

        P, m = self.problem, self.problem.m
        P._reset(self.direction)  # non-participants' g fixed at capacity (firm); their p, q follow
        for u in self.non:
            m.link_p[u].deactivate()
            m.link_q[u].deactivate()
            for v in (m.p[u], m.q[u]):  # free in Pyomo; each solve fixes them by the NLP's bounds
                v.setlb(None)
                v.setub(None)
        b, free, cap = m.method, self.free, P.cap
        self.cap_min = float(min(cap[u] for u in free))
        if self.method is Method.optimal:
            b.obj = pyo.Objective(expr=sum(m.g[u] for u in free) - TIE_BREAK / 2 * sum(m.g[u] ** 2 for u in free),
                                  sense=pyo.maximize)
        elif self.method is Method.fair:
            b.t = pyo.Var(bounds=(0, self.cap_min), initialize=0.25 * self.cap_min)
            b.equal = pyo.Constraint(free, rule=lambda b, u: m.g[u] == b.t)
            b.obj = pyo.Objective(expr=b.t, sense=pyo.maximize)
        elif self.method is Method.proportional:
            b.alpha = pyo.Var(bounds=(0, 1), initialize=0.25)
            b.prop = pyo.Constraint(free, rule=lambda b, u: m.g[u] == b.alpha * float(cap[u]))
            b.obj = pyo.Objective(expr=b.alpha, sense=pyo.maximize)
        elif self.method is Method.propfair:
            for u in free:
                m.g[u].setlb(1e-6)
            b.obj = pyo.Objective(expr=sum(float(cap[u]) * pyo.log(m.g[u]) for u in free), sense=pyo.maximize)
        nlp = self.nlp = PyomoNLP(m)
        self.session = IpoptSession(nlp)
        self.ip = np.array(nlp.get_primal_indices([m.p[u] for u in self.non]), dtype=int)
        self.iq = np.array(nlp.get_primal_indices([m.q[u] for u in self.non]), dtype=int)
        self.lb0, self.ub0 = nlp.primals_lb().copy(), nlp.primals_ub().copy()
        self.vars = nlp.get_pyomo_variables()

    def _ipopt(self, lb, ub, x0, extra: dict, warm=None) -> tuple[Result, tuple | None]:
        self.solves += 1
        user = dict(getattr(self.options, "ipopt_options", ()))  # the user's Ipopt options win
        return self.session.solve(x0, {**extra, **user}, lb, ub, warm)

    def _cold_start(self, firm: np.ndarray) -> np.ndarray:
        """Power flow with participants at a quarter of capacity, non-participants at `firm`."""
        P, m = self.problem, self.problem.m
        g0 = np.where(P.part, 0.25 * P.cap, 0.0)
        s = P._user_s(self.direction, g0, firm)
        v = fixed_point_voltages(P.net, s)
        if np.all(np.isfinite(v)):
            set_voltages(m, v)
            init_leg_currents(m, P.net, v, s)
        for u in m.U:
            m.p[u].set_value(float(s[u].real))
            m.q[u].set_value(float(s[u].imag))
            if P.part[u]:
                m.g[u].set_value(float(g0[u]))
        b = m.method
        if hasattr(b, "t"):
            b.t.set_value(0.25 * self.cap_min)
        if hasattr(b, "alpha"):
            b.alpha.set_value(0.25)
        return np.array([v.value if v.value is not None else 0.0 for v in self.vars], dtype=float)

    def envelope(self, firm_kw: dict[str, float], label: str) -> tuple[EnvelopeSet, bool]:
        """The envelope set with non-participants at `firm_kw`, and whether it is at capacity
        without optimising."""
        env = self.capacity_set(firm_kw)
        return (env, True) if env is not None else (self.solve(firm_kw, label), False)

    def solve(self, firm_kw: dict[str, float], label: str) -> EnvelopeSet:
        """The envelope set with non-participants at `firm_kw`; `label` names the interval in errors."""
        if self.nlp is None:
            return self._generic(firm_kw, label)
        P, m = self.problem, self.problem.m
        t0 = time.perf_counter()
        firm = P._firm_pu(firm_kw)
        pn = firm[self.non]
        qn = P.tan_phi * np.abs(pn)
        lb, ub = self.lb0.copy(), self.ub0.copy()
        lb[self.ip] = ub[self.ip] = pn
        lb[self.iq] = ub[self.iq] = qn
        runs, out = [], None
        if self.warm is not None:
            x0, lam, zl, zu = self.warm
            x0 = x0.copy()
            x0[self.ip], x0[self.iq] = pn, qn
            res, out = self._ipopt(lb, ub, x0, WARM_OPTIONS, (lam, zl, zu))
            runs.append(res)
        if not runs or not runs[-1].ok:
            res, out = self._ipopt(lb, ub, self._cold_start(firm), {})
            runs.append(res)
        if not runs[-1].ok:
            self.warm = None
            return self._generic(firm_kw, label)
        x, lam, zl, zu = out
        nlp = self.nlp
        nlp.set_primals(x)
        nlp.set_duals(lam)
        nlp.load_state_into_pyomo(bound_multipliers=(zl, zu))
        if self.method is Method.fair and pyo.value(m.method.t) >= self.cap_min - 1e-7 and any(
                P.cap[u] > self.cap_min + 1e-12 for u in self.free):
            return self._generic(firm_kw, label)  # some reach capacity, others can rise further
        self.warm = out
        env = P._envelope_set(self.method, self.direction, runs, t0, firm_kw)
        self.solutions[id(env)] = voltages(m, P.net)
        return env

    def _generic(self, firm_kw: dict[str, float], label: str) -> EnvelopeSet:
        """EnvelopeProblem.solve on a model of its own (cold start, retries, every method)."""
        self.fallbacks += 1
        if self.generic is None:
            self.generic = EnvelopeProblem(self.feeder, self.options, self.participants)
        try:
            env = self.generic.solve(self.method, self.direction, firm_kw)
        except (InfeasibleError, SolverError) as exc:
            raise type(exc)(f"{label}: {exc}") from None
        self.solves += env.solves
        return env

    def static(self, envs: list[EnvelopeSet], firms: list[dict[str, float]], labels: list[str],
               max_rounds: int = 10, per_round: int = 6) -> EnvelopeSet:
        """The envelope set feasible in every interval, by constraint generation: solve on a few
        intervals at once, check every interval with the model's power flow, add the intervals
        where the set breaks a limit (the `per_round` worst), until it breaks none. The first
        intervals: the one with the least dynamic total and those where its dynamic envelope
        breaks a limit. Each interval's network copy starts from its dynamic solution."""
        P = self.problem
        if not self.free or all(e.solves == 0 for e in envs):  # nobody to limit, or capacity fits always
            return replace(envs[0], firm_kw=dict(firms[0]))
        hp = _HorizonProblem(P, self.direction)
        first = int(np.argmin([e.total_kw for e in envs]))
        chosen: list[int] = []
        new = [first, *self._violated(envs[first], firms, {first}, per_round)]
        for _ in range(max_rounds):
            for k in new:
                e = envs[k]
                g0 = np.array([e.guaranteed_kw[n] * 1e3 / P.net.s_base_va for n in P.net.users])
                hp.add(P._firm_pu(firms[k]), labels[k], firms[k], self.solutions.get(id(e)), np.where(P.part, g0, 0.0))
            chosen += new
            self.static_rounds += 1
            self.static_intervals = len(chosen)
            try:
                env = hp.solve(self.method, self.direction)
            except (InfeasibleError, SolverError) as exc:
                raise type(exc)(f"static {self.method.value} {self.direction.value} envelopes: {exc}") from None
            self.solves += env.solves
            new = self._violated(env, firms, set(chosen), per_round)
            if not new:
                return env
        raise SolverError(f"static {self.method.value} {self.direction.value} envelopes: no set feasible in every "
                          f"interval after {max_rounds} rounds ({len(chosen)} intervals)")

    def _violated(self, env: EnvelopeSet, firms: list[dict[str, float]], skip: set[int], n: int) -> list[int]:
        """The (at most n) intervals, worst first, where `env`'s participants break a limit."""
        P = self.problem
        g = np.array([env.guaranteed_kw[x] * 1e3 / P.net.s_base_va for x in P.net.users])
        g = np.where(P.part, g, 0.0)
        excess = [(self.screen.worst(P._user_s(self.direction, g, P._firm_pu(f)))[0], k)
                  for k, f in enumerate(firms) if k not in skip]
        return [k for e, k in sorted(excess, reverse=True)[:n] if e > 0]

    def capacity_set(self, firm_kw: dict[str, float]) -> EnvelopeSet | None:
        """Every participant at capacity if a power flow shows that within limits, else None."""
        P = self.problem
        if not self.free:
            return None
        t0 = time.perf_counter()
        firm = P._firm_pu(firm_kw)
        s = P._user_s(self.direction, np.where(P.part, P.cap, 0.0), firm)
        excess, vmin, vmax = self.screen.excess(s)
        if excess > 0:
            return None
        cap_w = np.minimum(np.floor(P.cap * P.net.s_base_va + 1e-3), np.round(P.cap * P.net.s_base_va, 6))
        kw = np.round(cap_w / 1e3, 6)
        return EnvelopeSet(
            method=self.method, direction=self.direction,
            guaranteed_kw=dict(zip(P.net.users, kw.tolist())),
            participant=dict(zip(P.net.users, P.part.tolist())),
            binding={n: "capacity" for n in P.net.users},
            result=Result("optimal", "every participant at capacity is within limits (power flow): "
                                          "not optimised", 0, time.perf_counter() - t0),
            seconds=time.perf_counter() - t0, iterations=0, solves=0, v_min_pu=vmin, v_max_pu=vmax,
            firm_kw=dict(firm_kw),
        )


class _CapacityScreen:
    """The model's power flow (Z-bus iteration on one factorised admittance matrix) and its
    limits with the model's margins: a quick, exact test of a fixed operating point."""

    def __init__(self, problem: EnvelopeProblem):
        net, limits = problem.net, problem.options.limits
        self.net = net
        self.pf = ZBusPowerFlow(net)
        self.vp = np.array([p for p, _, _, _ in net.vlegs])
        self.vq = np.array([q for _, q, _, _ in net.vlegs])
        self.vnom = np.array([nom for _, _, nom, _ in net.vlegs])
        self.vmin, self.vmax = net.voltage_bounds_pu(limits)
        # line conductor currents I = Z^-1 (V_from - V_to) and rated element terminal currents
        rows, cols, vals = [], [], []
        for sl, z in zip(net.line_slices, net.line_z):
            zi = np.linalg.inv(z)
            cs = range(sl.start, sl.stop)
            for a, c in enumerate(cs):
                for b, c2 in enumerate(cs):
                    for node, sign in ((net.c_from[c2], 1.0), (net.c_to[c2], -1.0)):
                        if node >= 0:
                            rows.append(c), cols.append(node), vals.append(sign * zi[a, b])
        self.line = sp.csr_matrix((vals, (rows, cols)), shape=(len(net.c_from), net.n), dtype=complex)
        self.imax = net.c_imax * (1 - limits.i_margin)
        rows, cols, vals, lims = [], [], [], []
        for ix, y, rated, imax in zip(net.el_idx, net.el_y, net.el_rated, net.el_imax):
            for r, lim in zip(rated, imax):
                for b, j in enumerate(ix):
                    if j >= 0:
                        rows.append(len(lims)), cols.append(j), vals.append(y[r, b])
                lims.append(lim * (1 - limits.i_margin))
        self.elem = sp.csr_matrix((vals, (rows, cols)), shape=(len(lims), net.n), dtype=complex)
        self.emax = np.array(lims)
        vn = limits.v_neutral_max_v  # neutral-to-earth limit at end-users (four-wire)
        self.vn_idx = np.array([i for i, _ in net.vneutral], dtype=int) if vn is not None else np.zeros(0, dtype=int)
        self.vn_max = net.neutral_max_pu(limits) if vn is not None else np.zeros(0)

    def excess(self, s_user: np.ndarray) -> tuple[float, float, float]:
        """How far (pu of the limit) the worst limit is exceeded at end-user powers `s_user` (pu,
        consumption +): <= 0 within limits, inf if the iteration fails; and the lowest and highest
        end-user voltage."""
        v = self.voltages(s_user)
        if v is None:
            return np.inf, 0.0, 0.0
        e = self._excesses(v)
        vl = e[0]
        return float(max(x.max(initial=-1.0) for x in e[1:])), float(vl.min()), float(vl.max())

    def worst(self, s_user: np.ndarray) -> tuple[float, int]:
        """The largest excess over a limit and which limit it is (-1 if the iteration fails)."""
        v = self.voltages(s_user)
        if v is None:
            return np.inf, -1
        x = np.concatenate(self._excesses(v)[1:])
        k = int(np.argmax(x))
        return float(x[k]), k

    def _excesses(self, v: np.ndarray) -> tuple[np.ndarray, ...]:
        ve = np.append(v, 0.0)
        vl = np.abs(ve[self.vp] - ve[self.vq]) / self.vnom
        return (vl, self.vmin - vl, vl - self.vmax, np.abs(self.line @ v) / self.imax - 1,
                np.abs(self.elem @ v) / self.emax - 1, np.abs(v[self.vn_idx]) - self.vn_max)

    def voltages(self, s_user: np.ndarray) -> np.ndarray | None:
        """Node voltages (pu) at end-user powers `s_user`; None if the iteration fails."""
        return self.pf.solve(s_user)


class _HorizonProblem(EnvelopeProblem):
    """One envelope set feasible in several intervals at once (the static envelope): one copy of
    the network model per interval (`add`), all sharing the participants' guaranteed power. The
    methods of EnvelopeProblem run on it unchanged."""

    def __init__(self, base: EnvelopeProblem, direction: Direction):
        for k in ("feeder", "options", "participants", "model_feeder", "net", "tan_phi", "cap", "part", "paths"):
            setattr(self, k, getattr(base, k))
        self.direction = direction
        self.blocks, self.labels, self.firm_kw = [], [], []
        M = self.m = pyo.ConcreteModel(name=f"{self.net.feeder.name} static")
        M.U = pyo.RangeSet(0, len(self.net.users) - 1)
        M.g = pyo.Var(M.U, bounds=lambda M, u: (0.0, float(self.cap[u])), initialize=0.0)
        M.sign = pyo.Param(mutable=True, initialize=direction.sign)
        M.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        M.ipopt_zL_out = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        M.ipopt_zU_out = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        M.method = pyo.Block()
        self.warm_ready = False  # the model holds a solution and its multipliers

    def _solve(self) -> Result:
        """Warm-started from the last solution (and its multipliers) when there is one."""
        if self.warm_ready:
            res = self._warm_solve()
            if res.ok:
                return res
        res = super()._solve()
        self.warm_ready = res.ok
        return res

    def _warm_solve(self) -> Result:
        from pyomo.contrib.pynumero.interfaces.pyomo_nlp import PyomoNLP

        M = self.m
        nlp = PyomoNLP(M)
        xs, cons = nlp.get_pyomo_variables(), nlp.get_pyomo_constraints()
        x0 = np.array([v.value if v.value is not None else 0.0 for v in xs], dtype=float)
        warm = (np.array([M.dual.get(c, 0.0) for c in cons], dtype=float),
                np.array([M.ipopt_zL_out.get(v, 0.0) for v in xs], dtype=float),
                np.array([M.ipopt_zU_out.get(v, 0.0) for v in xs], dtype=float))
        res, out = IpoptSession(nlp).solve(x0, {**WARM_OPTIONS, **dict(getattr(self.options, "ipopt_options", ()))}, warm=warm)
        if res.ok:
            x, lam, zl, zu = out
            nlp.set_primals(x)
            nlp.set_duals(lam)
            nlp.load_state_into_pyomo(bound_multipliers=(zl, zu))
        return res

    def add(self, firm: np.ndarray, label: str, firm_kw: dict[str, float], v0: np.ndarray | None,
            g0: np.ndarray) -> None:
        """A copy of the network with the non-participants at `firm` (pu), started at voltages
        `v0` (pu; a power flow if None) and participants at `g0` (pu)."""
        net, o, M = self.net, self.options, self.m
        part = [u for u in M.U if self.part[u]]
        b = build_model(net)
        add_voltage_limits(b, net, o.limits)
        add_thermal_limits(b, net, o.limits)
        if o.limits.v_neutral_max_v is not None:
            add_neutral_voltage_limits(b, net, o.limits)
        M.add_component(f"interval{len(self.blocks)}", b)
        b.link_p = pyo.Constraint(part, rule=lambda b, u: b.p[u] == M.sign * M.g[u])
        b.link_q = pyo.Constraint(part, rule=lambda b, u: b.q[u] == self.tan_phi * M.g[u])
        s = self._user_s(self.direction, g0, firm)
        v = fixed_point_voltages(net, s) if v0 is None else v0
        if np.all(np.isfinite(v)):
            set_voltages(b, v)
            init_leg_currents(b, net, v, s)
        for u in M.U:
            b.p[u].set_value(float(s[u].real))
            b.q[u].set_value(float(s[u].imag))
            if not self.part[u]:
                b.p[u].fix()
                b.q[u].fix()
        if not self.blocks:
            for u in part:
                M.g[u].set_value(float(g0[u]))
        else:  # no more than any interval allows
            for u in part:
                M.g[u].set_value(min(float(M.g[u].value), float(g0[u])))
        self.blocks.append(b)
        self.labels.append(label)
        self.firm_kw.append(firm_kw)

    def _reset(self, direction: Direction, firm_kw: dict[str, float] | None = None) -> None:
        M = self.m
        M.del_component(M.method)
        M.method = pyo.Block()
        M.sign.set_value(direction.sign)
        for u in M.U:
            M.g[u].unfix()
            if not self.part[u]:
                M.g[u].fix(float(self.cap[u]))

    def _firm_violations(self, direction: Direction, firm_kw: dict[str, float] | None = None) -> list[str]:
        """The limits the non-participants alone violate in any of the intervals."""
        return [x for fk in self.firm_kw for x in super()._firm_violations(direction, fk)]

    def _envelope_set(self, method, direction, runs, t0, firm_kw=None) -> EnvelopeSet:
        """Reported on the most constraining interval (largest multipliers on its limits)."""
        M = self.m

        def weight(b) -> float:
            cons = [*b.v_lower.values(), *b.v_upper.values(), *b.i_line.values(), *b.i_element.values()]
            if b.component("v_neutral") is not None:
                cons += list(b.v_neutral.values())
            return sum(abs(M.dual.get(c, 0.0)) for c in cons)

        k = max(range(len(self.blocks)), key=lambda j: weight(self.blocks[j]))
        b = self.blocks[k]
        if b.component("dual") is None:
            b.dual = pyo.Suffix(direction=pyo.Suffix.LOCAL)
            b.g = pyo.Reference(M.g)
        b.dual.clear()
        b.dual.update((c, M.dual[c]) for c in b.component_data_objects(pyo.Constraint) if c in M.dual)
        saved, self.m = self.m, b
        try:
            env = super()._envelope_set(method, direction, runs, t0, self.firm_kw[k])
        finally:
            self.m = saved
        binding = {n: (x if x in ("capacity", "firm") else f"{x} at {self.labels[k]}") for n, x in env.binding.items()}
        return replace(env, binding=binding)


# ----------------------------------------------------------------------------- outputs


def write_dynamic(study: DynamicStudy, out: Path, formats: tuple[str, ...] = ("csv", "json", "png", "html")) -> list[Path]:
    """envelopes.csv (with `timestamp`), summary.json, per direction the per-user time plot
    envelopes_time_<direction>.png (seed Fig 3-11), and report.html (the static sets on the map,
    the time plots). Returns the files written."""
    from nfca.io.outputs import prepare_dir, write_tables

    out = prepare_dir(out)
    table = study.to_dataframe()
    written = write_tables(study, out, table, tuple(f for f in formats if f != "json"))
    figures = []
    if "png" in formats or "html" in formats:
        from nfca.io import plots

        title = plots.context(study.summary)
        for d in dict.fromkeys(c.direction.value for c in study.chains):
            target = out / f"envelopes_time_{d}.png" if "png" in formats else None
            figures.append(plots.envelope_timeseries(table[table["direction"] == d], target, d, title))
        written += [f.path for f in figures if f.path is not None]
    if "html" in formats:
        from nfca.io import plots
        from nfca.io.report import write_report

        static = study.static_study()
        static_table = static.to_dataframe()
        figures += plots.study_figures(static, static_table, None)
        summary = {**study.summary, "methods": study.summary["static"]}
        note = (f"Static envelopes: valid in every one of the {len(study.profiles)} intervals (dynamic ones per "
                "interval in envelopes.csv and the time plots).")
        written.append(write_report(static, static_table, out / "report.html", figures, summary=summary, note=note))
    return written + write_tables(study, out, table, tuple(f for f in formats if f == "json"))


def _worst(vs: tuple[Verification, ...]) -> Verification:
    """One verification holding the extremes of several (a static set over the intervals)."""
    users = vs[0].user_v_min_pu
    return Verification(
        converged=all(v.converged for v in vs), v_min_pu=min(v.v_min_pu for v in vs),
        v_max_pu=max(v.v_max_pu for v in vs), max_loading_pct=max(v.max_loading_pct for v in vs),
        verified=all(v.verified for v in vs), violations=tuple(x for v in vs for x in v.violations),
        user_v_min_pu={u: min(v.user_v_min_pu[u] for v in vs) for u in users},
        user_v_max_pu={u: max(v.user_v_max_pu[u] for v in vs) for u in users},
        line_loading_pct={k: max(v.line_loading_pct[k] for v in vs) for k in vs[0].line_loading_pct},
        v_neutral_max_v=max(v.v_neutral_max_v for v in vs))
