"""The TSO-DSO coordinated market schemes of seed Table 4-1, one function each.

Every scheme is a sequence of ``clear_layer`` calls (see ``clearing.py``):

==================  =========================================================================
common              one LP: all bids, system balance, PTDF limits, every distribution network
multilevel_01       DSO layers (own limits, any direction) -> TSO layer with the uncleared bids
multilevel_02       01 + corrective DSO layer (remaining bids, interface flow fixed)
multilevel_03       01 with prequalification of the forwarded distribution bids
multilevel_04       01 with the distribution constraints inside the TSO layer
multilevel_05       TSO layer (all bids, no distribution limits) -> DSO layers, interface fixed
multilevel_06_seed  the seed's 06: prequalification ("no additional violation" of the state before
                    the market) -> TSO layer -> DSO layers, interface fixed
multilevel_06       our 06: each DSO first reserves the redispatch its own network needs and
                    announces its interface change; prequalification on top of it -> TSO layer
                    (which balances the announced change) -> DSO layers that deliver it
bid_aggregation     per network an aggregated grid-safe cost curve over interface-flow steps
                    (one LP per step), then a MILP picking one point per network
==================  =========================================================================

DSO layers use soft limits (penalised slacks) so that a DSO without enough bids still clears and
its remaining violations show up in the KPIs; the DSO's need is to remove the violations of its
network, the TSO's need is the system imbalance, met at the value of lost load where bids run out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo

from market_bridge.cases import PREQUALIFICATION_METHODS, Bid, Case
from market_bridge.clearing import (
    Activation,
    LayerResult,
    add_activations,
    add_line_limits,
    clear_layer,
    constraint_distribution,
    grid_limits,
    linear,
    net_activation,
    net_expression,
    transmission_coefficient,
    transmission_injection,
)
from market_bridge.prequalification import prequalify, unqualified_share
from market_bridge.solver import Solver
from nfca.solver import Result, Status

SCHEMES = (
    "multilevel_01",
    "multilevel_02",
    "multilevel_03",
    "multilevel_04",
    "multilevel_05",
    "multilevel_06",
    "multilevel_06_seed",
    "bid_aggregation",
    "common",
)
PREQUALIFIED = ("multilevel_03", "multilevel_06", "multilevel_06_seed")
ALIASES = {f"ml0{i}": f"multilevel_0{i}" for i in range(1, 7)} | {
    "ml06_seed": "multilevel_06_seed",
    "ba": "bid_aggregation",
    "cm": "common",
}


@dataclass
class SchemeResult:
    """Outcome of one scheme on one case. ``cost`` includes the value of lost load of
    ``shortfall_mw``; ``layers`` are in clearing order."""

    scheme: str
    case: str
    status: Status  # optimal when every layer solved
    activation: Activation
    cost: float
    time_s: float
    layers: list[LayerResult] = field(default_factory=list)
    prequalification: str = ""
    unqualified_up: float | None = None
    unqualified_down: float | None = None
    step_mw: float | None = None
    message: str = ""

    @property
    def name(self) -> str:
        """Scheme name as run, e.g. ``multilevel_03@uniform_oe``."""
        return f"{self.scheme}@{self.prequalification}" if self.prequalification else self.scheme

    @property
    def shortfall_mw(self) -> float:
        return float(sum(v for k, v in self.activation.items() if k.startswith("voll:")))


def _remaining(bids: list[Bid], act: Activation) -> dict[str, float]:
    """Uncleared volume of each bid (bid forwarding passes these on)."""
    return {b.bid_id: max(0.0, b.qty_mw - act.get(b.bid_id, 0.0)) for b in bids}


def _full(bids: list[Bid]) -> dict[str, float]:
    return {b.bid_id: b.qty_mw for b in bids}


def _finish(case: Case, scheme: str, layers: list[LayerResult], start: float, **kw) -> SchemeResult:
    used = [lr for lr in layers if lr.activates]
    act = add_activations(*(lr.activation for lr in used))
    bad = [lr for lr in layers if not lr.solve.ok]
    status = Status.optimal if not bad else bad[0].solve.status
    msg = "" if not bad else f"{bad[0].name}: {bad[0].solve.status} ({bad[0].solve.message})"
    prices = {b.bid_id: b.price for b in list(case.bids) + case.voll_bids}
    cost = float(sum(prices[k] * v for k, v in act.items())) if not bad else float("nan")
    return SchemeResult(
        scheme, case.name, status, act if not bad else {}, cost, time.perf_counter() - start, layers, message=msg, **kw
    )


def _dso_layers(
    case: Case,
    prior: Activation,
    available: Callable[[list[Bid]], dict[str, float]],
    interface: dict[str, float] | None,
    tag: str,
    activates: bool = True,
) -> list[LayerResult]:
    """One DSO market per network (solved in sequence), soft limits; ``interface`` sets each
    network's net activation (None: free)."""
    out = []
    for dname in case.distributions:
        bids = case.bids_in(dname)
        out.append(
            clear_layer(
                case,
                f"{tag}_{dname}",
                bids,
                available(bids),
                prior,
                distribution={dname: "soft"},
                interface=None if interface is None else {dname: interface[dname]},
                activates=activates,
            )
        )
    return out


def _tso_layer(
    case: Case,
    prior: Activation,
    dist_cap: dict[str, float],
    distribution: dict[str, str] | None = None,
    offered: dict[str, float] | None = None,
) -> LayerResult:
    t_bids = case.bids_in("T")
    cap = _remaining(t_bids, prior) | dist_cap
    return clear_layer(
        case,
        "tso",
        t_bids + case.distribution_bids,
        cap,
        prior,
        balance=True,
        transmission=True,
        distribution=distribution,
        offered=None if offered is None else _remaining(t_bids, prior) | offered,
    )


def common(case: Case) -> SchemeResult:
    """Joint procurement: one LP with every bid and every network's constraints."""
    start = time.perf_counter()
    lr = clear_layer(
        case,
        "common",
        list(case.bids),
        _full(list(case.bids)),
        {},
        balance=True,
        transmission=True,
        distribution={d: "hard" for d in case.distributions},
    )
    return _finish(case, "common", [lr], start)


def _dso_first(case: Case) -> tuple[list[LayerResult], Activation]:
    layers = _dso_layers(case, {}, _full, interface=None, tag="dso")
    return layers, add_activations(*(lr.activation for lr in layers))


def multilevel_01(case: Case) -> SchemeResult:
    """DSO-TSO, uncleared distribution bids forwarded to the TSO without any grid check."""
    start = time.perf_counter()
    layers, act = _dso_first(case)
    layers.append(_tso_layer(case, act, _remaining(case.distribution_bids, act)))
    return _finish(case, "multilevel_01", layers, start)


def multilevel_02(case: Case) -> SchemeResult:
    """DSO-TSO with a corrective third DSO layer on the bids still unused, interface fixed."""
    start = time.perf_counter()
    layers, act = _dso_first(case)
    layers.append(_tso_layer(case, act, _remaining(case.distribution_bids, act)))
    act = add_activations(*(lr.activation for lr in layers))
    layers += _dso_layers(
        case, act, lambda bids: _remaining(bids, act), {d: 0.0 for d in case.distributions}, "corrective"
    )
    return _finish(case, "multilevel_02", layers, start)


def multilevel_03(case: Case, method: str | None = None) -> SchemeResult:
    """DSO-TSO with prequalification of the forwarded bids between the two layers. Unqualified
    volume: share of the volume left after the DSO layer (the seed's definition)."""
    start = time.perf_counter()
    method = method or case.prequalification
    layers, act = _dso_first(case)
    dist = case.distribution_bids
    available = _remaining(dist, act)
    pq = prequalify(case, method, available, act)
    layers.append(_tso_layer(case, act, pq.cap, offered=available))
    return _finish(
        case,
        "multilevel_03",
        layers,
        start,
        prequalification=method,
        unqualified_up=unqualified_share(dist, available, pq.cap, "up"),
        unqualified_down=unqualified_share(dist, available, pq.cap, "down"),
    )


def multilevel_04(case: Case) -> SchemeResult:
    """DSO-TSO where the TSO layer includes the distribution constraints (relative to the state
    the DSO layer left: no violation may be added)."""
    start = time.perf_counter()
    layers, act = _dso_first(case)
    layers.append(
        _tso_layer(
            case, act, _remaining(case.distribution_bids, act), distribution={d: "relaxed" for d in case.distributions}
        )
    )
    return _finish(case, "multilevel_04", layers, start)


def _tso_first(
    case: Case,
    scheme: str,
    start: float,
    dist_cap: dict[str, float],
    prior: Activation,
    interface: dict[str, float],
    offered: dict[str, float] | None = None,
    pre: list[LayerResult] | None = None,
    **kw,
) -> SchemeResult:
    """TSO layer on top of ``prior`` (a reservation, not activated), then DSO layers that must
    deliver ``interface`` as their net activation."""
    tso = _tso_layer(case, prior, dist_cap, offered=offered)
    act = tso.activation
    dso = _dso_layers(case, act, lambda bids: _remaining(bids, act), interface, "dso")
    return _finish(case, scheme, (pre or []) + [tso] + dso, start, **kw)


def multilevel_05(case: Case) -> SchemeResult:
    """TSO-DSO: TSO layer with all bids and no distribution limits, then DSO layers that may not
    change the interface flow the TSO layer set."""
    start = time.perf_counter()
    return _tso_first(
        case, "multilevel_05", start, _full(case.distribution_bids), {}, {d: 0.0 for d in case.distributions}
    )


def multilevel_06_seed(case: Case, method: str | None = None) -> SchemeResult:
    """The seed's TSO-DSO scheme with prequalification: caps such that the TSO layer adds no
    violation to the state before the market, then DSO layers with the interface flow fixed.
    Existing violations that only an interface change can remove stay (seed cases A and D)."""
    start = time.perf_counter()
    method = method or case.prequalification
    dist = case.distribution_bids
    pq = prequalify(case, method, _full(dist), {})
    full = _full(dist)
    return _tso_first(
        case,
        "multilevel_06_seed",
        start,
        pq.cap,
        {},
        {d: 0.0 for d in case.distributions},
        offered=full,
        prequalification=method,
        unqualified_up=unqualified_share(dist, full, pq.cap, "up"),
        unqualified_down=unqualified_share(dist, full, pq.cap, "down"),
    )


def multilevel_06(case: Case, method: str | None = None) -> SchemeResult:
    """TSO-DSO with prequalification, safe by construction (a deliberate change from the seed).

    Each DSO first reserves the redispatch its own violations need (a soft DSO LP, not activated
    yet) and announces the interface change it implies; the caps are computed on top of the
    reserved state from the volume not reserved. The TSO layer balances the system with the
    announced interface changes, and the DSO layers afterwards must deliver exactly them, which the
    reserved bids always can. Unqualified volume: share of the full distribution volume (the
    reserved volume is not forwarded, so it counts as unqualified)."""
    start = time.perf_counter()
    method = method or case.prequalification
    dist = case.distribution_bids
    reserve = _dso_layers(case, {}, _full, interface=None, tag="reserve", activates=False)
    reserved = add_activations(*(lr.activation for lr in reserve))
    available = _remaining(dist, reserved)
    pq = prequalify(case, method, available, reserved)
    announced = {d: net_activation(case.bids_in(d), reserved) for d in case.distributions}
    full = _full(dist)
    return _tso_first(
        case,
        "multilevel_06",
        start,
        pq.cap,
        reserved,
        announced,
        offered=available,
        pre=reserve,
        prequalification=method,
        unqualified_up=unqualified_share(dist, full, pq.cap, "up"),
        unqualified_down=unqualified_share(dist, full, pq.cap, "down"),
    )


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
    qty = _full(bids)
    m = pyo.ConcreteModel()
    m.bid_list = bids
    m.B = pyo.Set(initialize=[b.bid_id for b in bids], ordered=True)
    m.a = pyo.Var(m.B, bounds=lambda _m, i: (0.0, qty[i]))
    m.penalty_terms = []
    constraint_distribution(m, case, dname, np.zeros(net.n_nodes), grid_limits(net))
    m.target = pyo.Param(mutable=True, initialize=0.0)
    net_expr = net_expression(m, bids)
    solver = Solver()
    m.obj_range = pyo.Objective(expr=net_expr, sense=pyo.minimize)
    lo = solver.solve(m)
    m.obj_range.sense = pyo.maximize
    hi = solver.solve(m)
    n = 2
    if not (lo.ok and hi.ok):
        return AggregatedCurve(dname, np.array([]), np.array([]), [], n)
    m.obj_range.deactivate()
    m.net = pyo.Constraint(expr=net_expr == m.target)
    m.obj = pyo.Objective(expr=linear([b.price for b in bids], [m.a[b.bid_id] for b in bids]))
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
    full = _full(list(case.bids))
    empty = [d for d, c in curves.items() if not len(c.net_mw)]
    if empty:  # a network no activation of its bids makes grid-safe: nothing to aggregate
        res = Result(Status.infeasible, f"no grid-safe activation of the bids of {empty[0]}")
        return _finish(
            case,
            "bid_aggregation",
            [LayerResult("aggregation_milp", res, {}, 0.0, 0.0, full, full)],
            start,
            step_mw=step,
        )
    t_bids = case.bids_in("T") + case.voll_bids
    qty = _full(t_bids)
    t = case.transmission
    m = pyo.ConcreteModel()
    m.B = pyo.Set(initialize=[b.bid_id for b in t_bids], ordered=True)
    m.a = pyo.Var(m.B, bounds=lambda _m, i: (0.0, qty[i]))
    m.pts = pyo.Set(initialize=[(d, k) for d, c in curves.items() for k in range(len(c.net_mw))], dimen=2)
    m.z = pyo.Var(m.pts, domain=pyo.Binary)
    m.one = pyo.Constraint(list(curves), rule=lambda _m, d: sum(m.z[d, k] for k in range(len(curves[d].net_mw))) == 1)
    d_net = {d: sum(float(c.net_mw[k]) * m.z[d, k] for k in range(len(c.net_mw))) for d, c in curves.items()}
    m.balance = pyo.Constraint(
        expr=sum(b.sign * m.a[b.bid_id] for b in t_bids) + sum(d_net.values()) == case.imbalance_mw
    )
    flow0 = t.flows(transmission_injection(case, {}))
    coef = {b.bid_id: t.ptdf @ transmission_coefficient(case, b) for b in t_bids}
    iface = {d: t.ptdf[:, t.index(case.interface_bus[d])] for d in curves}
    terms = {
        line: [(coef[b.bid_id][line], m.a[b.bid_id]) for b in t_bids]
        + [(iface[d][line] * float(c.net_mw[k]), m.z[d, k]) for d, c in curves.items() for k in range(len(c.net_mw))]
        for line in range(len(t.lines))
    }
    add_line_limits(m, case, flow0, {ln: [(c, v) for c, v in tv if abs(c) > 1e-12] for ln, tv in terms.items()})
    m.obj = pyo.Objective(
        expr=sum(b.price * m.a[b.bid_id] for b in t_bids)
        + sum(float(c.cost[k]) * m.z[d, k] for d, c in curves.items() for k in range(len(c.net_mw)))
    )
    res = Solver().solve(m)
    act: Activation = {}
    if res.ok:
        act = {i: float(m.a[i].value) for i in m.B if (m.a[i].value or 0.0) > 1e-9}
        for d, c in curves.items():
            chosen = max(range(len(c.net_mw)), key=lambda k: m.z[d, k].value)
            act = add_activations(act, c.activation[chosen])
    layer = LayerResult("aggregation_milp", res, act, 0.0, 0.0, full, full)
    out = _finish(case, "bid_aggregation", [layer], start, step_mw=step)
    out.message = out.message or f"{sum(c.n_solves for c in curves.values())} aggregation LPs"
    return out


RUNNERS: dict[str, Callable[..., SchemeResult]] = {
    "multilevel_01": multilevel_01,
    "multilevel_02": multilevel_02,
    "multilevel_03": multilevel_03,
    "multilevel_04": multilevel_04,
    "multilevel_05": multilevel_05,
    "multilevel_06": multilevel_06,
    "multilevel_06_seed": multilevel_06_seed,
    "bid_aggregation": bid_aggregation,
    "common": common,
}


def parse_scheme(name: str) -> tuple[str, str | None]:
    """``"multilevel_03"``, ``"ml03"``, ``"ml03@uniform_oe"`` or ``"common@nfca"`` -> (scheme,
    method). ``@nfca`` applies to every scheme (the LV end-users' envelopes cap their bids in
    every layer); the other methods only to the schemes with a prequalification step."""
    base, _, method = name.partition("@")
    base = ALIASES.get(base.lower(), base.lower())
    if base not in RUNNERS:
        raise ValueError(f"unknown scheme {name!r} (known: {', '.join(SCHEMES)}, or 'all')")
    if method and method not in PREQUALIFICATION_METHODS:
        raise ValueError(
            f"unknown prequalification {method!r} in {name!r} (known: {', '.join(PREQUALIFICATION_METHODS)})"
        )
    if method and method != "nfca" and base not in PREQUALIFIED:
        raise ValueError(f"scheme {base} has no prequalification step to choose ({name!r})")
    return base, method or None


def uses_nfca(case: Case, name: str) -> bool:
    """True when scheme ``name`` run on ``case`` caps LV bids by the NFCA envelopes."""
    base, method = parse_scheme(name)
    return method == "nfca" or (method is None and base in PREQUALIFIED and case.prequalification == "nfca")


def run_scheme(case: Case, name: str) -> SchemeResult:
    """Run a scheme by name (see ``parse_scheme``)."""
    base, method = parse_scheme(name)
    if uses_nfca(case, name):
        if not case.lv_caps:
            raise ValueError(f"{name}: prequalification 'nfca' needs an envelopes file (--envelopes)")
        res = (
            RUNNERS[base](case.with_nfca_caps(), "nfca")
            if base in PREQUALIFIED
            else RUNNERS[base](case.with_nfca_caps())
        )
        res.prequalification = "nfca"
        return res
    return RUNNERS[base](case, method) if method is not None else RUNNERS[base](case)
