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
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyomo.environ as pyo

from market_bridge.cases import Bid, Case
from market_bridge.networks import Distribution, DistFlowState, lindistflow
from market_bridge.solver import SolveResult, Solver

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
    return DistLimits(p, -p, np.full(n, net.vmax_pu ** 2), np.full(n, net.vmin_pu ** 2))


def relaxed_limits(net: Distribution, state: DistFlowState) -> DistLimits:
    """Limits widened to contain ``state``: activations may not add violations to existing ones."""
    lim = grid_limits(net)
    w = state.v_pu ** 2
    return DistLimits(np.maximum(lim.p_max, state.p_mw), np.minimum(lim.p_min, state.p_mw),
                      np.maximum(lim.w_max, w), np.minimum(lim.w_min, w))


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


def constraint_balance(m: pyo.ConcreteModel, need_mw: float) -> None:
    """Up minus down activation of this layer equals the remaining system imbalance."""
    m.balance = pyo.Constraint(expr=sum(b.sign * m.a[b.bid_id] for b in m.bid_list) == need_mw)


def constraint_transmission(m: pyo.ConcreteModel, case: Case, fixed_injection: np.ndarray) -> None:
    """PTDF line limits; distribution bids act at their network's interface bus."""
    t = case.transmission
    coef = {b.bid_id: t.ptdf @ transmission_coefficient(case, b) for b in m.bid_list}
    terms = {line: [(c[line], m.a[i]) for i, c in coef.items() if abs(c[line]) > 1e-12]
             for line in range(len(t.lines))}
    add_line_limits(m, case, t.flows(fixed_injection), terms)


def add_line_limits(m: pyo.ConcreteModel, case: Case, flow0: np.ndarray,
                    terms: Mapping[int, Sequence[tuple[float, object]]]) -> None:
    """``-limit <= flow0 + sum(coef * var) <= limit`` per transmission line. A line no variable
    reaches is skipped (its flow is fixed; the caller's base state must respect it)."""
    t = case.transmission

    def rule(_m, line, upper):
        if not terms[line]:
            return pyo.Constraint.Skip
        expr = flow0[line] + sum(c * v for c, v in terms[line])
        return expr <= t.limit_mw[line] if upper else expr >= -t.limit_mw[line]

    m.T_lines = pyo.RangeSet(0, len(t.lines) - 1)
    m.t_max = pyo.Constraint(m.T_lines, rule=lambda _m, line: rule(_m, line, True))
    m.t_min = pyo.Constraint(m.T_lines, rule=lambda _m, line: rule(_m, line, False))


def constraint_distribution(m: pyo.ConcreteModel, case: Case, dname: str, fixed_injection: np.ndarray,
                            limits: DistLimits, soft: bool = False, penalty: float = 0.0,
                            bids: Sequence[Bid] | None = None, var=None, tag: str = "") -> pyo.Block:
    """LinDistFlow of network ``dname`` with line and voltage limits, as a block of ``m``.

    Node balance: ``P_k = load_j - fixed_inj_j - sum(sign * a_b at j) + sum(P of j's children)``.
    ``soft=True`` adds non-negative slacks on every limit, priced at ``penalty`` per MW (flows)
    and per 0.01 pu^2 (voltages), so a DSO market that cannot remove a violation still clears.
    ``bids``/``var`` let a caller attach other variables (e.g. envelope caps) than ``m.a``.
    """
    net = case.distributions[dname]
    bids = _bids_where(m, dname) if bids is None else list(bids)
    var = m.a if var is None else var
    blk = pyo.Block()
    m.add_component(f"dist_{dname}{tag}", blk)
    nb, nn = len(net.parent), net.n_nodes
    q = net.q_flow_mvar
    at_node: dict[int, list[Bid]] = {}
    for b in bids:
        at_node.setdefault(net.node(b.bus), []).append(b)
    children: dict[int, list[int]] = {}
    for k in range(nb):
        children.setdefault(int(net.parent[k]), []).append(k)
    blk.K = pyo.RangeSet(0, nb - 1)
    blk.N = pyo.RangeSet(0, nn - 1)
    blk.P = pyo.Var(blk.K)
    blk.w = pyo.Var(blk.N)
    blk.w[0].fix(net.v_root_pu ** 2)

    def node_balance(_b, k):
        j = int(net.child[k])
        return blk.P[k] == (net.load_mw[j] - fixed_injection[j]
                            - sum(b.sign * var[b.bid_id] for b in at_node.get(j, []))
                            + sum(blk.P[c] for c in children.get(j, [])))

    def voltage_drop(_b, k):
        i, j = int(net.parent[k]), int(net.child[k])
        return blk.w[j] == blk.w[i] - 2.0 * (net.r_pu[k] * blk.P[k] + net.x_pu[k] * q[k]) / net.base_mva

    blk.balance = pyo.Constraint(blk.K, rule=node_balance)
    blk.drop = pyo.Constraint(blk.K, rule=voltage_drop)
    if soft:
        blk.sp = pyo.Var(blk.K, bounds=(0, None))
        blk.sw = pyo.Var(blk.N, bounds=(0, None))
        sp, sw = blk.sp, blk.sw
        m.penalty_terms.append(penalty * (sum(sp.values()) + 100.0 * sum(sw.values())))
    else:
        sp = {k: 0.0 for k in range(nb)}
        sw = {n: 0.0 for n in range(nn)}
    blk.p_max = pyo.Constraint(blk.K, rule=lambda _b, k: blk.P[k] <= limits.p_max[k] + sp[k])
    blk.p_min = pyo.Constraint(blk.K, rule=lambda _b, k: blk.P[k] >= limits.p_min[k] - sp[k])
    blk.w_max = pyo.Constraint(pyo.RangeSet(1, nn - 1), rule=lambda _b, n: blk.w[n] <= limits.w_max[n] + sw[n])
    blk.w_min = pyo.Constraint(pyo.RangeSet(1, nn - 1), rule=lambda _b, n: blk.w[n] >= limits.w_min[n] - sw[n])
    return blk


def constraint_interface(m: pyo.ConcreteModel, dname: str, net_mw: float = 0.0) -> None:
    """The layer's net activation in ``dname`` is ``net_mw``: the interface flow is set (by an
    earlier layer), so the DSO can only redispatch within its network."""
    bids = _bids_where(m, dname)
    if bids:
        m.add_component(f"iface_{dname}",
                        pyo.Constraint(expr=sum(b.sign * m.a[b.bid_id] for b in bids) == net_mw))


def objective_cost(m: pyo.ConcreteModel, weights: Mapping[str, float] | None = None) -> None:
    """Minimise bid cost (or ``weights`` per bid) plus any soft-limit penalties."""
    w = {b.bid_id: b.price for b in m.bid_list} if weights is None else weights
    m.obj = pyo.Objective(expr=sum(w[i] * m.a[i] for i in m.B) + sum(m.penalty_terms), sense=pyo.minimize)


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
    solve: SolveResult
    activation: Activation
    cost: float
    build_s: float
    offered: dict[str, float] = field(default_factory=dict)
    qualified: dict[str, float] = field(default_factory=dict)
    activates: bool = True  # False for a reservation that only informs prequalification


def clear_layer(case: Case, name: str, bids: Sequence[Bid], cap: Mapping[str, float],
                prior: Mapping[str, float], *, balance: bool = False, transmission: bool = False,
                distribution: Mapping[str, str] | None = None, interface: Mapping[str, float] | None = None,
                weights: Mapping[str, float] | None = None, offered: Mapping[str, float] | None = None,
                activates: bool = True) -> LayerResult:
    """Clear one market layer on top of the ``prior`` activations.

    ``balance`` makes it the TSO's layer (the value-of-lost-load bids join). ``distribution`` maps
    a network to ``"hard"`` (own limits), ``"relaxed"`` (no violation beyond the prior state) or
    ``"soft"`` (own limits, penalised slacks); ``interface`` sets a network's net activation.
    ``cap`` is what each bid may be activated in this layer (its qualified volume), ``offered``
    what it offered before prequalification (default: ``cap``).
    """
    start = time.perf_counter()
    offer = dict(offered if offered is not None else cap)
    listed = {b.bid_id: (offer.get(b.bid_id, 0.0), cap.get(b.bid_id, 0.0)) for b in bids
              if max(offer.get(b.bid_id, 0.0), cap.get(b.bid_id, 0.0)) > 1e-9}
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
    return LayerResult(name, res, act, cost, build_s, {i: float(o) for i, (o, _) in listed.items()},
                       {i: float(q) for i, (_, q) in listed.items()}, activates)
