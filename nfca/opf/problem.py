"""Guaranteed-capacity operating envelopes under non-firm connection agreements.

Every participant's guaranteed power g_u lies in [0, capacity_u * pf]; all participants use
their envelope at the same time, non-participants keep firm connections at full capacity in
the same direction. Methods:

- optimal: maximise sum g - 1e-5/2 * sum g^2 (g in pu of 10 kVA). The small strictly concave
  tie-break makes the optimum unique (it picks the most even split among equal totals) and
  costs at most a few watts of total.
- fair: equal guaranteed power for all, capped by each one's capacity: g_u = min(t, cap_u),
  t maximal (solved by raising t and fixing users as they reach their capacity).
- proportional: g_u = alpha * cap_u, alpha maximal.
- propfair: maximise sum cap_u * log(g_u) (weighted proportional fairness).
- maxmin: lexicographic max-min (progressive filling; a user is frozen when the multiplier of
  its floor constraint shows it blocks a higher floor).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo

from nfca.errors import InfeasibleError, InputError, SolverError
from nfca.model.envelope import Direction, EnvelopeOptions, EnvelopeSet, Method, firm_kw
from nfca.model.network import Feeder
from nfca.model.reduction import kron_reduce, reduce_feeder
from nfca.opf.formulation import (
    ZBusPowerFlow, add_neutral_voltage_limits, add_thermal_limits,
    add_voltage_limits, build_model, fixed_point_voltages, init_leg_currents, leg_voltages_pu,
    neutral_voltages_v, per_unit, set_voltages, voltages,
)
from nfca.solver import IPOPT_OPTIONS, Result, solve_ipopt

TIE_BREAK = 1e-5
# The Ipopt options of `EnvelopeProblem._solve`'s retry (over nfca.solver.IPOPT_OPTIONS).
RETRY_OPTIONS = {"mu_strategy": "monotone", "nlp_scaling_method": "gradient-based", "max_iter": 3000}


def _attempt(start: str, options: dict) -> str:
    o = {**IPOPT_OPTIONS, **options}
    return (f"{start}, {o['mu_strategy']} barrier, {o.get('nlp_scaling_method', 'gradient-based')} scaling, "
            f"max_iter {o['max_iter']}")


@dataclass
class EnvelopeProblem:
    """One UTOPF model per feeder, re-solved for each method and direction."""

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
        base = kron_reduce(self.feeder) if self.options.kron else self.feeder
        self.model_feeder = reduce_feeder(base) if self.options.reduce else base
        self.net = per_unit(self.model_feeder, source_pu=self.options.source_pu)
        o = self.options
        self.tan_phi = math.tan(math.acos(o.power_factor))
        self.cap = self.net.user_cap * o.power_factor  # pu of active power
        self.part = np.array([n in self.participants for n in self.net.users])
        # what a non-participant uses (pu of active power): its firm connection
        self.firm = np.array([firm_kw(self.model_feeder.end_user[n], o) * 1e3 / self.net.s_base_va for n in self.net.users])
        self.m = self._build()
        self.paths = {b: {line.name for line in p} for b, p in self.model_feeder.path_lines.items()}

    # ------------------------------------------------------------------ model
    def _build(self) -> pyo.ConcreteModel:
        net = self.net
        m = build_model(net)
        limits = self.options.limits
        add_voltage_limits(m, net, limits)
        add_thermal_limits(m, net, limits)
        if limits.v_neutral_max_v is not None:
            add_neutral_voltage_limits(m, net, limits)
        m.sign = pyo.Param(mutable=True, initialize=1.0)
        m.g = pyo.Var(m.U, bounds=lambda m, u: (0.0, float(max(self.cap[u], self.firm[u]))), initialize=0.0)
        m.link_p = pyo.Constraint(m.U, rule=lambda m, u: m.p[u] == m.sign * m.g[u])
        m.link_q = pyo.Constraint(m.U, rule=lambda m, u: m.q[u] == self.tan_phi * m.g[u])
        m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        m.method = pyo.Block()
        return m

    def _firm_pu(self, firm_kw: dict[str, float] | None) -> np.ndarray | None:
        """Non-participants' net power (pu, consumption +) from `firm_kw`; None when not given."""
        if firm_kw is None:
            return None
        missing = [n for n, part in zip(self.net.users, self.part) if not part and n not in firm_kw]
        if missing:
            raise InputError(f"no fixed power given for non-participant {missing[0]}")
        return np.array([0.0 if part else firm_kw[n] * 1e3 / self.net.s_base_va
                         for n, part in zip(self.net.users, self.part)])

    def _user_s(self, direction: Direction, g: np.ndarray, firm: np.ndarray | None) -> np.ndarray:
        """Complex power (pu, consumption +) of every end-user: participants at `g` in `direction`,
        non-participants at `firm` (vars at the same power factor) or at their capacity."""
        s = direction.sign * g + 1j * self.tan_phi * g
        if firm is not None:
            s = np.where(self.part, s, firm + 1j * self.tan_phi * np.abs(firm))
        return s

    def _reset(self, direction: Direction, firm_kw: dict[str, float] | None = None) -> None:
        m = self.m
        m.del_component(m.method)
        m.method = pyo.Block()
        m.sign.set_value(direction.sign)
        firm = self._firm_pu(firm_kw)
        for u in m.U:
            m.g[u].unfix()
            m.p[u].unfix()
            m.q[u].unfix()
            m.link_p[u].activate()
            m.link_q[u].activate()
            if not self.part[u]:
                m.g[u].fix(float(self.firm[u]))  # a firm connection: its firm value is guaranteed
                if firm is not None:  # ... but it draws the given power, e.g. its forecast
                    m.link_p[u].deactivate()
                    m.link_q[u].deactivate()
                    m.p[u].fix(float(firm[u]))
                    m.q[u].fix(float(self.tan_phi * abs(firm[u])))
        # Warm start: the power flow with participants at a quarter of their capacity.
        g0 = np.where(self.part, 0.25 * self.cap, self.firm)
        s = self._user_s(direction, g0, firm)
        v = fixed_point_voltages(self.net, s)
        if np.all(np.isfinite(v)):
            set_voltages(m, v)
            init_leg_currents(m, self.net, v, s)
        for u in m.U:
            if not m.g[u].fixed:
                m.g[u].set_value(float(g0[u]))

    def _solve(self) -> Result:
        """Solve; when Ipopt fails, retry once from the same start (the power flow of the warm start,
        or the previous step's solution) with a monotone barrier and gradient-based scaling.

        An infeasible verdict is retried too, unless the firm connections alone already violate a
        limit (then no envelope exists). `self.attempts` records what was tried, for the messages.
        """
        user = dict(self.options.ipopt_options)
        start = [(v, v.value) for v in self.m.component_data_objects(pyo.Var, descend_into=True)]
        res = solve_ipopt(self.m, user or None)
        self.attempts = [(_attempt("warm start", user), res)]
        context = getattr(self, "_context", None)
        proved = res.status == "infeasible" and context is not None and bool(self._firm_violations(*context))
        if not res.ok and not proved:
            for var, value in start:
                var.set_value(value, skip_validation=True)
            res2 = solve_ipopt(self.m, {**RETRY_OPTIONS, **user})
            self.attempts.append((_attempt("the same warm start again", {**RETRY_OPTIONS, **user}), res2))
            res = res.then(res2)
        return res

    def _failure_message(self, method: Method, direction: Direction) -> str:
        tried = "; ".join(f"{k}) {what}: {r.status} ({r.message.split(':')[0]}) after {r.iterations} iterations"
                          for k, (what, r) in enumerate(self.attempts, 1))
        return (f"Ipopt could not solve the {method.value} {direction.value} envelopes after {len(self.attempts)} "
                f"attempt(s): {tried}; nothing was written")

    # ------------------------------------------------------------------ methods
    def solve(self, method: Method | str, direction: Direction | str,
              firm_kw: dict[str, float] | None = None) -> EnvelopeSet:
        """Compute one envelope set; raise InfeasibleError or SolverError when there is none.

        `firm_kw` holds non-participants at that net power (kW, consumption positive, vars at the
        options' power factor) instead of at their capacity, e.g. at their forecast (dynamic
        envelopes, `nfca.dynamic`).
        """
        method, direction = Method(method), Direction(direction)
        t0 = time.perf_counter()
        self._context = (direction, firm_kw)  # for _solve: is an infeasible verdict proved?
        self._reset(direction, firm_kw)
        runs = getattr(self, f"_{method.value}")()
        res = runs[-1]
        if res.status == "infeasible" and self._firm_violations(direction, firm_kw):
            raise InfeasibleError(f"{self._infeasible_message(direction, firm_kw)}; Ipopt: {res.message.split(':')[0]}, "
                                  "not retried as the limit is violated with every envelope at zero")
        if not res.ok:  # including an infeasible verdict that the zero envelope contradicts
            raise SolverError(self._failure_message(method, direction))
        return self._envelope_set(method, direction, runs, t0, firm_kw)

    def _envelope_set(self, method: Method, direction: Direction, runs: list[Result], t0: float,
                      firm_kw: dict[str, float] | None = None) -> EnvelopeSet:
        """The published envelope set of the model's current (solved) state."""
        res = runs[-1]
        m = self.m
        g = np.array([max(0.0, pyo.value(m.g[u])) for u in m.U])
        # Publish whole watts, rounded down (never more than the model proved feasible; the
        # 1 mW allowance absorbs Ipopt's last digits at a capacity bound).
        watts = np.minimum(np.floor(g * self.net.s_base_va + 1e-3), np.round(self.cap * self.net.s_base_va, 6))
        kw = np.round(watts / 1e3, 6)
        v = voltages(m, self.net)
        vl = leg_voltages_pu(self.net, v)
        return EnvelopeSet(
            method=method,
            direction=direction,
            guaranteed_kw=dict(zip(self.net.users, kw.tolist())),
            participant=dict(zip(self.net.users, self.part.tolist())),
            binding=self._binding(g, v),
            result=res,
            seconds=time.perf_counter() - t0,
            iterations=sum(r.iterations for r in runs),
            solves=len(runs),
            v_min_pu=float(vl.min()),
            v_max_pu=float(vl.max()),
            firm_kw=None if firm_kw is None else dict(firm_kw),
        )

    def _optimal(self) -> list[Result]:
        m, b = self.m, self.m.method
        free = [u for u in m.U if self.part[u]]
        b.obj = pyo.Objective(
            expr=sum(m.g[u] for u in free) - TIE_BREAK / 2 * sum(m.g[u] ** 2 for u in free), sense=pyo.maximize
        )
        return [self._solve()]

    def _fair(self) -> list[Result]:
        m, b = self.m, self.m.method
        free = [u for u in m.U if self.part[u]]
        b.t = pyo.Var(bounds=(0, None), initialize=0.0)
        b.obj = pyo.Objective(expr=b.t, sense=pyo.maximize)
        runs = []
        while free:
            cap_min = min(self.cap[u] for u in free)
            b.t.setub(float(cap_min))
            b.del_component("equal")
            b.equal = pyo.Constraint(free, rule=lambda b, u: m.g[u] == b.t)
            runs.append(self._solve())
            if not runs[-1].ok or pyo.value(b.t) < cap_min - 1e-7:
                break
            for u in [u for u in free if self.cap[u] <= cap_min + 1e-12]:
                m.g[u].fix(float(self.cap[u]))
                free.remove(u)
        if not runs:  # nobody participates: check the firm operating point
            b.t.fix(0.0)
            runs.append(self._solve())
        return runs

    def _proportional(self) -> list[Result]:
        m, b = self.m, self.m.method
        free = [u for u in m.U if self.part[u]]
        b.alpha = pyo.Var(bounds=(0, 1), initialize=0.25)
        b.obj = pyo.Objective(expr=b.alpha, sense=pyo.maximize)
        b.prop = pyo.Constraint(free, rule=lambda b, u: m.g[u] == b.alpha * float(self.cap[u]))
        return [self._solve()]

    def _propfair(self) -> list[Result]:
        m, b = self.m, self.m.method
        free = [u for u in m.U if self.part[u]]
        for u in free:
            m.g[u].setlb(1e-6)
        b.obj = pyo.Objective(expr=sum(float(self.cap[u]) * pyo.log(m.g[u]) for u in free), sense=pyo.maximize)
        try:
            return [self._solve()]
        finally:
            for u in free:
                m.g[u].setlb(0.0)

    def _maxmin(self) -> list[Result]:
        m, b = self.m, self.m.method
        free = [u for u in m.U if self.part[u]]
        level: dict[int, float] = {}  # frozen users and the floor they were frozen at
        b.t = pyo.Var(bounds=(0, None), initialize=0.0)
        runs = []
        while free:
            for name in ("floor", "kept", "obj"):
                b.del_component(name)
            b.floor = pyo.Constraint(free, rule=lambda b, u: m.g[u] >= b.t)
            # Frozen users keep their floor (less 0.01 W, so the feasible set keeps an interior);
            # the small penalty holds them at it, which keeps the optimum unique.
            b.kept = pyo.Constraint(list(level), rule=lambda b, u: m.g[u] >= level[u] - 1e-6)
            b.obj = pyo.Objective(
                expr=b.t - TIE_BREAK / 2 * sum((m.g[u] - level[u]) ** 2 for u in level), sense=pyo.maximize
            )
            runs.append(self._solve())
            if not runs[-1].ok:
                break
            t = pyo.value(b.t)
            duals = {u: abs(m.dual.get(b.floor[u], 0.0)) for u in free}
            scale = max(duals.values()) if duals else 0.0
            frozen = [u for u in free if pyo.value(m.g[u]) >= self.cap[u] - 1e-7
                      or (scale > 0 and duals[u] > 1e-4 * scale)]
            if not frozen:
                frozen = [u for u in free if pyo.value(m.g[u]) <= t + 1e-6]
            for u in frozen:
                level[u] = min(float(self.cap[u]), t)
                free.remove(u)
        if not runs:  # nobody participates: check the firm operating point
            b.t.fix(0.0)
            b.obj = pyo.Objective(expr=b.t, sense=pyo.maximize)
            runs.append(self._solve())
        return runs

    # ------------------------------------------------------------------ reporting
    def _binding(self, g: np.ndarray, v: np.ndarray) -> dict[str, str]:
        """Name the limit that stops each end-user short of its capacity."""
        m, net = self.m, self.net
        active: list[tuple[float, str, str, set | None]] = []  # (dual, label, kind, lines on path)
        limits = self.options.limits
        vl = leg_voltages_pu(net, v)
        lo, hi = net.voltage_bounds_pu(limits)
        lo_real, hi_real = net.voltage_bounds_pu(limits, margin=False)
        for k, (p, q, nom, label) in enumerate(net.vlegs):
            bus = label.split()[1]
            if vl[k] <= lo[k] + 1e-5:
                active.append((abs(m.dual.get(m.v_lower[k], 0.0)), f"voltage {label} {lo_real[k]:.2f} pu", "v", bus))
            elif vl[k] >= hi[k] - 1e-5:
                active.append((abs(m.dual.get(m.v_upper[k], 0.0)), f"voltage {label} {hi_real[k]:.2f} pu", "v", bus))
        vn_max = limits.v_neutral_max_v
        if vn_max is not None:
            for k, ((i, label), vn) in enumerate(zip(net.vneutral, neutral_voltages_v(net, v))):
                if vn >= vn_max - (limits.v_margin_pu + 1e-5) * net.v_base[i]:
                    active.append((abs(m.dual.get(m.v_neutral[k], 0.0)), f"neutral voltage {label} {vn_max:g} V",
                                   "v", label.split()[1]))
        lines = {line.name: line for line in self.model_feeder.lines}
        for c in m.C:
            i2 = pyo.value(m.ir[c]) ** 2 + pyo.value(m.ii[c]) ** 2
            if i2 >= (net.c_imax[c] * (1 - limits.i_margin)) ** 2 * (1 - 1e-5):
                line = lines[net.c_line[c]]
                active.append((abs(m.dual.get(m.i_line[c], 0.0)), f"ampacity line {line.rating_name}", "l", line.name))
        for k, (e, r, re, im, lim) in enumerate(m.element_terms):
            if pyo.value(re) ** 2 + pyo.value(im) ** 2 >= lim**2 * (1 - 1e-5):  # lim has the margin
                name = self.model_feeder.elements[e].name
                active.append((abs(m.dual.get(m.i_element[k], 0.0)), f"rating {name}", "e", None))
        out = {}
        for u, name in enumerate(net.users):
            if not self.part[u]:
                out[name] = "firm"
                continue
            if g[u] >= self.cap[u] - 1e-6:
                out[name] = "capacity"
                continue
            bus = self.model_feeder.end_user[name].bus
            mine = self.paths[bus]
            relevant = [a for a in active if a[2] == "e"
                        or (a[2] == "l" and a[3] in mine)
                        or (a[2] == "v" and mine & self.paths[a[3]])]
            pool = relevant or active
            out[name] = max(pool, key=lambda a: a[0])[1] if pool else "none (fairness rule)"
        return out

    def _infeasible_message(self, direction: Direction, firm_kw: dict[str, float] | None = None) -> str:
        """Say which limits the firm connections alone violate, if they do."""
        bad = self._firm_violations(direction, firm_kw)
        if bad:
            return (f"no {direction.value} envelope exists: with NFCA users at zero the firm connections alone "
                    f"violate {len(bad)} limit(s), first {bad[0]} (voltage limits "
                    f"{self.options.limits.describe()})")
        return f"no {direction.value} envelope exists: Ipopt found the limits infeasible"

    def _firm_violations(self, direction: Direction, firm_kw: dict[str, float] | None = None) -> list[str]:
        """The limits the firm connections alone violate, with every participant at zero (the
        model's publication margins included: then the model has no feasible point)."""
        net, limits = self.net, self.options.limits
        g0 = np.where(self.part, 0.0, self.firm)
        s = self._user_s(direction, g0, self._firm_pu(firm_kw))
        with np.errstate(all="ignore"):
            v = ZBusPowerFlow(net).solve(s, tol=1e-9, max_iter=1000)
        if v is None or not np.all(np.isfinite(v)):
            return ["the power flow of the firm connections alone does not converge (they are far beyond the feeder's limits)"]
        vl = leg_voltages_pu(net, v)
        lo, hi = net.voltage_bounds_pu(limits)
        bad = [f"voltage {net.vlegs[k][3]} at {x:.3f} pu" for k, x in enumerate(vl) if x < lo[k] or x > hi[k]]
        if limits.v_neutral_max_v is not None:
            bad += [f"neutral voltage {net.vneutral[k][1]} at {x:.1f} V"
                    for k, x in enumerate(neutral_voltages_v(net, v)) if x > limits.v_neutral_max_v]
        lines = {line.name: line for line in self.model_feeder.lines}
        for sl, z in zip(net.line_slices, net.line_z):
            vf = np.array([v[i] if i >= 0 else 0 for i in net.c_from[sl]])
            vt = np.array([v[i] if i >= 0 else 0 for i in net.c_to[sl]])
            i = np.abs(np.linalg.solve(z, vf - vt))
            if np.any(i > net.c_imax[sl] * (1 - limits.i_margin)):
                line = lines[net.c_line[sl.start]]
                bad.append(f"ampacity line {line.rating_name} at {100 * np.max(i / net.c_imax[sl]):.0f} %")
        for e, (ix, y, rated, imax) in enumerate(zip(net.el_idx, net.el_y, net.el_rated, net.el_imax)):
            ve = np.array([v[j] if j >= 0 else 0 for j in ix])
            for r, lim in zip(rated, imax):
                if abs(y[r] @ ve) > lim * (1 - limits.i_margin):
                    bad.append(f"rating {self.model_feeder.elements[e].name} at {100 * abs(y[r] @ ve) / lim:.0f} %")
        return bad
