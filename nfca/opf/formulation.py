"""Unbalanced three-phase OPF (UTOPF) in current-voltage rectangular form, built with Pyomo.

The *mathematical* model: per unit on one power base, integer-indexed conductors. A problem is
a short list of constraint families (PowerModels style):

    net = per_unit(feeder)
    m = build_model(net)       # variables, Ohm's law, end-user injections, KCL
    add_voltage_limits(m, net, 0.9, 1.1); add_thermal_limits(m, net)

With every end-user's power fixed the model is a three-phase power flow; `nfca.opf.problem` adds
the guaranteed-power variables and objectives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from nfca.errors import InfeasibleError, InputError, SolverError
from nfca.solver import Result, solve_ipopt
from nfca.model.limits import Limits
from nfca.model.network import EARTH, PHASES, Feeder, leg_label, leg_nominal_pu

S_BASE_KVA = 10.0  # per-phase power base; end-user powers are then O(1)


@dataclass(frozen=True, eq=False)
class PuNetwork:
    """A `Feeder` in per unit with integer conductor indices (-1 stands for earth)."""

    feeder: Feeder
    s_base_va: float
    nodes: tuple[tuple[str, int], ...]
    v_base: np.ndarray  # V, per node
    # line conductors, flattened
    c_line: tuple[str, ...]  # line name per conductor
    c_from: np.ndarray
    c_to: np.ndarray
    c_imax: np.ndarray  # pu of the from-node current base
    line_slices: tuple[slice, ...]
    line_z: tuple[np.ndarray, ...]
    line_yhalf: tuple[np.ndarray, ...]
    # linear elements (transformers, shunts)
    el_idx: tuple[np.ndarray, ...]
    el_y: tuple[np.ndarray, ...]
    el_rated: tuple[tuple[int, ...], ...]
    el_imax: tuple[np.ndarray, ...]
    # source (Norton)
    src_idx: np.ndarray
    src_y: np.ndarray
    src_e: np.ndarray
    # end-users
    users: tuple[str, ...]
    user_legs: tuple[tuple[tuple[int, int], ...], ...]
    user_cap: np.ndarray  # pu of s_base
    # customer voltages limited: unique (plus, minus, nominal_pu, label)
    vlegs: tuple[tuple[int, int, float, str], ...]
    # neutral conductors (node >= 4) end-users are connected to: (node index, label)
    vneutral: tuple[tuple[int, str], ...] = ()
    vleg_nominal_v: np.ndarray = field(default_factory=lambda: np.zeros(0))  # V, per limited voltage

    def voltage_bounds_pu(self, limits: Limits, margin: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper limits of every limited customer voltage (pu of its nominal), with the
        model's margin inside them unless `margin` is False."""
        lo, hi = limits.voltage_bounds_pu(self.vleg_nominal_v)
        d = limits.v_margin_pu if margin else 0.0
        return lo + d, hi - d

    def neutral_max_pu(self, limits: Limits, margin: bool = True) -> np.ndarray:
        """Upper limit of every limited neutral-to-earth voltage (pu of its node's base)."""
        if limits.v_neutral_max_v is None:
            return np.full(len(self.vneutral), np.inf)
        d = limits.v_margin_pu if margin else 0.0
        return np.array([limits.v_neutral_max_v / self.v_base[i] - d for i, _ in self.vneutral])

    @property
    def n(self) -> int:
        return len(self.nodes)


def per_unit(feeder: Feeder, s_base_kva: float = S_BASE_KVA, source_pu: float | None = None) -> PuNetwork:
    """Map a Feeder to per unit on `s_base_kva` (per phase) and index its conductors.

    `source_pu` overrides the source's open-circuit voltage (per unit of its base).
    """
    s_base = s_base_kva * 1e3
    nodes = tuple((b, n) for b, bus in feeder.buses.items() for n in bus.nodes if n != EARTH)
    index = {bn: i for i, bn in enumerate(nodes)}
    v_base = np.array([feeder.buses[b].kv_base_ln * 1e3 for b, _ in nodes])

    def idx(bus: str, node: int) -> int:
        return -1 if node == EARTH else index[(bus, node)]

    c_line, c_from, c_to, c_imax, slices, zs, yhs = [], [], [], [], [], [], []
    for line in feeder.lines:
        start = len(c_from)
        vb = feeder.buses[line.bus_from].kv_base_ln * 1e3
        zbase = vb**2 / s_base
        for nf, nt in zip(line.nodes_from, line.nodes_to):
            c_line.append(line.name)
            c_from.append(idx(line.bus_from, nf))
            c_to.append(idx(line.bus_to, nt))
            c_imax.append(line.ampacity_a / (s_base / vb))
        slices.append(slice(start, len(c_from)))
        zs.append(line.z_ohm / zbase)
        yhs.append(line.y_shunt_s * zbase / 2)

    el_idx, el_y, el_rated, el_imax = [], [], [], []
    for el in feeder.elements:
        ix = np.array([idx(b, n) for b, n in el.terminals])
        vb = np.array([feeder.buses[b].kv_base_ln * 1e3 for b, _ in el.terminals])
        el_idx.append(ix)
        el_y.append(el.y_s * np.outer(vb, vb) / s_base)
        el_rated.append(tuple(r for r in el.rated_terminals if ix[r] >= 0))
        el_imax.append(np.array([el.rating_a / (s_base / vb[r]) for r in el.rated_terminals if ix[r] >= 0]))

    src = feeder.source
    vb_src = feeder.buses[src.bus].kv_base_ln * 1e3
    src_idx = np.array([idx(src.bus, n) for n in src.nodes])

    users, legs, caps = [], [], []
    vlegs: dict[tuple[int, int], tuple[int, int, float, str]] = {}
    vneutral: dict[int, tuple[int, str]] = {}
    for u in feeder.end_users:
        users.append(u.name)
        ulegs = tuple((idx(u.bus, p), idx(u.bus, q)) for p, q in u.legs)
        legs.append(ulegs)
        caps.append(u.capacity_kva * 1e3 / s_base)
        for (p, q), leg in zip(ulegs, u.legs):
            key = (min(p, q), max(p, q))
            vlegs.setdefault(key, (p, q, leg_nominal_pu(leg), f"bus {u.bus} {_leg_word(leg)} {leg_label(leg)}"))
            for i, node in zip((p, q), leg):
                if node not in PHASES and node != EARTH:
                    vneutral.setdefault(i, (i, f"bus {u.bus} node {node}"))

    return PuNetwork(
        feeder=feeder, s_base_va=s_base, nodes=nodes, v_base=v_base,
        c_line=tuple(c_line), c_from=np.array(c_from, dtype=int), c_to=np.array(c_to, dtype=int),
        c_imax=np.array(c_imax), line_slices=tuple(slices), line_z=tuple(zs), line_yhalf=tuple(yhs),
        el_idx=tuple(el_idx), el_y=tuple(el_y), el_rated=tuple(el_rated), el_imax=tuple(el_imax),
        src_idx=src_idx, src_y=src.y_s * vb_src**2 / s_base, src_e=src.e_v / vb_src * (1.0 if source_pu is None else source_pu / src.pu),
        users=tuple(users), user_legs=tuple(legs), user_cap=np.array(caps), vlegs=tuple(vlegs.values()),
        vneutral=tuple(vneutral.values()),
        vleg_nominal_v=np.array([v_base[p if p >= 0 else q] * nom for p, q, nom, _ in vlegs.values()]),
    )


def _leg_word(leg: tuple[int, int]) -> str:
    return "phase" if leg[1] not in PHASES else "phases"  # to earth or to a neutral conductor


# ----------------------------------------------------------------------------- linear algebra


def admittance_matrix(net: PuNetwork) -> sp.csc_matrix:
    """Nodal admittance (pu) of lines, linear elements and the source impedance."""
    rows, cols, vals = [], [], []

    def stamp(ix: np.ndarray, y: np.ndarray) -> None:
        for a, i in enumerate(ix):
            if i < 0:
                continue
            for b, j in enumerate(ix):
                if j >= 0 and y[a, b] != 0:
                    rows.append(i), cols.append(j), vals.append(y[a, b])

    for sl, z, yh in zip(net.line_slices, net.line_z, net.line_yhalf):
        ys = np.linalg.inv(z)
        ix = np.concatenate([net.c_from[sl], net.c_to[sl]])
        stamp(ix, np.block([[ys + yh, -ys], [-ys, ys + yh]]))
    for ix, y in zip(net.el_idx, net.el_y):
        stamp(ix, y)
    stamp(net.src_idx, net.src_y)
    return sp.csc_matrix((vals, (rows, cols)), shape=(net.n, net.n), dtype=complex)


class ZBusPowerFlow:
    """Power flow by Z-bus (fixed-point) iteration on one factorised admittance matrix.

    Cheap and exact at convergence: a starting point for Ipopt, and a quick test of a fixed
    operating point. Powers are per unit, consumption positive.
    """

    def __init__(self, net: PuNetwork):
        self.net = net
        self.lu = spla.splu(admittance_matrix(net))
        self.i_src = np.zeros(net.n, dtype=complex)
        np.add.at(self.i_src, net.src_idx, net.src_y @ net.src_e)
        legs = [(u, p, q, len(ls)) for u, ls in enumerate(net.user_legs) for p, q in ls]
        self.leg_u, self.leg_p, self.leg_q, self.leg_n = (np.array(x) for x in zip(*legs))

    def solve(self, s_user: np.ndarray, tol: float = 1e-11, max_iter: int = 200) -> np.ndarray | None:
        """Node voltages (pu); None if the iteration does not converge to `tol` (pu) in time."""
        v = self.lu.solve(self.i_src)
        if not np.any(s_user):
            return v  # the exact no-load solution
        s_leg = s_user[self.leg_u] / self.leg_n
        for _ in range(max_iter):
            ve = np.append(v, 0.0)  # index -1 (earth) reads 0
            dv = ve[self.leg_p] - ve[self.leg_q]
            if np.any(np.abs(dv) < 1e-3):
                return None
            i = np.conj(s_leg / dv)
            i_load = np.zeros(self.net.n + 1, dtype=complex)
            np.add.at(i_load, self.leg_p, i)
            np.add.at(i_load, self.leg_q, -i)
            v_new = self.lu.solve(self.i_src - i_load[:-1])
            if np.max(np.abs(v_new - v)) < tol:
                return v_new
            v = v_new
        return None


def fixed_point_voltages(net: PuNetwork, s_user: np.ndarray) -> np.ndarray:
    """Node voltages (pu) for end-user powers `s_user`: a starting point for Ipopt.

    Where the iteration does not converge (a point beyond the feeder's limits) the no-load
    voltages are returned, which are as good a start as any.
    """
    pf = ZBusPowerFlow(net)
    v = pf.solve(s_user, tol=1e-9, max_iter=50)
    return pf.solve(np.zeros(len(net.users))) if v is None else v


# ----------------------------------------------------------------------------- Pyomo model


def build_model(net: PuNetwork, v_init: np.ndarray | None = None) -> pyo.ConcreteModel:
    """Variables, Ohm's law, end-user injections and KCL: a three-phase power flow."""
    m = pyo.ConcreteModel(name=net.feeder.name)
    v0 = fixed_point_voltages(net, np.zeros(len(net.users))) if v_init is None else v_init
    add_voltage_variables(m, net, v0)
    add_line_current_variables(m, net, v0)
    constraint_line_ohms_law(m, net)
    add_end_user_variables(m, net, v0)
    constraint_end_user_power(m, net)
    constraint_kcl(m, net)
    return m


def _v(m: pyo.ConcreteModel, i: int):
    return (0.0, 0.0) if i < 0 else (m.vr[i], m.vi[i])


def add_voltage_variables(m: pyo.ConcreteModel, net: PuNetwork, v0: np.ndarray) -> None:
    m.N = pyo.RangeSet(0, net.n - 1)
    m.vr = pyo.Var(m.N, initialize=lambda m, i: float(v0[i].real))
    m.vi = pyo.Var(m.N, initialize=lambda m, i: float(v0[i].imag))


def add_line_current_variables(m: pyo.ConcreteModel, net: PuNetwork, v0: np.ndarray) -> None:
    i0 = np.zeros(len(net.c_from), dtype=complex)
    for sl, z in zip(net.line_slices, net.line_z):
        vf = np.array([v0[i] if i >= 0 else 0 for i in net.c_from[sl]])
        vt = np.array([v0[i] if i >= 0 else 0 for i in net.c_to[sl]])
        i0[sl] = np.linalg.solve(z, vf - vt)
    m.C = pyo.RangeSet(0, len(net.c_from) - 1)
    m.ir = pyo.Var(m.C, initialize=lambda m, c: float(i0[c].real))
    m.ii = pyo.Var(m.C, initialize=lambda m, c: float(i0[c].imag))


def constraint_line_ohms_law(m: pyo.ConcreteModel, net: PuNetwork) -> None:
    """V_from - V_to = Z I for every line conductor (linear)."""
    rows = {}
    for sl, z in zip(net.line_slices, net.line_z):
        cs = range(sl.start, sl.stop)
        for k, c in enumerate(cs):
            rows[c] = [(c2, z[k, k2]) for k2, c2 in enumerate(cs)]

    def re(m, c):
        vf, vt = _v(m, net.c_from[c]), _v(m, net.c_to[c])
        return vf[0] - vt[0] == sum(zz.real * m.ir[c2] - zz.imag * m.ii[c2] for c2, zz in rows[c])

    def im(m, c):
        vf, vt = _v(m, net.c_from[c]), _v(m, net.c_to[c])
        return vf[1] - vt[1] == sum(zz.real * m.ii[c2] + zz.imag * m.ir[c2] for c2, zz in rows[c])

    m.ohm_re = pyo.Constraint(m.C, rule=re)
    m.ohm_im = pyo.Constraint(m.C, rule=im)


def add_end_user_variables(m: pyo.ConcreteModel, net: PuNetwork, v0: np.ndarray) -> None:
    """Per end-user power p, q (pu, consumption +) and per leg current (plus -> minus node)."""
    m.U = pyo.RangeSet(0, len(net.users) - 1)
    m.p = pyo.Var(m.U, initialize=0.0)
    m.q = pyo.Var(m.U, initialize=0.0)
    m.L = pyo.Set(initialize=[(u, k) for u, legs in enumerate(net.user_legs) for k in range(len(legs))], dimen=2)
    m.lr = pyo.Var(m.L, initialize=0.0)
    m.li = pyo.Var(m.L, initialize=0.0)


def constraint_end_user_power(m: pyo.ConcreteModel, net: PuNetwork) -> None:
    """(V+ - V-) conj(I) = (p + jq) / legs, for every leg of every end-user (bilinear)."""

    def dv(m, u, k):
        p, q = net.user_legs[u][k]
        vp, vq = _v(m, p), _v(m, q)
        return vp[0] - vq[0], vp[1] - vq[1]

    def p_rule(m, u, k):
        er, ei = dv(m, u, k)
        return er * m.lr[u, k] + ei * m.li[u, k] == m.p[u] / len(net.user_legs[u])

    def q_rule(m, u, k):
        er, ei = dv(m, u, k)
        return ei * m.lr[u, k] - er * m.li[u, k] == m.q[u] / len(net.user_legs[u])

    m.user_p = pyo.Constraint(m.L, rule=p_rule)
    m.user_q = pyo.Constraint(m.L, rule=q_rule)


def constraint_kcl(m: pyo.ConcreteModel, net: PuNetwork) -> None:
    """Currents leaving each conductor into lines, elements and end-users equal the source's."""
    out_re: list[list] = [[] for _ in range(net.n)]
    out_im: list[list] = [[] for _ in range(net.n)]

    def add_y(ix: np.ndarray, y: np.ndarray, sign: float = 1.0) -> None:
        for a, i in enumerate(ix):
            if i < 0:
                continue
            for b, j in enumerate(ix):
                if j < 0 or y[a, b] == 0:
                    continue
                g, bb = sign * y[a, b].real, sign * y[a, b].imag
                out_re[i].append(g * m.vr[j] - bb * m.vi[j])
                out_im[i].append(g * m.vi[j] + bb * m.vr[j])

    for c in range(len(net.c_from)):
        f, t = net.c_from[c], net.c_to[c]
        if f >= 0:
            out_re[f].append(m.ir[c]), out_im[f].append(m.ii[c])
        if t >= 0:
            out_re[t].append(-m.ir[c]), out_im[t].append(-m.ii[c])
    for sl, yh in zip(net.line_slices, net.line_yhalf):
        if np.any(yh != 0):
            add_y(net.c_from[sl], yh)
            add_y(net.c_to[sl], yh)
    for ix, y in zip(net.el_idx, net.el_y):
        add_y(ix, y)
    add_y(net.src_idx, net.src_y)  # Norton: I_src = Y E - Y V
    i_norton = net.src_y @ net.src_e
    inj = np.zeros(net.n, dtype=complex)
    np.add.at(inj, net.src_idx, i_norton)
    for (u, k) in m.L:
        p, q = net.user_legs[u][k]
        if p >= 0:
            out_re[p].append(m.lr[u, k]), out_im[p].append(m.li[u, k])
        if q >= 0:
            out_re[q].append(-m.lr[u, k]), out_im[q].append(-m.li[u, k])

    m.kcl_re = pyo.Constraint(m.N, rule=lambda m, i: pyo.quicksum(out_re[i]) == float(inj[i].real))
    m.kcl_im = pyo.Constraint(m.N, rule=lambda m, i: pyo.quicksum(out_im[i]) == float(inj[i].imag))


def add_voltage_limits(m: pyo.ConcreteModel, net: PuNetwork, limits: Limits) -> None:
    """lower^2 <= |V+ - V-|^2 / nominal^2 <= upper^2 on every voltage an end-user sees (with the
    model's margin inside the limits, so published values rounded down still verify)."""
    lo, hi = net.voltage_bounds_pu(limits)
    m.VL = pyo.RangeSet(0, len(net.vlegs) - 1)

    def mag2(m, k):
        p, q, nom, _ = net.vlegs[k]
        vp, vq = _v(m, p), _v(m, q)
        return ((vp[0] - vq[0]) ** 2 + (vp[1] - vq[1]) ** 2) / nom**2

    m.v_lower = pyo.Constraint(m.VL, rule=lambda m, k: mag2(m, k) >= float(lo[k]) ** 2)
    m.v_upper = pyo.Constraint(m.VL, rule=lambda m, k: mag2(m, k) <= float(hi[k]) ** 2)


def add_neutral_voltage_limits(m: pyo.ConcreteModel, net: PuNetwork, limits: Limits) -> None:
    """|V_n| <= the neutral limit (volts, to earth) on every neutral conductor an end-user is connected to."""
    m.NL = pyo.RangeSet(0, len(net.vneutral) - 1)
    lim = net.neutral_max_pu(limits)
    if min(lim, default=1.0) <= 0:
        raise InputError(f"the neutral voltage limit {limits.v_neutral_max_v} V is too small to be held "
                         f"(margin {limits.v_margin_pu} pu)")
    m.v_neutral = pyo.Constraint(
        m.NL, rule=lambda m, k: m.vr[net.vneutral[k][0]] ** 2 + m.vi[net.vneutral[k][0]] ** 2 <= float(lim[k]) ** 2
    )


def neutral_voltages_v(net: PuNetwork, v: np.ndarray) -> np.ndarray:
    """Neutral-to-earth voltage (V) of every neutral conductor an end-user is connected to."""
    return np.array([abs(v[i]) * net.v_base[i] for i, _ in net.vneutral])


def add_thermal_limits(m: pyo.ConcreteModel, net: PuNetwork, limits: Limits) -> None:
    """|I|^2 <= Imax^2 on every line conductor and every rated transformer terminal (less the margin)."""
    keep = 1 - limits.i_margin
    imax = net.c_imax * keep
    m.i_line = pyo.Constraint(m.C, rule=lambda m, c: m.ir[c] ** 2 + m.ii[c] ** 2 <= float(imax[c]) ** 2)
    terms = []
    for e, (ix, y, rated, imax) in enumerate(zip(net.el_idx, net.el_y, net.el_rated, net.el_imax)):
        for r, lim in zip(rated, imax):
            re = sum(y[r, b].real * m.vr[j] - y[r, b].imag * m.vi[j] for b, j in enumerate(ix) if j >= 0)
            im = sum(y[r, b].real * m.vi[j] + y[r, b].imag * m.vr[j] for b, j in enumerate(ix) if j >= 0)
            terms.append((e, r, re, im, float(lim) * keep))
    m.ET = pyo.RangeSet(0, len(terms) - 1)
    m.element_terms = terms
    m.i_element = pyo.Constraint(m.ET, rule=lambda m, k: terms[k][2] ** 2 + terms[k][3] ** 2 <= terms[k][4] ** 2)


# ----------------------------------------------------------------------------- solution values


def voltages(m: pyo.ConcreteModel, net: PuNetwork) -> np.ndarray:
    """Solved node voltages (pu, complex)."""
    return np.array([pyo.value(m.vr[i]) + 1j * pyo.value(m.vi[i]) for i in range(net.n)])


def set_voltages(m: pyo.ConcreteModel, v: np.ndarray) -> None:
    for i, x in enumerate(v):
        m.vr[i].set_value(float(x.real))
        m.vi[i].set_value(float(x.imag))


# ----------------------------------------------------------------------------- power flow mode


@dataclass(frozen=True)
class PowerFlowResult:
    voltages_v: dict[tuple[str, int], complex]
    v_pu: np.ndarray
    result: Result


def solve_powerflow(net: PuNetwork, loads_kw_kvar: dict[str, tuple[float, float]] | None = None) -> PowerFlowResult:
    """Three-phase power flow: the UTOPF model with every end-user's power fixed."""
    feeder = net.feeder
    loads = {k.lower(): v for k, v in (loads_kw_kvar or {}).items()}
    unknown = sorted(set(loads) - set(net.users))
    if unknown:
        raise InputError(f"Load.{unknown[0]} is not an end-user of feeder {feeder.name}")
    s = {}
    for name in net.users:
        u = feeder.end_user[name]
        p, q = loads.get(name, (u.p_kw, u.q_kvar))
        s[name] = (p * 1e3 / net.s_base_va, q * 1e3 / net.s_base_va)
    s_user = np.array([complex(*s[n]) for n in net.users])
    m = build_model(net, fixed_point_voltages(net, np.zeros(len(net.users))))
    for k, name in enumerate(net.users):
        m.p[k].fix(s[name][0])
        m.q[k].fix(s[name][1])
    init_leg_currents(m, net, voltages(m, net), s_user)
    res = solve_ipopt(m)
    if res.status == "infeasible":
        raise InfeasibleError(f"the power flow has no solution at these loads ({res.message})")
    if not res.ok:
        raise SolverError(f"Ipopt failed on the power flow: {res.status} ({res.message})")
    v = voltages(m, net)
    return PowerFlowResult({bn: v[i] * net.v_base[i] for i, bn in enumerate(net.nodes)}, v, res)


def init_leg_currents(m: pyo.ConcreteModel, net: PuNetwork, v: np.ndarray, s_user: np.ndarray) -> None:
    for (u, k) in m.L:
        p, q = net.user_legs[u][k]
        dv = (v[p] if p >= 0 else 0) - (v[q] if q >= 0 else 0)
        i = np.conj(s_user[u] / len(net.user_legs[u]) / dv) if abs(dv) > 0 else 0
        m.lr[u, k].set_value(float(np.real(i)))
        m.li[u, k].set_value(float(np.imag(i)))


def leg_voltages_pu(net: PuNetwork, v: np.ndarray) -> np.ndarray:
    """Magnitude of every limited customer voltage, per unit of its nominal."""
    out = []
    for p, q, nom, _ in net.vlegs:
        dv = (v[p] if p >= 0 else 0) - (v[q] if q >= 0 else 0)
        out.append(abs(dv) / nom)
    return np.array(out)

