"""Prequalification of distribution bids before a TSO-layer market (seed §4.3.4-4.3.5).

Each method returns a cap per distribution bid: the most the TSO layer may activate. A set of
caps is *grid-safe* when every combination of activations inside the caps keeps the network
within its limits or, where the state the caps start from already violates a limit, adds no
violation to it. Under LinDistFlow an up activation anywhere lowers every branch's forward flow
and raises every voltage, and a down activation does the opposite, so two states bound every
combination: all up bids at their caps (no down) and all down bids at their caps (no up). Hence
two OPF-type LPs per network, as in the seed.

* ``price_oe``   operating envelope maximising sum(cap / price): cheap bids first
* ``uniform_oe`` operating envelope maximising sum(cap): every bid weighted equally
* ``interrface`` drop the most expensive bid until full activation of the rest is grid-safe
* ``nfca``       ``price_oe`` on a case whose LV bids are already capped by their NFCA envelopes
                 (``Case.with_nfca_caps``; the schemes do that for every layer)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from market_bridge.cases import Bid, Case
from market_bridge.clearing import clear_layer, distribution_injection, relaxed_limits
from market_bridge.networks import lindistflow


@dataclass(frozen=True)
class Prequalified:
    """Caps per distribution bid (MW) and the number of LPs or power flows it took."""

    cap: dict[str, float]
    n_solves: int


def unqualified_share(
    bids: Iterable[Bid], volume: Mapping[str, float], cap: Mapping[str, float], direction: str
) -> float:
    """Share of ``volume`` (MW per bid) in ``direction`` that the caps do not qualify."""
    group = [b for b in bids if b.direction == direction]
    tot = sum(volume.get(b.bid_id, 0.0) for b in group)
    ok = sum(min(cap.get(b.bid_id, 0.0), volume.get(b.bid_id, 0.0)) for b in group)
    return float((tot - ok) / tot) if tot > 1e-9 else 0.0


def _envelope(
    case: Case,
    dname: str,
    bids: list[Bid],
    available: Mapping[str, float],
    prior: Mapping[str, float],
    weight: Mapping[str, float],
) -> tuple[dict[str, float], int]:
    """Operating envelope of one network: per direction, maximise sum(weight * cap) such that all
    bids of that direction at their caps keep the network within relaxed limits."""
    cap: dict[str, float] = {}
    n = 0
    for direction in ("up", "down"):
        group = [b for b in bids if b.direction == direction and available.get(b.bid_id, 0.0) > 1e-9]
        if not group:
            continue
        res = clear_layer(
            case,
            f"oe_{dname}_{direction}",
            group,
            available,
            prior,
            distribution={dname: "relaxed"},
            weights={b.bid_id: -weight[b.bid_id] for b in group},
        )
        n += 1
        if res.solve.ok:
            cap.update(res.activation)
        # An infeasible envelope LP cannot happen (zero caps reproduce the relaxed state); if the
        # solver fails anyway, nothing in that group qualifies.
    return cap, n


def _interrface(
    case: Case, dname: str, bids: list[Bid], available: Mapping[str, float], prior: Mapping[str, float]
) -> tuple[dict[str, float], int]:
    """Iterative full-activation check (INTERRFACE): per direction, drop the most expensive bid
    until full activation of all remaining bids is within the relaxed limits (a LinDistFlow
    power flow per iteration)."""
    net = case.distributions[dname]
    base_inj = distribution_injection(case, dname, prior)
    lim = relaxed_limits(net, lindistflow(net, base_inj))
    cap: dict[str, float] = {}
    n = 0
    for direction in ("up", "down"):
        group = sorted(
            (b for b in bids if b.direction == direction and available.get(b.bid_id, 0.0) > 1e-9),
            key=lambda b: (b.price, b.bid_id),
        )
        while group:
            inj = base_inj.copy()
            for b in group:
                inj[net.node(b.bus)] += b.sign * available[b.bid_id]
            st = lindistflow(net, inj)
            n += 1
            w = st.v_pu**2
            if (
                np.all(st.p_mw <= lim.p_max + 1e-9)
                and np.all(st.p_mw >= lim.p_min - 1e-9)
                and np.all(w[1:] <= lim.w_max[1:] + 1e-9)
                and np.all(w[1:] >= lim.w_min[1:] - 1e-9)
            ):
                break
            group.pop()  # the most expensive remaining bid
        cap.update({b.bid_id: available[b.bid_id] for b in group})
    return cap, n


def prequalify(case: Case, method: str, available: Mapping[str, float], prior: Mapping[str, float]) -> Prequalified:
    """Caps for the distribution bids with ``available`` volume, on top of ``prior`` activations."""
    cap: dict[str, float] = {}
    n = 0
    for dname in case.distributions:
        bids = case.bids_in(dname)
        if method == "interrface":
            c, k = _interrface(case, dname, bids, available, prior)
        elif method in ("price_oe", "nfca"):
            c, k = _envelope(case, dname, bids, available, prior, {b.bid_id: 1.0 / max(b.price, 1e-6) for b in bids})
        elif method == "uniform_oe":
            c, k = _envelope(case, dname, bids, available, prior, {b.bid_id: 1.0 for b in bids})
        else:
            raise ValueError(f"unknown prequalification method {method!r}")
        cap.update(c)
        n += k
    return Prequalified(cap, n)
