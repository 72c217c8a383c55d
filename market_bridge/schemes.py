"""The eight TSO-DSO coordinated market schemes of seed Table 4-1, one function each.

Every scheme is a sequence of ``clear_layer`` calls (see ``clearing.py``):

=================  ==========================================================================
common             one LP: all bids, system balance, PTDF limits, every distribution network
multilevel_01      DSO layers (own limits, any direction) -> TSO layer with uncleared bids
multilevel_02      01 + corrective DSO layer (remaining bids, interface flow fixed)
multilevel_03      01 with prequalification of the forwarded distribution bids
multilevel_04      01 with distribution constraints inside the TSO layer
multilevel_05      TSO layer (all bids, no distribution limits) -> DSO layers, interface fixed
multilevel_06      05 with prequalification before the TSO layer (DSO redispatch reserved)
bid_aggregation    per network an aggregated grid-safe cost curve over interface-flow steps
                   (one LP per step), then a MILP picking one point per network
=================  ==========================================================================

DSO layers use soft limits (penalised slacks) so that a DSO without enough bids still clears and
its remaining violations show up in the KPIs; the DSO's need is to remove the violations of its
network, the TSO's need is the system imbalance.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyomo.environ as pyo

from market_bridge.cases import Bid, Case
from market_bridge.clearing import (
    Activation,
    LayerResult,
    add_activations,
    add_line_limits,
    clear_layer,
    constraint_distribution,
    grid_limits,
    transmission_injection,
)
from market_bridge.prequalification import prequalify
from market_bridge.solver import SolveResult, Solver

SCHEMES = ("multilevel_01", "multilevel_02", "multilevel_03", "multilevel_04", "multilevel_05",
           "multilevel_06", "bid_aggregation", "common")
ALIASES = {f"ml0{i}": f"multilevel_0{i}" for i in range(1, 7)} | {"ba": "bid_aggregation", "cm": "common"}


@dataclass
class SchemeResult:
    """Outcome of one scheme on one case."""

    scheme: str
    case: str
    status: str  # ok | infeasible | error
    activation: Activation
    cost: float
    time_s: float
    layers: list[LayerResult] = field(default_factory=list)
    prequalification: str = ""
    unqualified_up: float | None = None
    unqualified_down: float | None = None
    step_mw: float | None = None
    message: str = ""


def _remaining(case: Case, bids: list[Bid], act: Activation) -> dict[str, float]:
    """Uncleared volume of each bid (bid forwarding passes these on)."""
    return {b.bid_id: max(0.0, b.qty_mw - act.get(b.bid_id, 0.0)) for b in bids}


def _full(bids: list[Bid]) -> dict[str, float]:
    return {b.bid_id: b.qty_mw for b in bids}


def _finish(case: Case, scheme: str, layers: list[LayerResult], start: float, **kw) -> SchemeResult:
    act = add_activations(*(lr.activation for lr in layers))
    bad = [lr for lr in layers if not lr.solve.ok]
    status = "ok" if not bad else bad[0].solve.status
    msg = "" if not bad else f"{bad[0].name}: {bad[0].solve.status}"
    cost = float(sum(b.price * act.get(b.bid_id, 0.0) for b in case.bids)) if not bad else float("nan")
    return SchemeResult(scheme, case.name, status, act if not bad else {}, cost,
                        time.perf_counter() - start, layers, message=msg, **kw)


def _dso_layers(case: Case, prior: Activation, available: Callable[[list[Bid]], dict[str, float]],
                fixed_interface: bool, tag: str) -> list[LayerResult]:
    """One DSO market per network (solved in sequence), soft limits, optionally net-zero."""
    out = []
    for dname in case.distributions:
        bids = case.bids_in(dname)
        out.append(clear_layer(case, f"{tag}_{dname}", bids, available(bids), prior,
                               distribution={dname: "soft"},
                               interface_fixed=[dname] if fixed_interface else []))
    return out


def common(case: Case) -> SchemeResult:
    """Joint procurement: one LP with every bid and every network's constraints."""
    start = time.perf_counter()
    lr = clear_layer(case, "common", case.bids, _full(list(case.bids)), {}, balance=True, transmission=True,
                     distribution={d: "hard" for d in case.distributions})
    return _finish(case, "common", [lr], start)


def _dso_first(case: Case) -> tuple[list[LayerResult], Activation]:
    layers = _dso_layers(case, {}, _full, fixed_interface=False, tag="dso")
    return layers, add_activations(*(lr.activation for lr in layers))


def _tso_layer(case: Case, prior: Activation, dist_cap: dict[str, float],
               distribution: dict[str, str] | None = None) -> LayerResult:
    t_bids = case.bids_in("T")
    cap = _remaining(case, t_bids, prior) | dist_cap
    bids = t_bids + [b for b in case.bids if b.area != "T"]
    return clear_layer(case, "tso", bids, cap, prior, balance=True, transmission=True, distribution=distribution)


def multilevel_01(case: Case) -> SchemeResult:
    """DSO-TSO, uncleared distribution bids forwarded to the TSO without any grid check."""
    start = time.perf_counter()
    layers, act = _dso_first(case)
    dist = [b for b in case.bids if b.area != "T"]
    layers.append(_tso_layer(case, act, _remaining(case, dist, act)))
    return _finish(case, "multilevel_01", layers, start)


def multilevel_02(case: Case) -> SchemeResult:
    """DSO-TSO with a corrective third DSO layer on the bids still unused, interface fixed."""
    start = time.perf_counter()
    layers, act = _dso_first(case)
    dist = [b for b in case.bids if b.area != "T"]
    layers.append(_tso_layer(case, act, _remaining(case, dist, act)))
    act = add_activations(*(lr.activation for lr in layers))
    layers += _dso_layers(case, act, lambda bids: _remaining(case, bids, act), True, "corrective")
    return _finish(case, "multilevel_02", layers, start)


def multilevel_03(case: Case, method: str | None = None) -> SchemeResult:
    """DSO-TSO with prequalification of the forwarded bids between the two layers."""
    start = time.perf_counter()
    method = method or case.prequalification
    layers, act = _dso_first(case)
    dist = [b for b in case.bids if b.area != "T"]
    pq = prequalify(case, method, _remaining(case, dist, act), act)
    layers.append(_tso_layer(case, act, pq.cap))
    return _finish(case, "multilevel_03", layers, start, prequalification=method,
                   unqualified_up=pq.unqualified_up, unqualified_down=pq.unqualified_down)


def multilevel_04(case: Case) -> SchemeResult:
    """DSO-TSO where the TSO layer includes the distribution constraints (relative to the state
    the DSO layer left: no violation may be added)."""
    start = time.perf_counter()
    layers, act = _dso_first(case)
    dist = [b for b in case.bids if b.area != "T"]
    layers.append(_tso_layer(case, act, _remaining(case, dist, act),
                             distribution={d: "relaxed" for d in case.distributions}))
    return _finish(case, "multilevel_04", layers, start)


def multilevel_05(case: Case) -> SchemeResult:
    """TSO-DSO: TSO layer with all bids and no distribution limits, then DSO layers that may not
    change the interface flow the TSO layer set."""
    start = time.perf_counter()
    dist = [b for b in case.bids if b.area != "T"]
    layers = [_tso_layer(case, {}, _full(dist))]
    act = layers[0].activation
    layers += _dso_layers(case, act, lambda bids: _remaining(case, bids, act), True, "dso")
    return _finish(case, "multilevel_05", layers, start)


def multilevel_06(case: Case, method: str | None = None) -> SchemeResult:
    """TSO-DSO with prequalification before the TSO layer.

    Each DSO first reserves the net-zero redispatch it needs for its own violations (a soft DSO
    LP, not activated yet); the envelopes are then computed on top of that reserved state from the
    volume not reserved. The later DSO layer can therefore always reach a state at least as good.
    """
    start = time.perf_counter()
    method = method or case.prequalification
    dist = [b for b in case.bids if b.area != "T"]
    reserve = _dso_layers(case, {}, _full, fixed_interface=True, tag="reserve")
    reserved = add_activations(*(lr.activation for lr in reserve))
    pq = prequalify(case, method, _remaining(case, dist, reserved), reserved)
    tso = _tso_layer(case, {}, pq.cap)
    act = tso.activation
    dso = _dso_layers(case, act, lambda bids: _remaining(case, bids, act), True, "dso")
    # Reservation LPs only inform the caps; their activations are not part of the outcome.
    res = _finish(case, "multilevel_06", [tso] + dso, start, prequalification=method,
                  unqualified_up=pq.unqualified_up, unqualified_down=pq.unqualified_down)
    bad = [lr for lr in reserve if not lr.solve.ok]
    if bad:
        res.status, res.message = bad[0].solve.status, f"{bad[0].name}: {bad[0].solve.status}"
    res.layers = reserve + res.layers
    return res


# ------------------------------------------------------------------ bid aggregation


@dataclass(frozen=True)
class AggregatedCurve:
    """Grid-safe aggregated bid points of one network: net activation (MW) -> cost, activation."""

    network: str
    net_mw: np.ndarray
    cost: np.ndarray
    activation: list[Activation]
    n_solves: int


def aggregate_network(case: Case, dname: str, step_mw: float) -> AggregatedCurve:
    """Cheapest grid-safe activation of the network's bids for each interface-flow step.

    The feasible net activation range is convex; it is found by two LPs (min and max), then one
    LP per grid point ``k * step_mw`` inside it (the same model, re-solved with a new target).
    Grids of halved steps are nested, so a smaller step never makes the market more expensive.
    """
    net = case.distributions[dname]
    bids = case.bids_in(dname)
    m = pyo.ConcreteModel()
    m.bid_list = bids
    m.B = pyo.Set(initialize=[b.bid_id for b in bids], ordered=True)
    m.a = pyo.Var(m.B, bounds=lambda _m, i: (0.0, next(b.qty_mw for b in bids if b.bid_id == i)))
    m.penalty_terms = []
    constraint_distribution(m, case, dname, np.zeros(net.n_nodes), grid_limits(net))
    m.target = pyo.Param(mutable=True, initialize=0.0)
    net_expr = sum(b.sign * m.a[b.bid_id] for b in bids)
    solver = Solver()
    n = 0
    m.obj_range = pyo.Objective(expr=net_expr, sense=pyo.minimize)
    lo = solver.solve(m)
    m.obj_range.sense = pyo.maximize
    hi = solver.solve(m)
    n += 2
    if not (lo.ok and hi.ok):
        return AggregatedCurve(dname, np.array([]), np.array([]), [], n)
    m.obj_range.deactivate()
    m.net = pyo.Constraint(expr=net_expr == m.target)
    m.obj = pyo.Objective(expr=sum(b.price * m.a[b.bid_id] for b in bids))
    points, costs, acts = [], [], []
    for k in range(int(np.ceil(lo.objective / step_mw - 1e-9)), int(np.floor(hi.objective / step_mw + 1e-9)) + 1):
        m.target.value = k * step_mw
        res = solver.solve(m)
        n += 1
        if res.ok:
            points.append(k * step_mw)
            costs.append(res.objective)
            acts.append({i: float(m.a[i].value) for i in m.B if (m.a[i].value or 0.0) > 1e-9})
    return AggregatedCurve(dname, np.array(points), np.array(costs), acts, n)


def bid_aggregation(case: Case, step_mw: float | None = None) -> SchemeResult:
    """Aggregated grid-safe bids per network, cleared with the transmission bids in a MILP."""
    start = time.perf_counter()
    step = step_mw or case.aggregation_step_mw
    curves = {d: aggregate_network(case, d, step) for d in case.distributions}
    t_bids = case.bids_in("T")
    t = case.transmission
    m = pyo.ConcreteModel()
    m.B = pyo.Set(initialize=[b.bid_id for b in t_bids], ordered=True)
    m.a = pyo.Var(m.B, bounds=lambda _m, i: (0.0, next(b.qty_mw for b in t_bids if b.bid_id == i)))
    m.pts = pyo.Set(initialize=[(d, k) for d, c in curves.items() for k in range(len(c.net_mw))], dimen=2)
    m.z = pyo.Var(m.pts, domain=pyo.Binary)
    m.one = pyo.Constraint(list(curves), rule=lambda _m, d: sum(m.z[d, k] for k in range(len(curves[d].net_mw))) == 1)
    d_net = {d: sum(float(c.net_mw[k]) * m.z[d, k] for k in range(len(c.net_mw))) for d, c in curves.items()}
    m.balance = pyo.Constraint(expr=sum(b.sign * m.a[b.bid_id] for b in t_bids) + sum(d_net.values())
                               == case.imbalance_mw)
    flow0 = t.flows(transmission_injection(case, {}))

    terms = {line: [(b.sign * t.ptdf[line, t.index(b.bus)], m.a[b.bid_id]) for b in t_bids]
             + [(t.ptdf[line, t.index(case.interface_bus[d])] * float(c.net_mw[k]), m.z[d, k])
                for d, c in curves.items() for k in range(len(c.net_mw))]
             for line in range(len(t.lines))}
    add_line_limits(m, case, flow0, {ln: [(c, v) for c, v in tv if abs(c) > 1e-12] for ln, tv in terms.items()})
    m.obj = pyo.Objective(expr=sum(b.price * m.a[b.bid_id] for b in t_bids)
                          + sum(float(c.cost[k]) * m.z[d, k] for d, c in curves.items() for k in range(len(c.net_mw))))
    res = Solver().solve(m) if all(len(c.net_mw) for c in curves.values()) else SolveResult("infeasible", np.nan, 0.0)
    act: Activation = {}
    if res.ok:
        act = {i: float(m.a[i].value) for i in m.B if (m.a[i].value or 0.0) > 1e-9}
        for d, c in curves.items():
            chosen = max(range(len(c.net_mw)), key=lambda k: m.z[d, k].value)
            act = add_activations(act, c.activation[chosen])
    layer = LayerResult("aggregation_milp", res, act, 0.0, 0.0)
    out = _finish(case, "bid_aggregation", [layer], start, step_mw=step)
    out.message = out.message or f"{sum(c.n_solves for c in curves.values())} aggregation LPs"
    return out


RUNNERS: dict[str, Callable[[Case], SchemeResult]] = {
    "multilevel_01": multilevel_01, "multilevel_02": multilevel_02, "multilevel_03": multilevel_03,
    "multilevel_04": multilevel_04, "multilevel_05": multilevel_05, "multilevel_06": multilevel_06,
    "bid_aggregation": bid_aggregation, "common": common,
}


def parse_scheme(name: str) -> tuple[str, str | None]:
    """``"multilevel_03"``, ``"ml03"`` or ``"ml03@uniform_oe"`` -> (scheme, prequalification)."""
    base, _, method = name.partition("@")
    base = ALIASES.get(base.lower(), base.lower())
    if base not in RUNNERS:
        raise ValueError(f"unknown scheme {name!r} (known: {', '.join(SCHEMES)}, or 'all')")
    if method and base not in ("multilevel_03", "multilevel_06"):
        raise ValueError(f"scheme {base} has no prequalification step to choose ({name!r})")
    return base, method or None


def run_scheme(case: Case, name: str) -> SchemeResult:
    """Run a scheme by name (see ``parse_scheme``)."""
    base, method = parse_scheme(name)
    if method is not None:
        from market_bridge.cases import PREQUALIFICATION_METHODS

        if method not in PREQUALIFICATION_METHODS:
            raise ValueError(f"unknown prequalification {method!r} (known: {', '.join(PREQUALIFICATION_METHODS)})")
        if method == "nfca" and not case.lv_caps:
            raise ValueError("prequalification 'nfca' needs an envelopes file (--envelopes)")
        return RUNNERS[base](case, method)  # type: ignore[call-arg]
    return RUNNERS[base](case)
