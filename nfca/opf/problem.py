"""Guaranteed-capacity operating envelopes under non-firm connection agreements.

One formulation serves every use: the envelope variables (each participant's guaranteed import
g_i and export g_e) are shared by a list of *scenarios*, each a full copy of the network at one
operating point: a vertex of the box the envelopes are promised for (`nfca.model.box`), or the
non-participants' forecast in one interval of a day. A published set is robust when every limit
holds everywhere in its box; it is found by constraint generation: solve on a few vertices, find
each limit's worst vertex at the solution (`nfca.opf.worstcase`), add those that break a limit,
and solve again until none does. `Guarantee.corner` keeps ALEXANDER D3.3's single point.

Methods (per direction; with a box, import and export are solved together and weighed by
`export_weight` w: maximise (1 - w) log(measure of import) + w log(measure of export)):

- optimal: the total. Tie-break: the objective subtracts 1e-5/2 sum g^2 (g in pu of 10 kVA).
  Under the corner guarantee a second solve then takes the most even split (least sum of squared
  shortfalls from capacity) among the allocations within EVEN_WITHIN_W of that total: a strictly
  convex choice among the near-equal optima a total alone leaves (end-users of almost the same
  sensitivity to the binding limits), so the split does not hinge on where the solver started
  or its last digits. Its first solve starts from the fair set, a unique point. The problem can
  still have distinct local optima further apart than EVEN_WITHIN_W (benchmarks/README.md,
  "Distinct local optima"). A box keeps the first solve, from START: there, with tens of
  scenarios, the second cost 70 % more iterations, and the fair start more iterations too.
- fair: equal guaranteed power for all, capped by each one's capacity: g_u = min(t, cap_u), t
  maximal (raised by fixing users as they reach their capacity).
- proportional: g_u = alpha cap_u, alpha maximal.
- propfair: sum cap_u log(g_u) (weighted proportional fairness).
- maxmin: lexicographic max-min (progressive filling; a user is frozen when the multiplier of
  its floor shows it blocks a higher floor).

Under the corner guarantee, fair and proportional are one level at one operating point: the level
is bisected on the model's own power flow (`highest_level`: the same equations and limits as the
NLP), without Ipopt. Where the levels that hold are not one interval from zero, the NLP decides.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from pyomo.common.dependencies import attempt_import

from nfca.errors import InfeasibleError, InputError, SolverError
from nfca.model.box import Guarantee, Point
from nfca.model.envelope import Binding, Direction, EnvelopeOptions, EnvelopeSet, Method, firm_kw
from nfca.model.network import Feeder
from nfca.model.reduction import kron_reduce, reduce_feeder
from nfca.opf.network import VOLTAGE, per_unit
from nfca.opf.worstcase import Candidate, PointModel, box_powers, worst_vertices
from nfca.solver import Result, Status

# Pyomo (and the formulation, imported where a model is built) load with the first model: a level
# found on the model's own power flow (fair and proportional under the corner) needs neither
# (0.10 s less import for a fair run; benchmarks/README.md, round 8)
pyo, _ = attempt_import("pyomo.environ")

TIE_BREAK = 1e-5
EVEN_WITHIN_W = 0.5  # the optimal set: the most even of the allocations within this of the highest total
# Ipopt iterations for the most even split (one attempt); beyond, the highest total's split. The
# 49 Sibelga feeders and IEEE take at most 69, IEEE with 110 end-users 108; with 220 it does not
# converge in 300 (benchmarks/README.md, round 6)
EVEN_MAX_ITER = 150
# The corner's highest total: when Ipopt's adaptive barrier stalls near the optimum and falls back
# to its monotone mode, that mode starts at 1 % of the average complementarity instead of 80 %, so
# the nearly converged point is not pushed back into the interior (lv27's export: 95 -> 71
# iterations). Not for the most even split (lv37's would end "acceptable") nor the box (1-3 W
# less on the feeders tried); benchmarks/README.md, round 8
HIGHEST_TOTAL_IPOPT = {"adaptive_mu_monotone_init_factor": 0.01}
NOT_EVENED = "the most even split was not found: the highest total's split is published"
MAX_ROUNDS = 12  # constraint-generation rounds before giving up
PER_ROUND = 12  # vertices added per round at most (the worst first)
EXCESS_TOL = 1e-7  # a vertex breaking a limit by less than this (fraction) is within it
ROW_SCREEN = 0.1  # a scenario holds the limits that could come within this fraction of their bound
LOG_FLOOR = 1e-6  # pu: measures under a logarithm stay above this
GUESS = 0.5  # the box whose worst vertices are the first scenarios: each participant at this x capacity
START = 0.25  # a solve starts with each participant's envelopes at this x capacity (optimal: at the fair set)
LEVEL_TOL = 1e-8  # pu (0.1 mW): a bisected level is within this of the highest that holds
LEVEL_GRID = 16  # levels tried at once per step of the bisection (one batched power flow)


@dataclass
class EnvelopeProblem:
    """One feeder's envelope problem: its model network, re-solved for each method and direction."""

    feeder: Feeder
    options: EnvelopeOptions = field(default_factory=EnvelopeOptions)
    participants: frozenset[str] | None = None  # None: every end-user takes an NFCA

    def __post_init__(self) -> None:
        names = {u.name for u in self.feeder.end_users}
        if self.participants is None:
            self.participants = frozenset(names)
        unknown = sorted(set(self.participants) - names)
        if unknown:
            raise InputError(f"participant {unknown[0]} is not an end-user of feeder {self.feeder.name}")
        o = self.options
        base = kron_reduce(self.feeder) if o.kron else self.feeder
        self.model_feeder = reduce_feeder(base) if o.reduce else base
        self.net = per_unit(self.model_feeder, source_pu=o.source_pu)
        self.points = PointModel(self.net, o.limits)
        self.tan_phi = math.tan(math.acos(o.power_factor))
        self.cap = self.net.user_cap * o.power_factor  # pu of active power
        self.part = np.array([n in self.participants for n in self.net.users])
        users = self.model_feeder.end_user
        self.firm = np.array([firm_kw(users[n], o) * 1e3 / self.net.s_base_va for n in self.net.users])
        self.levels: dict[tuple, Level | None] = {}  # `_Run._highest_level` by what it depends on

    # ------------------------------------------------------------------ public
    def solve(
        self,
        method: Method | str,
        direction: Direction | str | None = None,
        firm_kw: dict[str, float] | None = None,
        guarantee: Guarantee | str | None = None,
    ) -> list[EnvelopeSet]:
        """The envelope sets of one method: import and export together for a box guarantee,
        `direction` alone otherwise. Raise InfeasibleError when the non-participants alone break a
        limit, SolverError when Ipopt fails.

        `firm_kw` holds non-participants at that net power (kW, consumption +; e.g. their
        forecast in one interval) instead of anywhere within their firm value.
        """
        method = Method(method)
        guarantee = Guarantee(guarantee or self.options.guarantee)
        if guarantee is Guarantee.box:
            dirs = (Direction.import_, Direction.export)
        elif direction is None:
            raise InputError(f"a {guarantee.value} guarantee is solved one direction at a time: give the direction")
        else:
            dirs = (Direction(direction),)
        t0 = time.perf_counter()
        if method in (Method.fair, Method.proportional) and guarantee is Guarantee.corner:
            light = _Run(self, method, guarantee, dirs, firm_kw, model=False)
            sets = light.level_sets(t0) if light._one_point() else None
            if sets is not None:  # one level at one point, found on the power flow: no NLP to build
                return sets
        run = _Run(self, method, guarantee, dirs, firm_kw)
        return run.envelope_sets(t0)

    # ------------------------------------------------------------------ the box
    def ranges(
        self, guarantee: Guarantee, dirs: tuple[Direction, ...], firm_kw: dict[str, float] | None
    ) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Non-participants' range [lo, hi] (pu; participants' entries 0, theirs come from the
        envelope variables) and the corner's t for a corner guarantee."""
        imp, exp = Direction.import_ in dirs, Direction.export in dirs
        if firm_kw is not None:
            missing = [n for n, part in zip(self.net.users, self.part) if not part and n not in firm_kw]
            if missing:
                raise InputError(f"no fixed power given for non-participant {missing[0]}")
            fixed = np.array(
                [0.0 if part else firm_kw[n] * 1e3 / self.net.s_base_va for n, part in zip(self.net.users, self.part)]
            )
            lo = hi = fixed
        elif guarantee is Guarantee.corner:
            lo = hi = np.where(self.part, 0.0, self.firm if imp else -self.firm)
        else:
            lo = np.where(self.part, 0.0, -self.firm if exp else 0.0)
            hi = np.where(self.part, 0.0, self.firm if imp else 0.0)
        corner = (1.0 if imp else 0.0) if guarantee is Guarantee.corner else None
        return lo, hi, corner


class _Run:
    """One solve of `EnvelopeProblem.solve`: a fresh Pyomo model (so the answer depends only on
    its inputs), its scenarios, and the constraint-generation loop."""

    def __init__(
        self,
        problem: EnvelopeProblem,
        method: Method,
        guarantee: Guarantee,
        dirs: tuple[Direction, ...],
        firm_kw: dict[str, float] | None,
        model: bool = True,
    ):
        self.P, self.method, self.guarantee, self.dirs, self.firm_kw = problem, method, guarantee, dirs, firm_kw
        P = problem
        self.np_lo, self.np_hi, self.corner = P.ranges(guarantee, dirs, firm_kw)
        self.free = [u for u in range(len(P.net.users)) if P.part[u]]
        self.user_options = dict(P.options.ipopt_options)
        self.runs: list[Result] = []
        self._final_infeasible: bool | None = None
        self.level: Level | None = None  # the shared level, when bisected on the power flow
        self.evening = False  # optimal: solving for the most even split (the highest total holds)
        self.best_total: float | None = None  # optimal under the corner: the highest total (pu)
        self.best: Result | None = None  # and its solve
        self.last_search: list[Candidate] | None = None  # each limit's worst vertex at the last solution
        self.blocks: list[pyo.Block] = []
        self.points: list[Point] = []
        self.block_ranges: list[tuple[np.ndarray, np.ndarray]] = []  # non-participants' range per scenario
        self.m: pyo.ConcreteModel | None = None
        if not model:  # `level_sets`: a level searched on the power flow, no NLP
            self.points = self._initial_points()
            return
        m = self.m = pyo.ConcreteModel(name=P.net.feeder.name)
        m.U = pyo.RangeSet(0, len(P.net.users) - 1)
        # guaranteed import and export (pu of active power); an inactive direction is fixed at 0
        m.gi = pyo.Var(m.U, bounds=lambda m, u: (0.0, float(P.cap[u])), initialize=0.0)
        m.ge = pyo.Var(m.U, bounds=lambda m, u: (0.0, float(P.cap[u])), initialize=0.0)
        start = {d: np.where(P.part, START * P.cap, 0.0) for d in dirs}  # the start, and the scenarios' flows at it
        if method is Method.optimal and self.corner is not None:
            start = {d: self._fair_start(start[d]) for d in dirs}
        for u in m.U:
            for d, var in ((Direction.import_, m.gi[u]), (Direction.export, m.ge[u])):
                if P.part[u] and d in dirs:
                    var.set_value(float(start[d][u]))
                else:
                    var.setub(0.0)  # held by bounds, not fixed: the NLP keeps its structure
        m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        m.method = pyo.Block()
        from nfca.solver import PersistentIpopt

        self.solver = PersistentIpopt(m)
        self._method_key = None  # what the method block was built for
        for point in self._initial_points():
            self._add(point)

    # -------------------------------------------------------------- scenarios
    def _initial_points(self) -> list[Point]:
        """The scenarios to start from: the corner for a corner guarantee; otherwise the worst
        vertices of a guessed box (every participant at half its capacity), which are usually the
        ones that bind at the optimum, so one solve often suffices; the uniform corners if the
        guessed box breaks no limit."""
        P = self.P
        n = len(P.net.users)
        if self.corner is not None:
            return [Point(np.full(n, self.corner), "every participant at its envelope")]
        guess = np.where(P.part, GUESS * P.cap, 0.0)
        lo, hi = self.box_pu(
            guess if Direction.import_ in self.dirs else 0 * guess,
            guess if Direction.export in self.dirs else 0 * guess,
        )
        found = [Point(c.t, _label(P, c)) for c in worst_vertices(P.points, lo, hi, P.tan_phi) if c.excess > 0]
        if found:
            return found[:PER_ROUND]
        if Direction.import_ in self.dirs and Direction.export in self.dirs:
            return [Point(np.ones(n), "everyone importing"), Point(np.zeros(n), "everyone exporting")]
        return [
            Point(np.ones(n) if self.dirs[0] is Direction.import_ else np.zeros(n), "every participant at its envelope")
        ]

    def envelopes_pu(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.m
        if m is None:  # a level found on the power flow, without the NLP
            zero = np.zeros(len(self.P.net.users))
            return (self.level.shares, zero) if self.dirs[0] is Direction.import_ else (zero, self.level.shares)
        gi = np.array([max(0.0, pyo.value(m.gi[u])) for u in m.U])
        ge = np.array([max(0.0, pyo.value(m.ge[u])) for u in m.U])
        return gi, ge

    def box_pu(self, gi: np.ndarray, ge: np.ndarray, ranges: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every user's range (pu) with participants at envelopes gi, ge and non-participants in
        `ranges` (default: the run's)."""
        P = self.P
        np_lo, np_hi = ranges if ranges is not None else (self.np_lo, self.np_hi)
        return np.where(P.part, -ge, np_lo), np.where(P.part, gi, np_hi)

    def _add(self, point: Point, ranges: tuple | None = None) -> None:
        """A copy of the network at `point` of the box (non-participants in `ranges`, default the
        run's), linked to the envelope variables."""
        from nfca.opf.formulation import constraint_limits, network_block

        P, m = self.P, self.m
        net, t = P.net, point.t
        ranges = ranges if ranges is not None else (self.np_lo, self.np_hi)
        gi, ge = self.envelopes_pu()
        lo, hi = self.box_pu(gi, ge, ranges)
        s0 = box_powers(lo, hi, P.tan_phi, t)
        v0 = P.points.voltages(s0)
        if v0 is None:
            v0 = P.points.voltages(np.zeros(len(net.users)))
        b = network_block(net, v0, s0)
        constraint_limits(b, P.points.lim, self._reachable(t, v0, s0))
        m.add_component(f"scenario{len(self.blocks)}", b)
        tan = P.tan_phi
        part = [u for u in b.U if P.part[u]]
        b.link_p = pyo.Constraint(part, rule=lambda b, u: b.p[u] == t[u] * m.gi[u] - (1 - t[u]) * m.ge[u])
        b.link_q = pyo.Constraint(part, rule=lambda b, u: b.q[u] == tan * (t[u] * m.gi[u] + (1 - t[u]) * m.ge[u]))
        self.blocks.append(b)
        self.points.append(point)
        self.block_ranges.append(ranges)
        self._hold_non_participants(b, t, ranges)
        self.solver.invalidate()

    def _hold_non_participants(self, b: pyo.Block, t: np.ndarray, ranges: tuple) -> None:
        """Non-participants' power in a scenario, held by equal bounds (so a new forecast changes
        bounds only, not the NLP)."""
        P = self.P
        np_lo, np_hi = ranges
        for u in b.U:
            if not P.part[u]:
                p = float(np_lo[u] + t[u] * (np_hi[u] - np_lo[u]))
                q = float(P.tan_phi * abs(p))
                b.p[u].setlb(p), b.p[u].setub(p), b.p[u].set_value(p)
                b.q[u].setlb(q), b.q[u].setub(q), b.q[u].set_value(q)

    def set_forecast(self, firm_kw: dict[str, float]) -> None:
        """Hold the non-participants at a new net power (kW, consumption +; e.g. the next
        interval's forecast): bounds change, the scenarios and the NLP stay."""
        self.firm_kw = firm_kw
        self.np_lo, self.np_hi, _ = self.P.ranges(self.guarantee, self.dirs, firm_kw)
        self._final_infeasible = None
        self.last_search = None
        self.runs = []
        self.block_ranges = [(self.np_lo, self.np_hi)] * len(self.blocks)
        for b, point in zip(self.blocks, self.points):
            self._hold_non_participants(b, point.t, (self.np_lo, self.np_hi))

    def _reachable(self, t: np.ndarray, v0: np.ndarray, s0: np.ndarray) -> np.ndarray:
        """The limits that could come within ROW_SCREEN of their bound at vertex t for any
        envelopes up to capacity (first order from v0): the only ones this scenario needs."""
        P = self.P
        lim = P.points.lim
        rows = np.arange(len(lim))
        g = P.points.gradient(v0, rows)
        d_imp = t * (1 + 1j * P.tan_phi) * np.where(P.part, P.cap, 0.0)
        d_exp = (1 - t) * (-1 + 1j * P.tan_phi) * np.where(P.part, P.cap, 0.0)
        swing = [np.real(g * np.conj(d)[None, :]) for d in (d_imp, d_exp)]
        up = sum(np.clip(x, 0, None) for x in swing).sum(axis=1)
        down = sum(np.clip(x, None, 0) for x in swing).sum(axis=1)
        mag = lim.magnitudes(v0)
        reach_up = mag + up >= lim.upper * (1 - ROW_SCREEN)
        reach_lo = (lim.lower > 0) & (mag + down <= lim.lower * (1 + ROW_SCREEN))
        return rows[reach_up | reach_lo]

    # -------------------------------------------------------------- solving
    def _solve(self, warm: bool = False, stage: str = "", retry: bool = True, options: dict | None = None) -> Result:
        res = self.solver.solve(
            {**(options or {}), **self.user_options} or None,
            retry=retry,
            infeasible_is_final=self._proved_infeasible,
            warm=warm,
            stage=stage,
        )
        self.runs.append(res)
        return res

    def _proved_infeasible(self) -> bool:
        if self._final_infeasible is None:
            self._final_infeasible = bool(self.firm_violations())
        return self._final_infeasible

    def solve(self) -> Result:
        """The method on the current scenarios, then constraint generation until the box holds:
        limits a scenario comes near are added to it, vertices where a limit breaks are added
        as scenarios. Under the corner guarantee, the optimal set's most even split is solved once
        the highest total holds, and checked the same way."""
        method = getattr(self, f"_{self.method.value}") if self.free else self._firm_only
        self.evening = False
        while True:
            res = method()
            if not res.ok:
                return res
            if self._add_near_rows():
                self.evening = False
                continue
            new = self._violated()
            if not new:
                if self.method is Method.optimal and self.corner is not None and self.free and not self.evening:
                    if res.status is not Status.optimal:  # a total only "acceptable" is no floor to hold
                        return replace(res, message=f"{res.message}; {NOT_EVENED}")
                    self.evening = True
                    continue
                return res
            self.evening = False
            if len(self.blocks) >= MAX_ROUNDS * PER_ROUND:
                raise SolverError(
                    f"the {self.method.value} envelopes: no set holds in the whole box after "
                    f"{len(self.blocks)} vertices"
                )
            for point, ranges in new:
                self._add(point, ranges)

    def _add_near_rows(self) -> bool:
        """Add to each scenario the limits it does not hold yet but comes near at its solution;
        True if one of them is broken (the solve must be repeated)."""
        from nfca.opf.formulation import add_limit_rows, voltages

        lim = self.P.points.lim
        broken = False
        for b in self.blocks:
            ex = lim.excess(voltages(b, self.P.net))
            near = [k for k in np.flatnonzero(ex > -0.01) if k not in b.limit_rows]
            if near:
                add_limit_rows(b, lim, near)
                self.solver.invalidate()
                broken |= bool(np.any(ex[near] > EXCESS_TOL))
        return broken

    def _violated(self) -> list[tuple[Point, tuple | None]]:
        """The vertices of the box at the current envelopes where a limit breaks (worst first),
        with the non-participants' ranges to hold them at (None: the run's). A corner guarantee
        has nothing to search: its one point is a scenario already."""
        if self.corner is not None:
            return []
        gi, ge = self.envelopes_pu()
        lo, hi = self.box_pu(gi, ge)
        have = {p.t.tobytes() for p in self.points}
        self.last_search = worst_vertices(self.P.points, lo, hi, self.P.tan_phi)
        found = [c for c in self.last_search if c.excess > EXCESS_TOL and c.t.tobytes() not in have]
        return [(Point(c.t, _label(self.P, c)), None) for c in found[:PER_ROUND]]

    # -------------------------------------------------------------- methods
    def _active(self) -> list[tuple[Direction, pyo.Var]]:
        m = self.m
        return [(d, m.gi if d is Direction.import_ else m.ge) for d in self.dirs]

    def _main(self, measures: list):
        """The objective to maximise: one direction's measure; or (1 - w) log(import) +
        w log(export), scaled so that a watt weighs about as much as in one direction."""
        if len(measures) == 1:
            return measures[0]
        w = self.P.options.export_weight
        scale = float(sum(self.P.cap[u] for u in self.free)) or 1.0
        return scale * ((1 - w) * pyo.log(measures[0]) + w * pyo.log(measures[1]))

    def _method_block(self, key: tuple) -> tuple[pyo.Block, bool]:
        """The method's block, rebuilt (and the NLP with it) only when `key` (what it was built
        for) changed; True when it was rebuilt. The envelope variables' bounds are reset to
        [0, capacity] for every participant in the active directions."""
        m = self.m
        for _, g in self._active():
            for u in self.free:
                g[u].setlb(0.0)
                g[u].setub(float(self.P.cap[u]))
        if key == self._method_key:
            return m.method, False
        m.del_component(m.method)
        m.method = pyo.Block()
        self._method_key = key
        self.solver.invalidate()
        return m.method, True

    def _optimal(self) -> Result:
        """The highest total (a box: the weighted logarithms of both directions' totals). Under
        the corner, then (`evening`) the most even split within EVEN_WITHIN_W of it (see the
        module's docstring): its weight and floor are variables held by bounds, so both solves
        share one NLP."""
        b, new = self._method_block(("optimal",))
        active = self._active()
        n = range(len(active))
        even = self.corner is not None
        if new:
            two = len(active) == 2
            b.total = pyo.Var(n, bounds=(LOG_FLOOR if two else None, None), initialize=1.0)
            b.sum = pyo.Constraint(n, rule=lambda b, k: b.total[k] == sum(active[k][1][u] for u in self.free))
            main = self._main([b.total[k] for k in n])
            tie = TIE_BREAK / 2 * sum(g[u] ** 2 for _, g in active for u in self.free)
            if even:
                b.w = pyo.Var(bounds=(1.0, 1.0), initialize=1.0)  # 1: the highest total; 0: the most even split
                b.floor_at = pyo.Var(bounds=(-1e6, -1e6), initialize=-1e6)
                b.floor = pyo.Constraint(expr=b.total[0] >= b.floor_at)
                short = sum((float(self.P.cap[u]) - g[u]) ** 2 for _, g in active for u in self.free) / 2
                b.obj = pyo.Objective(expr=main - b.w * tie - (1 - b.w) * short, sense=pyo.maximize)
            else:
                b.obj = pyo.Objective(expr=main - tie, sense=pyo.maximize)
        for k, (_, g) in enumerate(active):
            b.total[k].set_value(max(LOG_FLOOR, sum(pyo.value(g[u]) for u in self.free)))
        if even:
            w, floor = (0.0, self.best_total - EVEN_WITHIN_W / self.P.net.s_base_va) if self.evening else (1.0, -1e6)
            for var, x in ((b.w, w), (b.floor_at, floor)):
                var.setlb(x), var.setub(x), var.set_value(x)
        # each stage starts from its own last multipliers (a day's previous interval), the first
        # most even split from the highest total's just found
        if not self.evening:
            res = self._solve(warm=not new, stage="total", options=HIGHEST_TOTAL_IPOPT if even else None)
            if res.ok:
                self.best_total, self.best = pyo.value(b.total[0]), res
            return res
        # a refinement: when it fails, the model still holds the highest total's solution, which stands
        res = self._solve(warm=True, stage="even", retry=False, options={"max_iter": EVEN_MAX_ITER})
        if res.ok:
            return res
        return replace(self.best, message=f"{self.best.message}; {NOT_EVENED} ({res.status.value})")

    def _fair(self) -> Result:
        if self._one_point():
            return self._level_on_power_flow("fair")
        return self._fair_nlp()

    def _fair_nlp(self) -> Result:
        """Equal levels, raised by holding users at their capacity as the level reaches it."""
        self.level = None
        P = self.P
        active = self._active()
        free = {k: list(self.free) for k in range(len(active))}
        two = len(active) == 2
        while True:
            b, new = self._method_block(("fair", tuple(tuple(x) for x in free.values())))
            if new:
                b.t = pyo.Var(range(len(active)), bounds=(LOG_FLOOR if two else 0.0, None))
                b.obj = pyo.Objective(expr=self._main([b.t[k] for k in range(len(active))]), sense=pyo.maximize)
                b.equal = pyo.Constraint(
                    [(k, u) for k in free for u in free[k]], rule=lambda b, k, u: active[k][1][u] == b.t[k]
                )
            for k, (_, g) in enumerate(active):
                caps = [P.cap[u] for u in free[k]]
                b.t[k].setub(float(min(caps)) if caps else None)
                b.t[k].set_value(
                    min(max(LOG_FLOOR, min((pyo.value(g[u]) for u in free[k]), default=0.0)), min(caps, default=np.inf))
                )
                for u in set(self.free) - set(free[k]):  # held at capacity
                    g[u].setlb(float(P.cap[u]))
            res = self._solve(warm=not new)
            if not res.ok:
                return res
            capped = False
            for k in range(len(active)):
                caps = [P.cap[u] for u in free[k]]
                if caps and pyo.value(b.t[k]) >= min(caps) - 1e-7:
                    at_cap = [u for u in free[k] if P.cap[u] <= min(caps) + 1e-12]
                    if len(at_cap) < len(free[k]):
                        free[k] = [u for u in free[k] if u not in at_cap]
                        capped = True
            if not capped:
                return res

    def _proportional(self) -> Result:
        if self._one_point():
            return self._level_on_power_flow("proportional")
        return self._proportional_nlp()

    def _proportional_nlp(self) -> Result:
        self.level = None
        P = self.P
        active = self._active()
        b, new = self._method_block(("proportional",))
        if new:
            two = len(active) == 2
            b.alpha = pyo.Var(range(len(active)), bounds=(LOG_FLOOR if two else 0.0, 1.0), initialize=0.25)
            b.prop = pyo.Constraint(
                [(k, u) for k in range(len(active)) for u in self.free],
                rule=lambda b, k, u: active[k][1][u] == b.alpha[k] * float(P.cap[u]),
            )
            b.obj = pyo.Objective(expr=self._main([b.alpha[k] for k in range(len(active))]), sense=pyo.maximize)
        return self._solve(warm=not new)

    def _propfair(self) -> Result:
        P = self.P
        active = self._active()
        b, new = self._method_block(("propfair",))
        for _, g in active:
            for u in self.free:
                g[u].setlb(LOG_FLOOR)
                g[u].set_value(max(LOG_FLOOR, pyo.value(g[u])))
        if new:
            sums = [sum(float(P.cap[u]) * pyo.log(g[u]) for u in self.free) for _, g in active]
            w = P.options.export_weight
            expr = sums[0] if len(sums) == 1 else (1 - w) * sums[0] + w * sums[1]
            b.obj = pyo.Objective(expr=expr, sense=pyo.maximize)
        return self._solve(warm=not new)

    def _maxmin(self) -> Result:
        """Progressive filling in each direction: raise the floor of the free users; freeze those
        whose floor multiplier shows they block a higher floor (or who reach capacity)."""
        P, m = self.P, self.m
        active = self._active()
        free = {k: list(self.free) for k in range(len(active))}
        level: dict[tuple[int, int], float] = {}  # (direction, user) frozen at this floor
        two = len(active) == 2
        res = None
        while any(free.values()):
            b, _ = self._method_block(("maxmin", tuple(sorted(level.items()))))
            b.t = pyo.Var(range(len(active)), bounds=(LOG_FLOOR if two else 0.0, None), initialize=LOG_FLOOR)
            b.floor = pyo.Constraint(
                [(k, u) for k in free for u in free[k]], rule=lambda b, k, u: active[k][1][u] >= b.t[k]
            )
            # frozen users keep their floor (less 0.01 W, so the feasible set keeps an interior);
            # the small penalty holds them at it, which keeps the optimum unique
            b.kept = pyo.Constraint(list(level), rule=lambda b, k, u: active[k][1][u] >= level[k, u] - 1e-6)
            for k in range(len(active)):
                if not free[k]:
                    x = max(LOG_FLOOR, min((level[k2, u] for k2, u in level if k2 == k), default=LOG_FLOOR))
                    b.t[k].setlb(x), b.t[k].setub(x), b.t[k].set_value(x)
            pen = TIE_BREAK / 2 * sum((active[k][1][u] - level[k, u]) ** 2 for k, u in level)
            b.obj = pyo.Objective(expr=self._main([b.t[k] for k in range(len(active))]) - pen, sense=pyo.maximize)
            res = self._solve()
            if not res.ok:
                return res
            for k, (_, g) in enumerate(active):
                if not free[k]:
                    continue
                t = pyo.value(b.t[k])
                duals = {u: abs(m.dual.get(b.floor[k, u], 0.0)) for u in free[k]}
                scale = max(duals.values()) if duals else 0.0
                frozen = [
                    u for u in free[k] if pyo.value(g[u]) >= P.cap[u] - 1e-7 or (scale > 0 and duals[u] > 1e-4 * scale)
                ]
                if not frozen:
                    frozen = [u for u in free[k] if pyo.value(g[u]) <= t + 1e-6]
                for u in frozen:
                    level[k, u] = min(float(P.cap[u]), t)
                    free[k].remove(u)
        self._method_key = None  # the next call starts filling afresh
        return res

    def _firm_only(self) -> Result:
        """Nobody participates: is the firm operation within the limits?"""
        b, new = self._method_block(("firm",))
        if new:
            b.obj = pyo.Objective(expr=0.0)
        return self._solve()

    # -------------------------------------------------------------- one level on one point
    def _one_point(self) -> bool:
        """One operating point and one direction (the corner guarantee before any other scenario):
        a shared level is then a scalar search on the power flow."""
        return self.corner is not None and len(self.points) == 1 and len(self.dirs) == 1

    def _level_on_power_flow(self, name: str) -> Result:
        """The fair or proportional set at the one point, its level bisected on the model's power
        flow; the NLP's when the levels that hold are not one interval from zero."""
        t0 = time.perf_counter()
        found = self._highest_level(name)
        if found is None:
            return getattr(self, f"_{name}_nlp")()
        _, g = self._active()[0]
        for u in self.free:
            g[u].set_value(float(found.shares[u]))
        from nfca.opf.formulation import initialise

        initialise(self.blocks[0], self.P.net, found.v, found.s)
        return self._level_found(name, found, t0)

    def _level_found(self, name: str, found: Level, t0: float) -> Result:
        self.level = found
        res = Result(
            Status.optimal,
            f"Level_Found: the highest {name} level that holds on the model's power flow, bisected to {LEVEL_TOL:g} pu",
            seconds=time.perf_counter() - t0,
        )
        self.runs.append(res)
        return res

    def level_sets(self, t0: float) -> list[EnvelopeSet] | None:
        """A run built with `model=False`: the fair or proportional set from the level on the
        power flow, without building the NLP; None when the NLP must decide (a full run then)."""
        t1 = time.perf_counter()
        found = self._highest_level(self.method.value) if self.free else None
        if found is None:
            return None
        res = self._level_found(self.method.value, found, t1)
        gi, ge = self.envelopes_pu()
        return self._sets(gi, ge, res, self.binding(gi, ge), t0)

    def _highest_level(self, name: str) -> Level | None:
        """The highest fair or proportional level at the corner, on the model's power flow (None:
        the levels that hold are not one interval from zero)."""
        P, d = self.P, self.dirs[0]
        key = (name, d, self.corner, self.np_lo.tobytes(), self.np_hi.tobytes())
        if key in P.levels:  # e.g. the fair set, then the optimal set that starts from it
            return P.levels[key]
        cap = np.where(P.part, P.cap, 0.0)
        if name == "fair":
            shares, top = (lambda x: np.minimum(x, cap)), float(cap.max())
        else:
            shares, top = (lambda x: x * cap), 1.0
        t = np.full(len(cap), self.corner)
        zero = np.zeros(len(cap))

        def powers(g: np.ndarray) -> np.ndarray:
            lo, hi = self.box_pu(g, zero) if d is Direction.import_ else self.box_pu(zero, g)
            return box_powers(lo, hi, P.tan_phi, t)

        P.levels[key] = highest_level(P.points, powers, shares, top)
        return P.levels[key]

    def _fair_start(self, otherwise: np.ndarray) -> np.ndarray:
        """The fair set at the corner, a unique point, where the optimal set's solve starts;
        `otherwise` when the levels that hold are not one interval from zero."""
        found = self._highest_level("fair") if self.free else None
        return otherwise if found is None else found.shares

    # -------------------------------------------------------------- results
    def envelope_sets(self, t0: float) -> list[EnvelopeSet]:
        """Solve, then the published sets (one per direction of the run)."""
        res = self.solve()
        if res.status is Status.infeasible and self._proved_infeasible():
            raise InfeasibleError(
                f"{self.infeasible_message()}; Ipopt: {res.message.split(':')[0]}, "
                "not retried as the limit is violated with every envelope at zero"
            )
        if not res.ok:  # including an infeasible verdict that the zero envelope contradicts
            names = " and ".join(d.value for d in self.dirs)
            raise SolverError(
                f"Ipopt could not solve the {self.method.value} {names} envelopes after "
                f"{res.failure()}; nothing was written"
            )
        gi, ge = self.envelopes_pu()
        return self._sets(gi, ge, res, self.binding(gi, ge), t0)

    def capacity_sets(self, t0: float) -> list[EnvelopeSet] | None:
        """Every participant's envelope at its capacity, if that holds in the whole box (the
        model's power flow at the corners and at each limit's worst vertex); else None."""
        P = self.P
        full = np.where(P.part, P.cap, 0.0)
        gi = full if Direction.import_ in self.dirs else np.zeros_like(full)
        ge = full if Direction.export in self.dirs else np.zeros_like(full)
        lo, hi = self.box_pu(ge=ge, gi=gi)
        # first the corners and the scenarios' vertices (at once, cheap): usually one of them breaks
        known = np.array(
            [np.full(len(lo), self.corner)]
            if self.corner is not None
            else [np.ones(len(lo)), np.zeros(len(lo)), *(p.t for p in self.points)]
        )
        i, _, ok = P.points.solve(box_powers(lo, hi, P.tan_phi, known))
        if not ok.all() or np.max(P.points.lim.excess_of(np.abs(P.points.quantities(i)))) > 0:
            return None
        self.last_search = [] if self.corner is not None else worst_vertices(P.points, lo, hi, P.tan_phi)
        if any(c.excess > 0 for c in self.last_search):
            return None
        res = Result(Status.optimal, "every participant at capacity holds in the whole box (power flow): not optimised")
        at_cap = {
            d: {
                n: (Binding("capacity", "capacity") if P.part[u] else Binding("firm", "firm"))
                for u, n in enumerate(P.net.users)
            }
            for d in Direction
        }
        return self._sets(gi, ge, res, at_cap, t0)

    def _sets(self, gi: np.ndarray, ge: np.ndarray, res: Result, binding: dict, t0: float) -> list[EnvelopeSet]:
        P = self.P
        # Publish whole watts, rounded down: never more than the model proved feasible (the 1 mW
        # allowance absorbs Ipopt's last digits at a capacity bound).
        sb = P.net.s_base_va
        pub = {
            d: np.minimum(np.floor(g * sb + 1e-3), np.round(P.cap * sb, 6)) / sb
            for d, g in ((Direction.import_, gi), (Direction.export, ge))
        }
        lo, hi = self.box_pu(gi=pub[Direction.import_], ge=pub[Direction.export])
        worst = self.worst_points(lo, hi)
        out = []
        for d in self.dirs:
            kw = np.round(np.where(P.part, pub[d], P.firm) * sb / 1e3, 6)  # non-participants: their firm value
            out.append(
                EnvelopeSet(
                    method=self.method,
                    direction=d,
                    guaranteed_kw=dict(zip(P.net.users, kw.tolist())),
                    participant=dict(zip(P.net.users, P.part.tolist())),
                    binding=binding[d],
                    result=res,
                    seconds=time.perf_counter() - t0,
                    iterations=sum(r.iterations for r in self.runs),
                    solves=len(self.runs),
                    firm_kw=None if self.firm_kw is None else dict(self.firm_kw),
                    guarantee=self.guarantee,
                    scenarios=tuple(self.points),
                    worst_points=tuple(worst),
                )
            )
        return out

    def worst_points(self, lo: np.ndarray, hi: np.ndarray) -> list[Point]:
        """Each limit's worst vertex of the published box (and the scenarios), for OpenDSS to check."""
        if self.corner is not None:
            return []
        # the last search (at the solution, or at capacity) found each limit's worst vertex; the
        # published box is that box rounded down by less than a watt: the same vertices
        found = (
            self.last_search if self.last_search is not None else worst_vertices(self.P.points, lo, hi, self.P.tan_phi)
        )
        out = {p.t.tobytes(): p for p in self.points}
        for c in found:
            key = c.t.tobytes()
            if key not in out:
                out[key] = Point(c.t, _label(self.P, c))
        return list(out.values())

    # -------------------------------------------------------------- reporting
    def binding(self, gi: np.ndarray, ge: np.ndarray) -> dict[Direction, dict[str, Binding]]:
        """The limit that stops each end-user short of its capacity in each of the run's
        directions: the limit constraint (in any scenario) with the largest multiplier times
        sensitivity to that user's guaranteed power; for the shared-level methods, to the level
        the user is held at."""
        if self.level is not None:
            return self._level_binding(gi, ge)
        from nfca.opf.formulation import voltages

        P, m = self.P, self.m
        lim, net = P.points.lim, P.net
        n_u = len(net.users)
        shared = self.method in (Method.fair, Method.proportional, Method.maxmin)
        active = []  # per scenario with a binding limit: its limits' multipliers and gradients
        for s, b in enumerate(self.blocks):
            dual = np.zeros(len(lim))
            for k in b.limit_rows:
                dual[k] = max(
                    abs(m.dual.get(b.lim_upper[k], 0.0)),
                    abs(m.dual.get(b.lim_lower[k], 0.0)) if k in b.lim_lower else 0.0,
                )
            if not np.any(dual > 1e-9):
                continue
            v = voltages(b, net)
            rows, dual = _merge_equivalent(P, v, dual, sorted(b.limit_rows))
            grad = P.points.gradient(v, rows)  # d|Q| ~ Re(G conj(ds))
            active.append((s, rows, dual, grad, lim.magnitudes(v)[rows]))
        out: dict[Direction, dict[str, Binding]] = {}
        for d, g in ((Direction.import_, gi), (Direction.export, ge)):
            if d not in self.dirs:
                continue
            score = np.zeros((len(self.blocks), len(lim), n_u))
            for s, rows, dual, grad, mag in active:
                t = self.points[s].t
                ds = (t * (1 + 1j * P.tan_phi)) if d is Direction.import_ else ((1 - t) * (-1 + 1j * P.tan_phi))
                sens = np.abs(np.real(grad * np.conj(ds)[None, :]))
                score[s, rows, :] = dual[rows, None] * 2 * mag[:, None] * sens
            per_user = score.max(axis=0)  # (limit, user)
            where = score.argmax(axis=0)
            out[d] = {}
            level_users = [u for u in self.free if g[u] < P.cap[u] - 1e-6]
            common = per_user[:, level_users].sum(axis=1) if shared and level_users else None
            for u, name in enumerate(net.users):
                if held := self._held_by(u, d, g):
                    out[d][name] = held
                else:
                    col = common if common is not None else per_user[:, u]
                    k = int(np.argmax(col))
                    if col[k] <= 0:
                        out[d][name] = Binding("fairness", "none (fairness rule)")
                        continue
                    s = int(where[k, u]) if common is None else int(np.argmax(score[:, k, :].max(axis=1)))
                    out[d][name] = _binding(P, k, self._side_at(s, k), self.points[s].label)
        return out

    def _level_binding(self, gi: np.ndarray, ge: np.ndarray) -> dict[Direction, dict[str, Binding]]:
        """`binding` for a level bisected on the power flow: the limit that breaks first above it
        (of equivalent limits, the first)."""
        P, lim = self.P, self.P.points.lim
        stop = None
        if self.level.above is not None:
            excess, v = self.level.above
            broken = np.clip(excess, 0.0, None)
            rows, weight = _merge_equivalent(P, v, broken / broken.max(), np.arange(len(lim)))
            k = int(rows[np.argmax(weight[rows])])
            stop = _binding(P, k, _side(lim, k, lim.magnitudes(v)[k]), self.points[0].label)
        capacity = Binding("capacity", "capacity")
        return {
            d: {name: self._held_by(u, d, g) or stop or capacity for u, name in enumerate(P.net.users)}
            for d, g in ((Direction.import_, gi), (Direction.export, ge))
        }

    def _held_by(self, u: int, d: Direction, g: np.ndarray) -> Binding | None:
        """What holds end-user u in direction d when no limit does: its firm connection, the
        guarantee not covering d, or its capacity (at envelopes `g`); None otherwise."""
        if not self.P.part[u]:
            return Binding("firm", "firm")
        if d not in self.dirs:
            return Binding("none", "not in this guarantee")
        if g[u] >= self.P.cap[u] - 1e-6:
            return Binding("capacity", "capacity")
        return None

    def _side_at(self, s: int, k: int) -> str:
        b = self.blocks[s]
        if k in b.lim_lower and abs(self.m.dual.get(b.lim_lower[k], 0.0)) > abs(self.m.dual.get(b.lim_upper[k], 0.0)):
            return "lower"
        return "upper"

    def firm_violations(self) -> list[str]:
        """The limits the non-participants alone break somewhere in their range, with every
        participant at zero (the model's margins included: then the model has no feasible point)."""
        P = self.P
        lim = P.points.lim
        lo, hi = self.box_pu(np.zeros(len(P.cap)), np.zeros(len(P.cap)))
        points = [np.full(len(lo), self.corner if self.corner is not None else 1.0)]
        if self.corner is None:
            points.append(np.zeros(len(lo)))
            points += [c.t for c in worst_vertices(P.points, lo, hi, P.tan_phi)]
        bad = []
        for t in points:
            ex, v = P.points.excess(box_powers(lo, hi, P.tan_phi, t))
            if v is None:
                return [
                    "the power flow of the firm connections alone does not converge (they are far beyond "
                    "the feeder's limits)"
                ]
            mag = lim.magnitudes(v)
            for k in np.flatnonzero(ex > 0):
                what = lim.describe(k, _side(lim, k, mag[k]))
                value = lim.value_text(k, mag[k])
                if not any(x.startswith(what) for x in bad):
                    bad.append(f"{what} at {value}")
        return bad

    def infeasible_message(self) -> str:
        bad = self.firm_violations()
        names = " and ".join(d.value for d in self.dirs)
        where = " (each anywhere within its firm value)" if self.corner is None and self.firm_kw is None else ""
        if bad:
            return (
                f"no {names} envelope exists: with NFCA users at zero the firm connections alone violate "
                f"{len(bad)} limit(s){where}, first {bad[0]} (voltage limits {self.P.options.limits.describe()})"
            )
        return f"no {names} envelope exists: Ipopt found the limits infeasible"


@dataclass(frozen=True)
class Level:
    """The highest shared level that holds on the model's power flow, and the state there."""

    x: float  # the level (pu, or a fraction for a proportional level)
    shares: np.ndarray  # every user's envelope at it (pu of active power)
    s: np.ndarray  # every user's power at the point (pu, complex, consumption +)
    v: np.ndarray  # node voltages (pu)
    above: tuple[np.ndarray, np.ndarray] | None  # (excess, voltages) just above: None if the top holds


def highest_level(pm: PointModel, powers, shares, top: float) -> Level | None:
    """The highest level x in [0, top] at which every limit holds on the model's power flow, the
    users' envelopes `shares(x)` (pu) giving their powers `powers(shares)` (pu, complex), to
    LEVEL_TOL: LEVEL_GRID levels per step, one batched power flow each. None when the levels that
    hold are not one interval from zero (some level breaks a limit and a higher one does not), or
    when just above the highest the power flow has no solution (no limit to name: the NLP decides)."""

    def holds(xs: np.ndarray):
        s = np.array([powers(shares(x)) for x in xs])
        i, _, conv = pm.solve(s)
        excess = pm.lim.excess_of(np.abs(pm.quantities(i)))
        ok = conv & (excess.max(axis=1, initial=-np.inf) <= 0)
        return ok, conv, s, i, excess

    def state(i: np.ndarray) -> np.ndarray:
        return pm.pf.v_noload - pm.ze @ i

    xs = np.linspace(0.0, top, LEVEL_GRID + 1)
    ok, conv, s, i, excess = holds(xs)
    if ok.all():
        return Level(top, shares(top), s[-1], state(i[-1]), None)
    k = int(np.argmin(ok))  # the first level that breaks a limit
    if k == 0 or ok[k:].any():
        return None
    lo, hi = (xs[k - 1], s[k - 1], i[k - 1]), (xs[k], excess[k], conv[k], i[k])
    while hi[0] - lo[0] > LEVEL_TOL:
        xs = np.linspace(lo[0], hi[0], LEVEL_GRID + 1)[1:-1]
        ok, conv, s, i, excess = holds(xs)
        k = int(np.argmin(ok)) if not ok.all() else len(xs)
        if ok[k:].any():
            return None
        if k > 0:
            lo = (xs[k - 1], s[k - 1], i[k - 1])
        if k < len(xs):
            hi = (xs[k], excess[k], conv[k], i[k])
    if not hi[2]:
        return None
    x, s_lo, i_lo = lo
    return Level(float(x), shares(x), s_lo, state(i_lo), (hi[1], state(hi[3])))


def _merge_equivalent(P: EnvelopeProblem, v: np.ndarray, dual: np.ndarray, held) -> tuple[np.ndarray, np.ndarray]:
    """The limits with a multiplier at node voltages `v`, with the multipliers of equivalent
    limits (cables in series with nothing between them: the same current, rating and
    sensitivities, so Ipopt splits their multiplier arbitrarily) moved to the first of them, so
    the binding limit named does not depend on the solver's path."""
    lim = P.points.lim
    held = np.asarray(held, dtype=int)
    mag = lim.magnitudes(v)
    at_bound = held[(mag[held] >= lim.upper[held] * (1 - 1e-7)) | (dual[held] > 1e-9)]
    grad = P.points.gradient(v, at_bound)
    dual = dual.copy()
    up, at = lim.upper[at_bound], mag[at_bound]
    for i, k in enumerate(at_bound):
        # the first earlier limit of the same rating and magnitude whose sensitivities are those
        # of k (np.allclose(grad[j], grad[i], rtol=1e-6, atol=1e-9 max|grad[i]|), all j at once)
        near = np.flatnonzero((up[:i] == up[i]) & (np.abs(at[:i] - at[i]) <= 1e-7 * up[i]))
        if not len(near):
            continue
        atol = 1e-9 * np.abs(grad[i]).max()
        same = np.all(np.abs(grad[near] - grad[i]) <= atol + 1e-6 * np.abs(grad[i]), axis=1)
        if same.any():
            r = at_bound[near[np.argmax(same)]]
            dual[r] += dual[k]
            dual[k] = 0.0
    return np.flatnonzero(dual > 1e-9), dual


def _side(lim, k: int, mag: float) -> str:
    """Which bound of limit k a magnitude `mag` breaks or meets: a voltage's lower, else upper."""
    return "lower" if lim.kind[k] == VOLTAGE and mag < lim.lower[k] else "upper"


def _label(P: EnvelopeProblem, c: Candidate) -> str:
    if c.worst < 0:
        return "a vertex where the power flow does not converge"
    return f"worst case of {P.points.lim.describe(c.worst, c.side)}"


def _binding(P: EnvelopeProblem, k: int, side: str, where: str) -> Binding:
    lim = P.points.lim
    kind = str(lim.kind[k])
    value = float(lim.lower_limit[k] if side == "lower" else lim.limit[k])
    return Binding(kind, lim.describe(k, side), lim.element[k], lim.phase[k], value, lim.unit[k], where)
