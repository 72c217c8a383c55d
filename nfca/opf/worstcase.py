"""The model's physics at fixed operating points, and the worst point of a box for every limit.

On an unbalanced feeder the worst operating point of an envelope box is rarely "everyone at the
envelope": a user on another phase who uses less, or power in the other direction, can raise a
phase's voltage through the mutual impedances and the neutral. For each limit the worst vertex
is found from sensitivities: linearise the power flow at a point, put every end-user at the end
of its range that pushes that limit's quantity the wrong way, solve the power flow there, and
repeat from the new point until no end-user moves, then improve each near-binding limit's worst
vertex one end-user's move at a time with the exact power flow. A box of at most `EXHAUSTIVE`
free end-users is simply solved at every vertex. The points found are checked exactly (the
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
    """The model's power flow at fixed operating points, many at once, and every limited
    quantity there, with their first-order sensitivities to each end-user's power.

    The fixed-point (Z-bus) power flow lives in the space of the end-users' legs: with Z the
    inverse nodal admittance and D the legs' incidence, leg voltages dV = dV0 - M I (M = D' Z D)
    and leg currents I = conj(s / dV); every limited quantity is then Q = Q0 - (A Z D) I. Exact at
    convergence (the same equations as the network), and a few small dense products per point.
    """

    def __init__(self, net: PuNetwork, limits: Limits):
        self.net = net
        self.pf = ZBusPowerFlow(net)
        self.lim: LimitMap = limit_map(net, limits)
        pf = self.pf
        self.leg_u, self.leg_n = pf.leg_u, pf.leg_n
        self.ze = pf.lu.solve(pf.d.toarray().astype(complex))  # node voltages per unit leg current
        self.m_leg = np.asarray(pf.d.T @ self.ze)  # leg voltages per unit leg current
        self.az = np.asarray(self.lim.a @ self.ze)  # limited quantities per unit leg current
        self.dv0 = pf.d.T @ pf.v_noload
        self.q0 = self.lim.a @ pf.v_noload
        self.to_user = sp.csr_matrix(
            (np.ones(len(self.leg_u)), (np.arange(len(self.leg_u)), self.leg_u)),
            shape=(len(self.leg_u), len(net.users)),
        )
        self.leg_to_user = self.to_user.T.tocsr()

    def solve(
        self, s_user: np.ndarray, tol: float = 1e-10, max_iter: int = 500, start: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leg currents and leg voltages (pu) at end-user powers `s_user` (pu, consumption +; one
        point per row), and which points converged (a point far beyond the feeder has no solution).
        `start`: leg voltages to iterate from (a nearby point's; default: no load)."""
        s_user = np.atleast_2d(s_user)
        s_leg = s_user[:, self.leg_u] / self.leg_n
        m = len(s_leg)
        dv = np.tile(self.dv0 if start is None else start, (m, 1))
        i = np.zeros_like(dv)
        ok = np.zeros(m, dtype=bool)
        live = np.arange(m)
        with np.errstate(all="ignore"):
            for _ in range(max_iter):
                if not live.size:
                    break
                i[live] = np.conj(s_leg[live] / dv[live])
                new = self.dv0 - i[live] @ self.m_leg.T
                step = np.max(np.abs(new - dv[live]), axis=1) if new.shape[1] else np.zeros(len(live))
                dv[live] = new
                collapsed = np.any(np.abs(new) < 1e-3, axis=1) | ~np.isfinite(step)
                done = (step < tol) & ~collapsed
                i[live[done]] = np.conj(s_leg[live[done]] / dv[live[done]])
                ok[live[done]] = True
                live = live[~done & ~collapsed]
        return i, dv, ok

    def quantities(self, i: np.ndarray) -> np.ndarray:
        """Every limited quantity Q (complex, pu) at leg currents `i` (one point per row)."""
        return self.q0 - np.atleast_2d(i) @ self.az.T

    def voltages(self, s_user: np.ndarray) -> np.ndarray | None:
        """Node voltages (pu) at end-user powers `s_user`; None if the power flow does not converge."""
        i, _, ok = self.solve(s_user)
        return self.pf.v_noload - self.ze @ i[0] if ok[0] else None

    def excess(self, s_user: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Every limit's excess at `s_user` (inf everywhere if the power flow fails), and the voltages."""
        i, _, ok = self.solve(s_user)
        if not ok[0]:
            return np.full(len(self.lim), np.inf), None
        q = self.quantities(i)[0]
        return self.lim.excess_of(np.abs(q)), self.pf.v_noload - self.ze @ i[0]

    def sensitivity(self, v: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """dQ_k / d conj(s_u): dQ_k ~ sum_u D[k, u] conj(ds_u) for the limited quantities `rows`
        at node voltages `v` (first order, load currents taken as fixed currents)."""
        dv_leg = self.pf.d.T @ v
        w = -1.0 / (self.leg_n * np.conj(dv_leg))  # dI_leg = conj(ds_u / n) / conj(dV_leg)
        return np.asarray((self.az[rows] * w) @ self.to_user)

    def effect(self, dv_leg: np.ndarray, s_user: np.ndarray, rows: np.ndarray, ds: np.ndarray) -> np.ndarray:
        """dQ[k, u]: the change of limited quantity k (of `rows`) when end-user u's power moves by
        ds[u] from the operating point with leg voltages `dv_leg` and powers `s_user`, to first
        order: the user's own current, and the current every constant-power user then draws at
        its moved voltage (a lower voltage draws more current: remote users move a line's
        current that way)."""
        s_leg = s_user[self.leg_u] / self.leg_n
        # the legs' own current change (leg x user), and the change of every constant-power leg's
        # current I = conj(s / dV) at the voltage change -M di0 it causes: di0 + c conj(M di0)
        di0 = np.conj(ds[self.leg_u]) / (self.leg_n * np.conj(dv_leg))  # each leg's, from its own user
        c = np.conj(s_leg / dv_leg**2)
        a = self.az[rows]
        through = (a * c[None, :]) @ np.conj(self.m_leg)  # dQ per unit conj(own current change)
        per_leg = a * di0[None, :] + through * np.conj(di0)[None, :]
        return -np.asarray(self.leg_to_user @ per_leg.T).T  # summed over each user's legs

    def gradient(self, v: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """d|Q_k| ~ Re(G[k, u] conj(ds_u)): the sensitivity projected on each quantity's phasor."""
        q = self.lim.a[rows] @ v
        unit = np.conj(q) / np.maximum(np.abs(q), 1e-12)
        return unit[:, None] * self.sensitivity(v, rows)


def box_powers(lo: np.ndarray, hi: np.ndarray, tan_phi: float, t: np.ndarray) -> np.ndarray:
    """End-user powers (pu, complex) at points t of the box [lo, hi] (pu of active power); t may
    be one point or a matrix of points (one per row)."""
    p = lo + t * (hi - lo)
    return p + 1j * tan_phi * np.abs(p)


ANGLES = np.exp(-1j * np.linspace(0, 2 * np.pi, 32, endpoint=False))
EXHAUSTIVE = 10  # boxes with at most this many free end-users are searched vertex by vertex
POLISH_MOVES = 8  # single end-user moves solved exactly per step of the polish (the most promising)


def worst_vertices(
    model: PointModel,
    lo: np.ndarray,
    hi: np.ndarray,
    tan_phi: float,
    screen: float = 0.1,
    max_steps: int = 5,
    rows: np.ndarray | None = None,
    starts_per_row: int = 3,
    polish_within: float = 0.01,
) -> list[Candidate]:
    """The worst vertex of the box [lo, hi] (pu per end-user) for every limit that could be near
    its bound there, each checked by the model's power flow, worst first, one per distinct vertex.

    To first order a limited quantity is affine in the vertex, Q = c + sum_u z_u (t_u - 1/2), and
    its largest magnitude over the vertices is max over directions e of Re(e* c) + sum |Re(e* z_u)|
    / 2 (searched on 32 directions; a current can pass through zero inside a box, so projecting
    on its phasor at one point would not do). The smallest magnitude of a customer voltage (far
    from zero) is its projection's minimum. Each vertex is then re-linearised where it lands
    until no end-user moves; the worst vertex met for each limit is kept. Limits that end within
    `polish_within` of their bound are then polished exactly: every single end-user's move is
    solved by the power flow, the worst taken, until none makes it worse (first-order models miss
    second-order couplings, e.g. a phase current split between dissimilar parallel cables).
    `screen`: limits whose first-order bound over the box stays below their bound by more than
    this fraction cannot be reached and are not searched."""
    free = hi > lo
    n = len(lo)
    lim = model.lim
    rows = np.arange(len(lim)) if rows is None else np.asarray(rows)
    # each end-user's power change from the low to the high end of its range
    swing = (box_powers(lo, hi, tan_phi, np.ones(n)) - box_powers(lo, hi, tan_phi, np.zeros(n))) * free
    t0 = np.where(free, 0.5, 1.0)
    cache: dict[bytes, tuple | None] = {}  # vertex -> (Q, |Q|, leg voltages, powers), None if no solution

    def solve_points(ts: list[np.ndarray]) -> None:
        todo = [t for t in ts if t.tobytes() not in cache]
        if not todo:
            return
        s = box_powers(lo, hi, tan_phi, np.array(todo))
        i, dv, ok = model.solve(s)
        q = model.quantities(i)
        for j, t in enumerate(todo):
            cache[t.tobytes()] = (q[j], np.abs(q[j]), dv[j], s[j]) if ok[j] else None

    solve_points([t0])
    if cache[t0.tobytes()] is None:  # the centre is beyond the feeder: start from every user at its low end
        t0 = np.zeros(n)
        solve_points([t0])
        if cache[t0.tobytes()] is None:
            return [Candidate(t0, np.inf, -1, ())]
    if free.sum() <= EXHAUSTIVE:
        return _candidates(model, _every_vertex(model, lo, hi, tan_phi, free, t0, rows, screen), solve_points, cache)
    q_all, _, dv0, s0 = cache[t0.tobytes()]
    c = q_all[rows]
    z = model.effect(dv0, s0, rows, swing)
    bound = np.abs(c) + 0.5 * np.abs(z).sum(axis=1)  # no vertex exceeds it (to first order)
    up_ok = bound >= lim.upper[rows] * (1 - screen)
    lo_rows = (lim.kind[rows] == VOLTAGE) & (lim.lower[rows] > 0)
    proj = np.real(np.conj(c / np.maximum(np.abs(c), 1e-12))[:, None] * z)
    lo_ok = lo_rows & (np.abs(c) - 0.5 * np.abs(proj).sum(axis=1) <= lim.lower[rows] * (1 + screen))
    # each (row, side) from a few starts: the best directions of its first-order model
    starts: list[tuple[tuple[int, str], np.ndarray]] = []
    for j in np.flatnonzero(up_ok):
        starts += [((int(rows[j]), "upper"), t) for t in _extremes(c[j], z[j], t0, free, "upper", starts_per_row)]
    for j in np.flatnonzero(lo_ok):
        starts += [((int(rows[j]), "lower"), t) for t in _extremes(c[j], z[j], t0, free, "lower", 1)]
    if not starts:
        return []

    def value(key: tuple[int, str], t: np.ndarray) -> float:
        """How bad vertex t is for (row, side): the row's magnitude, negated for a lower bound."""
        got = cache[t.tobytes()]
        if got is None:
            return np.inf
        return got[1][key[0]] if key[1] == "upper" else -got[1][key[0]]

    seen: dict[tuple[int, str], dict[bytes, float]] = {}  # every vertex met per limit, and its value
    current = list(starts)
    for _ in range(max_steps):
        solve_points([t for _, t in current])
        for key, t in current:
            seen.setdefault(key, {})[t.tobytes()] = value(key, t)
        nxt = []
        by_vertex: dict[bytes, list[tuple[int, str]]] = {}
        for key, t in current:
            by_vertex.setdefault(t.tobytes(), []).append(key)
        for tb, keys in by_vertex.items():
            t = np.frombuffer(tb)
            got = cache[tb]
            if got is None:
                continue
            ks = np.array([k for k, _ in keys])
            zt = model.effect(got[2], got[3], ks, swing)
            ct = got[0][ks] + (zt * (0.5 - t)[None, :]).sum(axis=1)  # the same affine model, centred
            for j, key in enumerate(keys):
                t_new = _extremes(ct[j], zt[j], t, free, key[1], 1)[0]
                if not np.array_equal(t_new, t):
                    nxt.append((key, t_new))
        if not nxt:
            break
        current = nxt
    moved_volts: dict[bytes, np.ndarray] = {}  # leg voltages of the vertices reached by a move
    moved: dict[bytes, dict[int, tuple[np.ndarray, np.ndarray]]] = {}  # vertex -> user -> (vertex moved to, |Q|)

    def flips(t: np.ndarray, row: int, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Single end-user moves from vertex t for limit `row`: the `POLISH_MOVES` most promising
        by their first-order effect at t (every one when few), each solved by the power flow from
        t's voltages (once per vertex, whatever the limit). The vertices, and |Q| at each (one
        row per move; NaN where the power flow fails)."""
        tb = t.tobytes()
        done = moved.setdefault(tb, {})
        movable = np.flatnonzero(free)
        dv_t = moved_volts[tb] if tb in moved_volts else cache[tb][2]
        if len(movable) > POLISH_MOVES:
            s_t = box_powers(lo, hi, tan_phi, t)
            i_t = np.conj(s_t[model.leg_u] / model.leg_n / dv_t)
            q_t = model.q0[row] - i_t @ model.az[row]  # this row's quantity only
            dq = model.effect(dv_t, s_t, np.array([row]), swing)[0, movable] * (1.0 - 2.0 * t[movable])
            gain = np.abs(q_t + dq) if side == "upper" else -np.abs(q_t + dq)
            movable = movable[np.argsort(-gain, kind="stable")[:POLISH_MOVES]]
        todo = [int(u) for u in movable if int(u) not in done]
        if todo:
            ts = np.tile(t, (len(todo), 1))
            ts[np.arange(len(todo)), todo] = 1.0 - ts[np.arange(len(todo)), todo]
            i, dv, ok = model.solve(box_powers(lo, hi, tan_phi, ts), start=dv_t)
            mags = np.abs(model.quantities(i))
            mags[~ok] = np.nan  # no solution: worse than any bound, for every limit
            for j, u in enumerate(todo):
                done[u] = (ts[j], mags[j])
                if ok[j]:
                    moved_volts.setdefault(ts[j].tobytes(), dv[j])
        return (
            np.array([done[int(u)][0] for u in movable]).reshape(-1, len(t)),
            np.array([done[int(u)][1] for u in movable]).reshape(-1, len(lim)),
        )

    return _candidates(model, _polish(seen, flips, lim, polish_within), solve_points, cache)


def _candidates(model: PointModel, best: dict, solve_points, cache: dict) -> list[Candidate]:
    """One candidate per distinct vertex of `best` ((row, side) -> (value, vertex)), worst first."""
    lim = model.lim
    solve_points([np.array(t) for _, t in best.values()])
    out: dict[bytes, Candidate] = {}
    for key, (_, t) in best.items():
        tb = t.tobytes()
        got = cache[tb]
        if got is None:
            out[tb] = Candidate(t, np.inf, -1, (out[tb].limits if tb in out else ()) + (key[0],))
            continue
        ex = lim.excess_of(got[1])
        worst = int(np.argmax(ex))
        side = "lower" if lim.lower[worst] > 0 and got[1][worst] < lim.lower[worst] else "upper"
        prev = out.get(tb)
        out[tb] = Candidate(t, float(np.max(ex)), worst, (prev.limits if prev else ()) + (key[0],), side)
    return sorted(out.values(), key=lambda x: -x.excess)


def _every_vertex(
    model: PointModel,
    lo: np.ndarray,
    hi: np.ndarray,
    tan_phi: float,
    free: np.ndarray,
    t0: np.ndarray,
    rows: np.ndarray,
    screen: float,
) -> dict[tuple[int, str], tuple[float, np.ndarray]]:
    """The exact worst vertex of a small box for every limit that comes within `screen` of its
    bound there: every vertex solved by the power flow."""
    k = int(free.sum())
    bits = (np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1
    ts = np.tile(t0, (2**k, 1))
    ts[:, free] = bits
    i, _, ok = model.solve(box_powers(lo, hi, tan_phi, ts))
    mags = np.abs(model.quantities(i))[:, rows]
    mags[~ok] = np.inf  # no solution: worse than any bound
    has_lower = (model.lim.kind[rows] == VOLTAGE) & (model.lim.lower[rows] > 0)
    upper, lower = model.lim.upper[rows], model.lim.lower[rows]
    best = {}
    for j, r in enumerate(rows):
        a = int(np.argmax(mags[:, j]))
        if mags[a, j] >= upper[j] * (1 - screen):
            best[(int(r), "upper")] = (float(mags[a, j]), ts[a])
        if has_lower[j]:
            a = int(np.argmin(np.where(ok, mags[:, j], -np.inf)))
            if mags[a, j] <= lower[j] * (1 + screen) or not ok[a]:
                best[(int(r), "lower")] = (-float(mags[a, j]), ts[a])
    return best


def _polish(
    seen: dict, flips, lim: LimitMap, within: float, starts: int = 3, rounds: int = 100
) -> dict[tuple[int, str], tuple[float, np.ndarray]]:
    """The worst vertex per limit. For the limits near their bound, an exact 1-opt from the few
    worst vertices met: the promising single end-user moves solved by the power flow (all at
    once), the worst taken, repeated until no move makes the limit worse."""

    def excess(key, val: float) -> float:
        k, side = key
        return (val - lim.upper[k]) / lim.upper[k] if side == "upper" else (lim.lower[k] + val) / lim.lower[k]

    best = {}
    for key, vertices in seen.items():
        ranked = sorted(vertices.items(), key=lambda kv: -kv[1])
        val, t = ranked[0][1], np.frombuffer(ranked[0][0])
        if np.isfinite(val) and excess(key, val) > -within:
            k, sign = key[0], (1.0 if key[1] == "upper" else -1.0)
            for tb, v1 in ranked[:starts]:
                t1 = np.frombuffer(tb)
                for _ in range(rounds):
                    ts, mags = flips(t1, k, key[1])
                    if not len(ts):
                        break
                    vals = np.nan_to_num(sign * mags[:, k], nan=np.inf)
                    j = int(np.argmax(vals))
                    if vals[j] <= v1 + 1e-12:
                        break
                    v1, t1 = float(vals[j]), ts[j]
                    if not np.isfinite(v1):  # no solution there: as bad as a point can be
                        break
                if v1 > val:
                    val, t = v1, t1
        best[key] = (val, t)
    return best


def _extremes(c: complex, z: np.ndarray, t: np.ndarray, free: np.ndarray, side: str, k: int) -> list[np.ndarray]:
    """Up to k distinct vertices maximising (upper) or minimising (lower) |c + sum z_u (t_u - 1/2)|
    to first order, best first."""
    if side == "upper":
        r = np.real(ANGLES[:, None] * z[None, :])  # per direction, each user's pull
        score = np.real(ANGLES * c) + 0.5 * np.abs(r).sum(axis=1)
        out: dict[bytes, np.ndarray] = {}
        for a in np.argsort(score)[::-1]:
            v = np.where(free, (r[a] > 0).astype(float), t)
            out.setdefault(v.tobytes(), v)
            if len(out) == k:
                break
        return list(out.values())
    unit = np.conj(c) / max(abs(c), 1e-12)
    return [np.where(free, (np.real(unit * z) < 0).astype(float), t)]
