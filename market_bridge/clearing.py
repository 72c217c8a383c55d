"""Constraint families for market clearings, composed into Pyomo models by ``clear_layer``.

A *layer* is one market clearing: a set of bids that may be activated (each up to a cap), the
activations already decided by earlier layers (``prior``), and a choice of constraint families:

* ``constraint_balance``         system balance: up minus down activation = remaining imbalance,
                                 with the value-of-lost-load bids as the last resort
* ``constraint_transmission``    PTDF line limits of the transmission network
* ``constraint_distribution``    LinDistFlow with line and voltage limits (hard, relaxed or soft)
* ``constraint_interface``       a DSO market whose net activation (so interface flow) is set

Activations are dicts ``bid_id -> MW`` and always add up over layers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from market_bridge.cases import Bid, Case
from market_bridge.networks import DistFlowState, Distribution, lindistflow
from market_bridge.solver import Solver
from nfca.solver import Result

Activation = dict[str, float]


# ------------------------------------------------------------------ activations -> physics


def net_activation(bids: Iterable[Bid], act: Mapping[str, float]) -> float:
    """Sum of up minus down activation (MW) of ``bids``."""
    return float(sum(b.sign * act.get(b.bid_id, 0.0) for b in bids))


def distribution_injection(case: Case, dname: str, act: Mapping[str, float]) -> np.ndarray:
    """Nodal extra injection (MW) in network ``dname`` caused by activated bids."""
    net = case.distributions[dname]
    inj = np.zeros(net.n_nodes)
    for b in case.bids_in(dname):
        inj[net.node(b.bus)] += b.sign * act.get(b.bid_id, 0.0)
    return inj


def distribution_state(case: Case, dname: str, act: Mapping[str, float]) -> DistFlowState:
    """LinDistFlow power flow of network ``dname`` with the activations applied."""
    return lindistflow(case.distributions[dname], distribution_injection(case, dname, act))


def transmission_coefficient(case: Case, bid: Bid) -> np.ndarray:
    """Transmission nodal injection (MW) of 1 MW of ``bid``: at its bus, at its network's
    interface bus, or (value of lost load) where the imbalance sits."""
    t = case.transmission
    if bid.kind == "voll":
        return bid.sign * case.imbalance_share
    col = np.zeros(len(t.bus_ids))
    col[t.index(bid.bus if bid.area == "T" else case.interface_bus[bid.area])] = bid.sign
    return col


def transmission_injection(case: Case, act: Mapping[str, float]) -> np.ndarray:
    """Transmission nodal net injection: base state plus every activated bid."""
    inj = case.base_injection_mw.copy()
    for b in list(case.bids) + case.voll_bids:
        if act.get(b.bid_id, 0.0):
            inj += act[b.bid_id] * transmission_coefficient(case, b)
    return inj


def add_activations(*acts: Mapping[str, float]) -> Activation:
    """Sum activations of several layers."""
    out: Activation = {}
    for act in acts:
        for k, v in act.items():
            out[k] = out.get(k, 0.0) + v
    return {k: v for k, v in out.items() if v > 1e-9}


# ------------------------------------------------------------------ limits


@dataclass(frozen=True)
class DistLimits:
    """Bounds on LinDistFlow variables: branch active flow (MW) and squared voltage."""

    p_max: np.ndarray
    p_min: np.ndarray
    w_max: np.ndarray
    w_min: np.ndarray


def grid_limits(net: Distribution) -> DistLimits:
    """The network's own line and voltage limits."""
    p = net.p_limit_mw
    n = net.n_nodes
    return DistLimits(p, -p, np.full(n, net.vmax_pu**2), np.full(n, net.vmin_pu**2))


def relaxed_limits(net: Distribution, state: DistFlowState) -> DistLimits:
    """Limits widened to contain ``state``: activations may not add violations to existing ones."""
    lim = grid_limits(net)
    w = state.v_pu**2
    return DistLimits(
        np.maximum(lim.p_max, state.p_mw),
        np.minimum(lim.p_min, state.p_mw),
        np.maximum(lim.w_max, w),
        np.minimum(lim.w_min, w),
    )


# ------------------------------------------------------------------ constraint families


def new_market(bids: Sequence[Bid], cap: Mapping[str, float]) -> pyo.ConcreteModel:
    """A model with one activation variable per bid, ``0 <= a_b <= cap_b``."""
    m = pyo.ConcreteModel()
    m.bid_list = list(bids)
    m.B = pyo.Set(initialize=[b.bid_id for b in bids], ordered=True)
    m.a = pyo.Var(m.B, bounds=lambda _m, i: (0.0, max(0.0, float(cap[i]))))
    m.penalty_terms = []
    return m


def _bids_where(m: pyo.ConcreteModel, area: str) -> list[Bid]:
    return [b for b in m.bid_list if b.area == area]


def linear(coefs: Sequence[float], variables: Sequence, constant: float = 0.0) -> LinearExpression:
    """``constant + sum(coef * var)`` as one Pyomo linear expression (fast to build and hand over)."""
    return LinearExpression(
        constant=float(constant), linear_coefs=[float(c) for c in coefs], linear_vars=list(variables)
    )


def net_expression(m: pyo.ConcreteModel, bids: Sequence[Bid]) -> LinearExpression:
    """Up minus down activation of ``bids`` in model ``m``."""
    return linear([b.sign for b in bids], [m.a[b.bid_id] for b in bids])


def constraint_balance(m: pyo.ConcreteModel, need_mw: float) -> None:
    """Up minus down activation of this layer equals the remaining system imbalance."""
    m.balance = pyo.Constraint(expr=net_expression(m, m.bid_list) == need_mw)


def constraint_transmission(m: pyo.ConcreteModel, case: Case, fixed_injection: np.ndarray) -> None:
    """PTDF line limits. The bids of one distribution network act at its interface bus, so they
    enter through one net-injection variable per network (fewer terms per line)."""
    t = case.transmission
    terms: dict[int, list] = {line: [] for line in range(len(t.lines))}
    own = [b for b in m.bid_list if b.area == "T"]
    for b in own:
        col = (t.ptdf @ transmission_coefficient(case, b)).tolist()
        for line, c in enumerate(col):
            if abs(c) > 1e-12:
                terms[line].append((c, m.a[b.bid_id]))
    areas = sorted({b.area for b in m.bid_list if b.area != "T"})
    m.iface_net = pyo.Var(areas)
    m.iface_def = pyo.Constraint(areas, rule=lambda _m, d: m.iface_net[d] == net_expression(m, _bids_where(m, d)))
    for d in areas:
        for line, c in enumerate(t.ptdf[:, t.index(case.interface_bus[d])].tolist()):
            if abs(c) > 1e-12:
                terms[line].append((c, m.iface_net[d]))
    add_line_limits(m, case, t.flows(fixed_injection), terms)


def add_line_limits(
    m: pyo.ConcreteModel, case: Case, flow0: np.ndarray, terms: Mapping[int, Sequence[tuple[float, object]]]
) -> None:
    """``-limit <= flow0 + sum(coef * var) <= limit`` per transmission line. A line no variable
    reaches is skipped (its flow is fixed; the caller's base state must respect it)."""
    t = case.transmission
    flow0, limit = flow0.tolist(), t.limit_mw.tolist()

    def rule(_m, line, upper):
        if not terms[line]:
            return pyo.Constraint.Skip
        expr = linear([c for c, _ in terms[line]], [v for _, v in terms[line]], flow0[line])
        return expr <= limit[line] if upper else expr >= -limit[line]

    m.T_lines = pyo.RangeSet(0, len(t.lines) - 1)
    m.t_max = pyo.Constraint(m.T_lines, rule=lambda _m, line: rule(_m, line, True))
    m.t_min = pyo.Constraint(m.T_lines, rule=lambda _m, line: rule(_m, line, False))


def constraint_distribution(
    m: pyo.ConcreteModel,
    case: Case,
    dname: str,
    fixed_injection: np.ndarray,
    limits: DistLimits,
    soft: bool = False,
    penalty: float = 0.0,
    bids: Sequence[Bid] | None = None,
    var=None,
    tag: str = "",
) -> pyo.Block:
    """LinDistFlow line and voltage limits of network ``dname`` on the bids' activations, as a
    block of ``m``.

    LinDistFlow is linear, so each branch flow and squared node voltage is its value in the state
    ``fixed_injection`` leaves plus a sensitivity times each activation: a bid at node i changes
    the flow of every branch above i by ``-sign`` MW and ``v_j^2`` by ``sign * w_sensitivity[j, i]``.
    A limit that no activation within the variables' bounds can reach is left out (exact), so a
    model holds only the limits that can bind. ``soft=True`` adds a non-negative slack to every
    limit, priced at ``penalty`` per MW (flows) and per 0.01 pu^2 (voltages), so a DSO market that
    cannot remove a violation still clears. ``bids``/``var`` let a caller attach other variables
    than ``m.a``.
    """
    net = case.distributions[dname]
    bids = [b for b in (_bids_where(m, dname) if bids is None else bids)]
    var = m.a if var is None else var
    blk = pyo.Block()
    m.add_component(f"dist_{dname}{tag}", blk)
    state = lindistflow(net, fixed_injection)
    nodes = np.array([net.node(b.bus) for b in bids], dtype=int)
    sign = np.array([b.sign for b in bids], dtype=float)
    ub = np.array([var[b.bid_id].ub or 0.0 for b in bids], dtype=float)
    rows = []  # (kind, index, base value, coefficients per bid, bound, upper?)
    for kind, base, sens, hi, lo in (
        ("p", state.p_mw, -net.downstream[:, nodes] * sign, limits.p_max, limits.p_min),
        ("w", state.v_pu**2, net.w_sensitivity[:, nodes] * sign, limits.w_max, limits.w_min),
    ):
        reach_up = base + np.clip(sens, 0, None) @ ub
        reach_down = base + np.clip(sens, None, 0) @ ub
        first = 1 if kind == "w" else 0  # the root's voltage is fixed
        for i in range(first, len(base)):
            if reach_up[i] > hi[i] + 1e-9:
                rows.append((kind, i, base[i], sens[i], hi[i], True))
            if reach_down[i] < lo[i] - 1e-9:
                rows.append((kind, i, base[i], sens[i], lo[i], False))
    blk.R = pyo.RangeSet(0, len(rows) - 1) if rows else pyo.Set(initialize=[])
    if soft:
        blk.slack = pyo.Var(blk.R, bounds=(0, None))
        m.penalty_terms.append(
            linear([penalty * (1.0 if rows[r][0] == "p" else 100.0) for r in blk.R], [blk.slack[r] for r in blk.R])
        )

    def limit(_b, r):
        kind, i, base, coef, bound, upper = rows[r]
        nz = np.flatnonzero(np.abs(coef) > 1e-15)
        expr = linear(coef[nz].tolist(), [var[bids[j].bid_id] for j in nz], base)
        slack = blk.slack[r] if soft else 0.0
        return expr <= float(bound) + slack if upper else expr >= float(bound) - slack

    blk.limits = pyo.Constraint(blk.R, rule=limit)
    blk.rows = [(kind, i, upper) for kind, i, *_, upper in rows]
    return blk


def constraint_interface(m: pyo.ConcreteModel, dname: str, net_mw: float = 0.0) -> None:
    """The layer's net activation in ``dname`` is ``net_mw``: the interface flow is set (by an
    earlier layer), so the DSO can only redispatch within its network."""
    bids = _bids_where(m, dname)
    if bids:
        m.add_component(f"iface_{dname}", pyo.Constraint(expr=net_expression(m, bids) == net_mw))


def objective_cost(m: pyo.ConcreteModel, weights: Mapping[str, float] | None = None) -> None:
    """Minimise bid cost (or ``weights`` per bid) plus any soft-limit penalties."""
    w = {b.bid_id: b.price for b in m.bid_list} if weights is None else weights
    m.obj = pyo.Objective(
        expr=linear([w[i] for i in m.B], [m.a[i] for i in m.B]) + sum(m.penalty_terms), sense=pyo.minimize
    )


def read_activation(m: pyo.ConcreteModel) -> Activation:
    """Solved activations (MW), clipped at zero and without numerical dust."""
    out = {}
    for i in m.B:
        v = m.a[i].value or 0.0
        if v > 1e-9:
            out[i] = float(v)
    return out


# ------------------------------------------------------------------ one market layer


@dataclass(frozen=True)
class LayerResult:
    """One clearing: solver outcome, the volume each bid offered to it and what qualified (MW),
    new activations and their cost (EUR, value of lost load included)."""

    name: str
    solve: Result
    activation: Activation
    cost: float
    build_s: float
    offered: dict[str, float] = field(default_factory=dict)
    qualified: dict[str, float] = field(default_factory=dict)
    activates: bool = True  # False for a reservation that only informs prequalification


def clear_layer(
    case: Case,
    name: str,
    bids: Sequence[Bid],
    cap: Mapping[str, float],
    prior: Mapping[str, float],
    *,
    balance: bool = False,
    transmission: bool = False,
    distribution: Mapping[str, str] | None = None,
    interface: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    offered: Mapping[str, float] | None = None,
    activates: bool = True,
) -> LayerResult:
    """Clear one market layer on top of the ``prior`` activations.

    ``balance`` makes it the TSO's layer (the value-of-lost-load bids join). ``distribution`` maps
    a network to ``"hard"`` (own limits), ``"relaxed"`` (no violation beyond the prior state) or
    ``"soft"`` (own limits, penalised slacks); ``interface`` sets a network's net activation.
    ``cap`` is what each bid may be activated in this layer (its qualified volume), ``offered``
    what it offered before prequalification (default: ``cap``).
    """
    start = time.perf_counter()
    offer = dict(offered if offered is not None else cap)
    listed = {
        b.bid_id: (offer.get(b.bid_id, 0.0), cap.get(b.bid_id, 0.0))
        for b in bids
        if max(offer.get(b.bid_id, 0.0), cap.get(b.bid_id, 0.0)) > 1e-9
    }
    bids = [b for b in bids if cap.get(b.bid_id, 0.0) > 1e-9]
    cap = dict(cap)
    if balance:
        bids = bids + case.voll_bids
        cap.update({b.bid_id: b.qty_mw for b in case.voll_bids})
    m = new_market(bids, cap)
    if balance:
        constraint_balance(m, case.imbalance_mw - net_activation(case.bids, prior))
    if transmission:
        constraint_transmission(m, case, transmission_injection(case, prior))
    for dname, mode in (distribution or {}).items():
        net = case.distributions[dname]
        inj = distribution_injection(case, dname, prior)
        limits = relaxed_limits(net, lindistflow(net, inj)) if mode == "relaxed" else grid_limits(net)
        constraint_distribution(m, case, dname, inj, limits, soft=(mode == "soft"), penalty=case.penalty)
    for dname, net_mw in (interface or {}).items():
        constraint_interface(m, dname, net_mw)
    objective_cost(m, weights)
    build_s = time.perf_counter() - start
    res = Solver().solve(m)
    act = read_activation(m) if res.ok else {}
    cost = float(sum(b.price * act.get(b.bid_id, 0.0) for b in bids))
    return LayerResult(
        name,
        res,
        act,
        cost,
        build_s,
        {i: float(o) for i, (o, _) in listed.items()},
        {i: float(q) for i, (_, q) in listed.items()},
        activates,
    )
