"""The model's physics at fixed operating points, and the worst point of a box for every limit.

On an unbalanced feeder the worst operating point of an envelope box is rarely "everyone at the
envelope": a user on another phase who uses less, or power in the other direction, can raise a
phase's voltage through the mutual impedances and the neutral. For each limit the worst vertex
is found from sensitivities: linearise the power flow at a point, put every end-user at the end
of its range that pushes that limit's quantity the wrong way, solve the power flow there, and
repeat from the new point until no end-user moves. The points found are checked exactly (the
model's power flow); the envelope problem adds those that break a limit as scenarios.

Nothing here decides a published number: the exact non-convex UTOPF does, and OpenDSS verifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nfca.model.limits import Limits
from nfca.opf.network import VOLTAGE, LimitMap, PuNetwork, ZBusPowerFlow, limit_map


@dataclass(frozen=True)
class Candidate:
    """A vertex of the box (t per end-user in {0, 1}) and how far it breaks the limits there."""

    t: np.ndarray
    excess: float  # the largest excess over a limit at this point (fraction of the limit; <= 0 within)
    worst: int  # the LimitMap row of that limit (-1: the power flow does not converge)
    limits: tuple[int, ...]  # the rows whose worst vertex this is
    side: str = "upper"  # which bound of `worst` breaks (or comes nearest): "upper" or "lower"


class PointModel:
    """The model's power flow (Z-bus iteration on the factorised admittance matrix), its limited
    quantities, and their first-order sensitivities to every end-user's power."""

    def __init__(self, net: PuNetwork, limits: Limits):
        self.net = net
        self.pf = ZBusPowerFlow(net)
        self.lim: LimitMap = limit_map(net, limits)
        legs = [(u, p, q) for u, ls in enumerate(net.user_legs) for p, q in ls]
        self.leg_u = np.array([u for u, _, _ in legs])
        self.leg_p = np.array([p for _, p, _ in legs])
        self.leg_q = np.array([q for _, _, q in legs])
        self.leg_n = np.array([len(net.user_legs[u]) for u in self.leg_u])
        # Z (e_p - e_q) per leg: how a current drawn by the leg moves every node voltage
        e = np.zeros((net.n, len(legs)), dtype=complex)
        for k, (p, q) in enumerate(zip(self.leg_p, self.leg_q)):
            if p >= 0:
                e[p, k] += 1
            if q >= 0:
                e[q, k] -= 1
        self.az = np.asarray(self.lim.a @ self.pf.lu.solve(e))  # limited quantities per unit leg current
        self.to_user = sp.csr_matrix((np.ones(len(legs)), (np.arange(len(legs)), self.leg_u)),
                                     shape=(len(legs), len(net.users)))

    def voltages(self, s_user: np.ndarray) -> np.ndarray | None:
        """Node voltages (pu) at end-user powers `s_user` (pu, consumption +); None if the power
        flow does not converge (the point is far beyond the feeder's limits)."""
        with np.errstate(all="ignore"):
            v = self.pf.solve(s_user, tol=1e-10, max_iter=500)
        return v if v is not None and np.all(np.isfinite(v)) else None

    def excess(self, s_user: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Every limit's excess at `s_user` (inf everywhere if the power flow fails), and the voltages."""
        v = self.voltages(s_user)
        if v is None:
            return np.full(len(self.lim), np.inf), None
        return self.lim.excess(v), v

    def gradient(self, v: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """d|Q_k| / d conj(s_u) as complex coefficients: d|Q_k| ~ Re(G[k, u] conj(ds_u)), for the
        limited quantities `rows` at voltages `v` (load currents taken as fixed currents)."""
        ve = np.append(v, 0.0)
        dv_leg = ve[self.leg_p] - ve[self.leg_q]
        w = -1.0 / (self.leg_n * np.conj(dv_leg))  # dI_leg = conj(ds_u / n) / conj(dV_leg)
        dq = (self.az[rows] * w) @ self.to_user  # dQ per conj(ds_u)
        q = self.lim.a[rows] @ v
        unit = np.conj(q) / np.maximum(np.abs(q), 1e-12)
        return unit[:, None] * dq


def box_powers(lo: np.ndarray, hi: np.ndarray, tan_phi: float, t: np.ndarray) -> np.ndarray:
    """End-user powers (pu, complex) at points t of the box [lo, hi] (pu of active power); t may
    be one point or a matrix of points (one per row)."""
    p = lo + t * (hi - lo)
    return p + 1j * tan_phi * np.abs(p)


def worst_vertices(model: PointModel, lo: np.ndarray, hi: np.ndarray, tan_phi: float,
                   screen: float = 0.03, max_steps: int = 5, rows: np.ndarray | None = None) -> list[Candidate]:
    """The worst vertex of the box [lo, hi] (pu per end-user) for every limit that could be near
    its bound there, each checked by the model's power flow, worst first, one per distinct vertex.

    `screen`: limits whose first-order worst case stays below their bound by more than this
    fraction are not searched (they cannot be reached in the box)."""
    free = hi > lo
    n = len(lo)
    lim = model.lim
    rows = np.arange(len(lim)) if rows is None else rows
    # Linearise at the centre of the box: each quantity's range over the box to first order.
    t0 = np.where(free, 0.5, 1.0)
    v0 = model.voltages(box_powers(lo, hi, tan_phi, t0))
    if v0 is None:  # the centre is beyond the feeder: start from every user at its low end
        t0 = np.zeros(n)
        v0 = model.voltages(box_powers(lo, hi, tan_phi, t0))
        if v0 is None:
            return [Candidate(t0, np.inf, -1, ())]
    mag0 = lim.magnitudes(v0)
    g = model.gradient(v0, rows)
    swing = np.abs(np.real(g * np.conj(box_powers(lo, hi, tan_phi, np.ones(n)) - box_powers(lo, hi, tan_phi, np.zeros(n)))))
    half = 0.5 * swing.sum(axis=1)
    # both sides of customer voltages, the upper side of everything else
    rows_lo = rows[(lim.kind[rows] == VOLTAGE) & (lim.lower[rows] > 0)]
    up_ok = (mag0[rows] + half - lim.upper[rows]) / lim.upper[rows] > -screen
    lo_idx = np.searchsorted(rows, rows_lo)
    lo_ok = (lim.lower[rows_lo] - (mag0[rows_lo] - half[lo_idx])) / lim.lower[rows_lo] > -screen
    targets = [(int(k), 1.0) for k in rows[up_ok]] + [(int(k), -1.0) for k in rows_lo[lo_ok]]
    if not targets:
        return []
    # each target's vertex: its start from the centre's linearisation, then re-linearised at the vertex
    pattern = {}
    for k, side in targets:
        pattern[(k, side)] = _best_vertex(model, lo, hi, tan_phi, v0, t0, k, side, free)
    evaluated: dict[bytes, tuple[np.ndarray, np.ndarray | None]] = {}
    for _ in range(max_steps):
        moved = False
        by_vertex: dict[bytes, list[tuple[int, float]]] = {}
        for key, t in pattern.items():
            by_vertex.setdefault(t.tobytes(), []).append(key)
        for tb, keys in by_vertex.items():
            t = np.frombuffer(tb)
            if tb not in evaluated:
                evaluated[tb] = model.excess(box_powers(lo, hi, tan_phi, t))
            _, v = evaluated[tb]
            if v is None:
                continue
            for key in keys:
                t_new = _best_vertex(model, lo, hi, tan_phi, v, t, key[0], key[1], free)
                if not np.array_equal(t_new, t):
                    pattern[key] = t_new
                    moved = True
        if not moved:
            break
    out: dict[bytes, Candidate] = {}
    for key, t in pattern.items():
        tb = t.tobytes()
        if tb not in evaluated:
            evaluated[tb] = model.excess(box_powers(lo, hi, tan_phi, t))
        ex, v = evaluated[tb]
        worst = int(np.argmax(ex)) if v is not None else -1
        side = "lower" if v is not None and lim.lower[worst] > 0 and lim.magnitudes(v)[worst] < lim.lower[worst] else "upper"
        prev = out.get(tb)
        out[tb] = Candidate(t, float(np.max(ex)), worst, (prev.limits if prev else ()) + (key[0],), side)
    return sorted(out.values(), key=lambda c: -c.excess)


def _best_vertex(model: PointModel, lo, hi, tan_phi, v: np.ndarray, t: np.ndarray, row: int, side: float,
                 free: np.ndarray) -> np.ndarray:
    """From vertex t (voltages v), move each end-user to the end of its range that pushes
    quantity `row` the wrong way (up, or down for side -1), to first order."""
    g = model.gradient(v, np.array([row]))[0]
    s_hi = box_powers(lo, hi, tan_phi, np.ones(len(lo)))
    s_lo = box_powers(lo, hi, tan_phi, np.zeros(len(lo)))
    gain = side * np.real(g * np.conj(s_hi - s_lo))  # moving from low to high end
    return np.where(free, (gain > 0).astype(float), t)
