"""Unbalanced three-phase OPF (UTOPF) in current-voltage rectangular form: the constraint families.

Each function adds one family to a Pyomo block that holds one operating point of the network (a
*scenario*: one vertex of an envelope box, one interval of a day). A problem is a short list of
calls (PowerModels style, `variable_` / `constraint_` naming):

    b = network_block(net, v0)               # node voltages, end-user legs, KCL
    constraint_limits(b, limit_map(net, limits), rows)

Currents are injections: KCL uses the nodal admittance of lines, transformers (their OpenDSS
primitive admittance), shunts and the source's impedance; a line's conductor current, limited
by its ampacity, is a linear function of the node voltages (`nfca.opf.network.LimitMap`).

With every end-user's power fixed, one block is a three-phase power flow; `nfca.opf.problem`
links the end-users' powers of many blocks to shared envelope variables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from nfca.errors import InfeasibleError, InputError, SolverError
from nfca.opf.network import LimitMap, PuNetwork, ZBusPowerFlow, source_injection
from nfca.solver import Result, solve_ipopt


def network_block(net: PuNetwork, v0: np.ndarray, s0: np.ndarray | None = None) -> pyo.Block:
    """One operating point of the network: node voltages, end-user powers and leg currents, with
    the end-users' power equations and KCL. Started at voltages `v0` (pu) with end-users at `s0`
    (pu, consumption +)."""
    b = pyo.Block(concrete=True)
    variable_bus_voltage(b, net)
    variable_end_user(b, net)
    constraint_end_user_power(b, net)
    constraint_kcl(b, net)
    initialise(b, net, v0, np.zeros(len(net.users)) if s0 is None else s0)
    return b


def _v(b: pyo.Block, i: int):
    return (0.0, 0.0) if i < 0 else (b.vr[i], b.vi[i])


def variable_bus_voltage(b: pyo.Block, net: PuNetwork) -> None:
    """Real and imaginary voltage (pu) of every conductor but earth."""
    b.N = pyo.RangeSet(0, net.n - 1)
    b.vr = pyo.Var(b.N, initialize=0.0)
    b.vi = pyo.Var(b.N, initialize=0.0)


def variable_end_user(b: pyo.Block, net: PuNetwork) -> None:
    """Per end-user power p, q (pu, consumption +) and per leg current (plus -> minus node)."""
    b.U = pyo.RangeSet(0, len(net.users) - 1)
    b.p = pyo.Var(b.U, initialize=0.0)
    b.q = pyo.Var(b.U, initialize=0.0)
    b.L = pyo.Set(initialize=[(u, k) for u, legs in enumerate(net.user_legs) for k in range(len(legs))], dimen=2)
    b.lr = pyo.Var(b.L, initialize=0.0)
    b.li = pyo.Var(b.L, initialize=0.0)


def constraint_end_user_power(b: pyo.Block, net: PuNetwork) -> None:
    """(V+ - V-) conj(I) = (p + jq) / legs, for every leg of every end-user (bilinear)."""

    def dv(b, u, k):
        p, q = net.user_legs[u][k]
        vp, vq = _v(b, p), _v(b, q)
        return vp[0] - vq[0], vp[1] - vq[1]

    def p_rule(b, u, k):
        er, ei = dv(b, u, k)
        return er * b.lr[u, k] + ei * b.li[u, k] == b.p[u] / len(net.user_legs[u])

    def q_rule(b, u, k):
        er, ei = dv(b, u, k)
        return ei * b.lr[u, k] - er * b.li[u, k] == b.q[u] / len(net.user_legs[u])

    b.user_p = pyo.Constraint(b.L, rule=p_rule)
    b.user_q = pyo.Constraint(b.L, rule=q_rule)


def constraint_kcl(b: pyo.Block, net: PuNetwork) -> None:
    """KCL at every conductor: the current into the network (Y V, lines, transformers, shunts and
    the source's impedance) plus the end-users' leg currents equals the source's Norton current."""
    y = net.y
    inj = source_injection(net)
    vr, vi = list(b.vr.values()), list(b.vi.values())
    legs: list[list] = [[] for _ in range(net.n)]
    for u, k in b.L:
        p, q = net.user_legs[u][k]
        if p >= 0:
            legs[p].append((1.0, u, k))
        if q >= 0:
            legs[q].append((-1.0, u, k))

    def row(i: int, imag: bool) -> LinearExpression:
        lo, hi = y.indptr[i], y.indptr[i + 1]
        coefs, xs = [], []
        for x, j in zip(y.data[lo:hi], y.indices[lo:hi]):
            g, bb = float(x.real), float(x.imag)
            coefs += [g, bb] if imag else [g, -bb]
            xs += [vi[j], vr[j]] if imag else [vr[j], vi[j]]
        for s, u, k in legs[i]:
            coefs.append(s)
            xs.append(b.li[u, k] if imag else b.lr[u, k])
        return LinearExpression(constant=0.0, linear_coefs=coefs, linear_vars=xs)

    b.kcl_re = pyo.Constraint(b.N, rule=lambda b, i: row(i, False) == float(inj[i].real))
    b.kcl_im = pyo.Constraint(b.N, rule=lambda b, i: row(i, True) == float(inj[i].imag))


def constraint_limits(b: pyo.Block, lim: LimitMap, rows) -> None:
    """lower^2 <= |Q_k|^2 <= upper^2 for the limited quantities `rows` of `lim` (customer
    voltages, neutral voltages, line and transformer currents as linear functions of the node
    voltages, with the model's margins inside the real limits). More rows can be added later
    (`add_limit_rows`): a scenario holds only the limits that can come near their bound there."""
    b.limit_rows = pyo.Set(initialize=[], ordered=True)
    b.lim_upper = pyo.Constraint(pyo.Any)
    b.lim_lower = pyo.Constraint(pyo.Any)
    add_limit_rows(b, lim, rows)


def add_limit_rows(b: pyo.Block, lim: LimitMap, rows) -> None:
    a = lim.a
    for k in rows:
        k = int(k)
        if k in b.limit_rows:
            continue
        lo, hi = a.indptr[k], a.indptr[k + 1]
        entries = [(complex(x), int(j)) for x, j in zip(a.data[lo:hi], a.indices[lo:hi])]
        re = LinearExpression(
            constant=0.0,
            linear_coefs=[c for x, _ in entries for c in (x.real, -x.imag)],
            linear_vars=[v for _, j in entries for v in (b.vr[j], b.vi[j])],
        )
        im = LinearExpression(
            constant=0.0,
            linear_coefs=[c for x, _ in entries for c in (x.real, x.imag)],
            linear_vars=[v for _, j in entries for v in (b.vi[j], b.vr[j])],
        )
        mag2 = re**2 + im**2
        b.limit_rows.add(k)
        b.lim_upper[k] = mag2 <= float(lim.upper[k]) ** 2
        if lim.lower[k] > 0:
            b.lim_lower[k] = mag2 >= float(lim.lower[k]) ** 2


# ----------------------------------------------------------------------------- values


def initialise(b: pyo.Block, net: PuNetwork, v: np.ndarray, s_user: np.ndarray) -> None:
    """Set every variable of a block from node voltages `v` and end-user powers `s_user` (pu):
    voltages, end-user powers and leg currents. A solve then starts from a state that depends
    only on these, whatever was solved before. (Values are not checked against bounds: a start
    may lie outside them, and a day sets every block's values hundreds of times.)"""
    for x, vr, vi in zip(np.asarray(v).tolist(), b.vr.values(), b.vi.values()):
        vr.set_value(x.real, skip_validation=True)
        vi.set_value(x.imag, skip_validation=True)
    ve = np.append(v, 0.0)  # index -1 (earth) reads 0
    for u, s in enumerate(s_user):
        if not b.p[u].fixed:
            b.p[u].set_value(float(s.real))
        if not b.q[u].fixed:
            b.q[u].set_value(float(s.imag))
    for u, k in b.L:
        p, q = net.user_legs[u][k]
        dv = ve[p] - ve[q]
        i = np.conj(s_user[u] / len(net.user_legs[u]) / dv) if abs(dv) > 0 else 0.0
        b.lr[u, k].set_value(float(np.real(i)), skip_validation=True)
        b.li[u, k].set_value(float(np.imag(i)), skip_validation=True)


def voltages(b: pyo.Block, net: PuNetwork) -> np.ndarray:
    """Solved node voltages (pu, complex)."""
    vr = np.fromiter((v.value for v in b.vr.values()), float, net.n)
    return vr + 1j * np.fromiter((v.value for v in b.vi.values()), float, net.n)


def user_powers(b: pyo.Block, net: PuNetwork) -> np.ndarray:
    """Solved end-user powers (pu, complex, consumption +)."""
    return np.array([pyo.value(b.p[u]) + 1j * pyo.value(b.q[u]) for u in range(len(net.users))])


# ----------------------------------------------------------------------------- power flow mode


@dataclass(frozen=True)
class PowerFlowResult:
    voltages_v: dict[tuple[str, int], complex]
    v_pu: np.ndarray
    result: Result


def solve_powerflow(net: PuNetwork, loads_kw_kvar: dict[str, tuple[float, float]] | None = None) -> PowerFlowResult:
    """Three-phase power flow: one network block with every end-user's power fixed."""
    feeder = net.feeder
    loads = {k.lower(): v for k, v in (loads_kw_kvar or {}).items()}
    unknown = sorted(set(loads) - set(net.users))
    if unknown:
        raise InputError(f"Load.{unknown[0]} is not an end-user of feeder {feeder.name}")
    s_user = np.zeros(len(net.users), dtype=complex)
    for k, name in enumerate(net.users):
        u = feeder.end_user[name]
        p, q = loads.get(name, (u.p_kw, u.q_kvar))
        s_user[k] = complex(p, q) * 1e3 / net.s_base_va
    m = pyo.ConcreteModel(name=feeder.name)
    m.net = network_block(net, ZBusPowerFlow(net).solve(np.zeros(len(net.users))))
    for k, s in enumerate(s_user):
        m.net.p[k].fix(float(s.real))
        m.net.q[k].fix(float(s.imag))
    initialise(m.net, net, voltages(m.net, net), s_user)
    m.obj = pyo.Objective(expr=0.0)
    res = solve_ipopt(m, retry=False)
    if res.status == "infeasible":
        raise InfeasibleError(f"the power flow has no solution at these loads ({res.message})")
    if not res.ok:
        raise SolverError(f"Ipopt failed on the power flow: {res.status} ({res.message})")
    v = voltages(m.net, net)
    return PowerFlowResult({bn: v[i] * net.v_base[i] for i, bn in enumerate(net.nodes)}, v, res)
