"""The feeder in per unit for the optimiser: integer-indexed conductors, admittances, a fast
power flow, and the map from node voltages to every limited quantity.

This is the *mathematical* network (PowerModels' word): per unit on one power base, conductors
numbered, earth as index -1. It is built from a `Feeder` and read by the Pyomo formulation
(`nfca.opf.formulation`), the worst-case search (`nfca.opf.worstcase`) and the binding-limit
report, so all of them see the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from nfca.model.limits import Limits, limit_excess
from nfca.model.network import EARTH, PHASES, Feeder, leg_label, leg_nominal_pu
from nfca.solver import one_blas_thread

one_blas_thread()  # scipy's BLAS, loaded by scipy.sparse.linalg

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
        model's margin (a fraction of each limit, so limits in volts stay the same volts whatever
        the voltage bases) inside them unless `margin` is False."""
        lo, hi = limits.voltage_bounds_pu(self.vleg_nominal_v)
        d = limits.v_margin_pu if margin else 0.0
        return lo * (1 + d), hi * (1 - d)

    def neutral_max_pu(self, limits: Limits, margin: bool = True) -> np.ndarray:
        """Upper limit of every limited neutral-to-earth voltage (pu of its node's base)."""
        if limits.v_neutral_max_v is None:
            return np.full(len(self.vneutral), np.inf)
        d = limits.v_margin_pu if margin else 0.0
        return np.array([limits.v_neutral_max_v / self.v_base[i] - d for i, _ in self.vneutral])

    @property
    def n(self) -> int:
        return len(self.nodes)

    @cached_property
    def y(self) -> sp.csr_matrix:
        """Nodal admittance (pu) of lines, linear elements and the source impedance."""
        return admittance_matrix(self).tocsr()


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
        feeder=feeder,
        s_base_va=s_base,
        nodes=nodes,
        v_base=v_base,
        c_line=tuple(c_line),
        c_from=np.array(c_from, dtype=int),
        c_to=np.array(c_to, dtype=int),
        c_imax=np.array(c_imax),
        line_slices=tuple(slices),
        line_z=tuple(zs),
        line_yhalf=tuple(yhs),
        el_idx=tuple(el_idx),
        el_y=tuple(el_y),
        el_rated=tuple(el_rated),
        el_imax=tuple(el_imax),
        src_idx=src_idx,
        src_y=src.y_s * vb_src**2 / s_base,
        src_e=src.e_v / vb_src * (1.0 if source_pu is None else source_pu / src.pu),
        users=tuple(users),
        user_legs=tuple(legs),
        user_cap=np.array(caps),
        vlegs=tuple(vlegs.values()),
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


def source_injection(net: PuNetwork) -> np.ndarray:
    """The source's Norton current (pu) injected at every node: Y_src E."""
    j = np.zeros(net.n, dtype=complex)
    np.add.at(j, net.src_idx, net.src_y @ net.src_e)
    return j


class ZBusPowerFlow:
    """Power flow by Z-bus (fixed-point) iteration on one factorised admittance matrix.

    Cheap and exact at convergence: a starting point for Ipopt, and a quick test of fixed
    operating points, many at once (one factorisation, many right-hand sides). Powers are per
    unit, consumption positive.
    """

    def __init__(self, net: PuNetwork):
        self.net = net
        self.lu = spla.splu(net.y.tocsc())
        self.i_src = source_injection(net)
        self.v_noload = self.lu.solve(self.i_src)
        legs = [(u, p, q, len(ls)) for u, ls in enumerate(net.user_legs) for p, q in ls]
        self.leg_u, self.leg_p, self.leg_q, self.leg_n = (np.array(x) for x in zip(*legs))
        # leg voltage = V @ d; node injection of the leg currents = I @ d.T (earth dropped)
        rows, cols, vals = [], [], []
        for k, (p, q) in enumerate(zip(self.leg_p, self.leg_q)):
            for node, sign in ((p, 1.0), (q, -1.0)):
                if node >= 0:
                    rows.append(node), cols.append(k), vals.append(sign)
        self.d = sp.csr_matrix((vals, (rows, cols)), shape=(net.n, len(legs)))

    def solve(
        self, s_user: np.ndarray, tol: float = 1e-11, max_iter: int = 200, v0: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Node voltages (pu); None if the iteration does not converge to `tol` (pu) in time."""
        v, ok = self.solve_many(np.asarray(s_user)[None, :], tol, max_iter, None if v0 is None else v0[None, :])
        return v[0] if ok[0] else None

    def solve_many(
        self, s_user: np.ndarray, tol: float = 1e-11, max_iter: int = 200, v0: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Node voltages (pu) of many operating points at once (one per row of `s_user`, starting
        from the rows of `v0`, default the no-load voltages), and which converged to `tol`."""
        m = s_user.shape[0]
        s_leg = s_user[:, self.leg_u] / self.leg_n
        v = np.tile(self.v_noload, (m, 1)) if v0 is None else np.array(v0, dtype=complex)
        ok = np.zeros(m, dtype=bool)
        live = np.flatnonzero(np.any(s_leg != 0, axis=1))
        v[np.setdiff1d(np.arange(m), live)] = self.v_noload  # no load: exact
        ok[np.setdiff1d(np.arange(m), live)] = True
        for _ in range(max_iter):
            if not live.size:
                break
            dv = (self.d.T @ v[live].T).T
            bad = np.any(np.abs(dv) < 1e-3, axis=1)  # a collapsed voltage: no solution near here
            i = np.conj(s_leg[live] / np.where(np.abs(dv) < 1e-3, 1.0, dv))
            v_new = self.lu.solve(self.i_src[:, None] - self.d @ i.T).T
            step = np.max(np.abs(v_new - v[live]), axis=1)
            v[live] = v_new
            done = (step < tol) & ~bad
            ok[live[done]] = True
            live = live[~done & ~bad & np.isfinite(step)]
        return v, ok


def fixed_point_voltages(net: PuNetwork, s_user: np.ndarray) -> np.ndarray:
    """Node voltages (pu) for end-user powers `s_user`: a starting point for Ipopt.

    Where the iteration does not converge (a point beyond the feeder's limits) the no-load
    voltages are returned, which are as good a start as any.
    """
    pf = ZBusPowerFlow(net)
    v = pf.solve(s_user, tol=1e-9, max_iter=50)
    return pf.v_noload if v is None else v


def leg_voltages_pu(net: PuNetwork, v: np.ndarray) -> np.ndarray:
    """Magnitude of every limited customer voltage, per unit of its nominal."""
    out = []
    for p, q, nom, _ in net.vlegs:
        dv = (v[p] if p >= 0 else 0) - (v[q] if q >= 0 else 0)
        out.append(abs(dv) / nom)
    return np.array(out)


def neutral_voltages_v(net: PuNetwork, v: np.ndarray) -> np.ndarray:
    """Neutral-to-earth voltage (V) of every neutral conductor an end-user is connected to."""
    return np.array([abs(v[i]) * net.v_base[i] for i, _ in net.vneutral])


# ----------------------------------------------------------------------------- limited quantities

VOLTAGE, NEUTRAL, CURRENT, RATING = "voltage", "neutral", "current", "rating"


@dataclass(frozen=True, eq=False)
class LimitMap:
    """Every limited quantity as a linear function of the node voltages, Q = A V (pu), with the
    bounds on its magnitude: customer voltages (pu of their nominal), neutral-to-earth voltages
    (pu of the node's base), line conductor and transformer terminal currents (pu).

    One table for the worst-case search, the firm-infeasibility proof, the binding-limit report
    and quick checks of fixed operating points, so they all judge by the same numbers.
    """

    a: sp.csr_matrix
    lower: np.ndarray  # on |Q|; 0 where there is none
    upper: np.ndarray
    kind: np.ndarray  # VOLTAGE, NEUTRAL, CURRENT or RATING per quantity
    element: tuple[str, ...]  # the bus (voltages), line or transformer that carries it
    phase: tuple[str, ...]  # "a", "ab", "n", ... of the conductor or leg
    limit: np.ndarray  # the real upper limit (no margin) in the unit a planner reads: pu, V or A
    lower_limit: np.ndarray  # the real lower limit (customer voltages), same unit
    unit: tuple[str, ...]
    scale: np.ndarray  # |Q| times this is in `unit`

    def value_text(self, k: int, mag: float) -> str:
        """A quantity's magnitude as a planner reads it: '0.881 pu', '219.5 V', '106 %' of a rating."""
        if self.kind[k] in (CURRENT, RATING):
            return f"{100 * mag * self.scale[k] / self.limit[k]:.0f} %"
        return f"{mag * self.scale[k]:.3f} {self.unit[k]}" if self.unit[k] == "pu" else f"{mag * self.scale[k]:.1f} V"

    def __len__(self) -> int:
        return len(self.kind)

    def magnitudes(self, v: np.ndarray) -> np.ndarray:
        return np.abs(self.a @ v)

    def excess(self, v: np.ndarray) -> np.ndarray:
        """How far each quantity is beyond its bounds (fraction of the bound; <= 0 within)."""
        return self.excess_of(self.magnitudes(v))

    def excess_of(self, magnitudes: np.ndarray) -> np.ndarray:
        """`excess` from the quantities' magnitudes."""
        return limit_excess(magnitudes, self.lower, self.upper)

    def describe(self, k: int, side: str = "upper") -> str:
        """One quantity's limit in words, e.g. 'voltage bus 906 phase a 0.90 pu'."""
        kind, elem, ph = self.kind[k], self.element[k], self.phase[k]
        if kind == VOLTAGE:
            lim = self.limit[k] if side == "upper" else self.lower_limit[k]
            word = "phase" if len(ph) == 1 or ph.endswith("n") else "phases"
            return f"voltage bus {elem} {word} {ph} {lim:.2f} {self.unit[k]}"
        if kind == NEUTRAL:
            return f"neutral voltage bus {elem} node {ph} {self.limit[k]:g} V"
        if kind == CURRENT:
            return f"ampacity line {elem}"
        return f"rating {elem}"


def limit_map(net: PuNetwork, limits: Limits, margin: bool = True) -> LimitMap:
    """The limited quantities of `net` under `limits` (the model's margins inside them unless
    `margin` is False)."""
    rows, cols, vals = [], [], []
    lower, upper, kind, element, phase, limit, lower_limit, unit, scales = [], [], [], [], [], [], [], [], []

    def add(
        entries: list[tuple[int, complex]],
        lo: float,
        hi: float,
        k: str,
        elem: str,
        ph: str,
        lim: float,
        lim_lo: float = 0.0,
        u: str = "",
        scale: float = 1.0,
    ) -> None:
        r = len(kind)
        for j, val in entries:
            if j >= 0 and val != 0:
                rows.append(r), cols.append(j), vals.append(val)
        lower.append(lo), upper.append(hi), kind.append(k), element.append(elem), phase.append(ph)
        limit.append(lim), lower_limit.append(lim_lo), unit.append(u), scales.append(scale)

    lo, hi = net.voltage_bounds_pu(limits, margin)
    lo_real, hi_real = net.voltage_bounds_pu(limits, margin=False)
    volts = limits.vmin_v is not None or limits.vmax_v is not None
    for k, (p, q, nom, label) in enumerate(net.vlegs):
        bus, ph = label.split()[1], label.split()[-1]
        scale = net.vleg_nominal_v[k] if volts else 1.0
        add(
            [(p, 1 / nom), (q, -1 / nom)],
            lo[k],
            hi[k],
            VOLTAGE,
            bus,
            ph,
            hi_real[k] * scale,
            lo_real[k] * scale,
            "V" if volts else "pu",
            scale,
        )
    if limits.v_neutral_max_v is not None:
        for (i, label), lim in zip(net.vneutral, net.neutral_max_pu(limits, margin)):
            add(
                [(i, 1.0)],
                0.0,
                lim,
                NEUTRAL,
                label.split()[1],
                label.split()[-1],
                limits.v_neutral_max_v,
                u="V",
                scale=net.v_base[i],
            )
    keep = 1 - (limits.i_margin if margin else 0.0)
    lines = {line.name: line for line in net.feeder.lines}
    names = {1: "a", 2: "b", 3: "c"}
    for sl, z in zip(net.line_slices, net.line_z):
        zi = np.linalg.inv(z)
        cs = list(range(sl.start, sl.stop))
        line = lines[net.c_line[sl.start]]
        for a, c in enumerate(cs):
            entries = []
            for b, c2 in enumerate(cs):
                entries += [(net.c_from[c2], zi[a, b]), (net.c_to[c2], -zi[a, b])]
            node = line.nodes_from[a]
            base_a = net.s_base_va / net.v_base[net.c_from[c]]  # pu to A
            add(
                entries,
                0.0,
                net.c_imax[c] * keep,
                CURRENT,
                line.rating_name,
                names.get(node, "n"),
                net.c_imax[c] * base_a,
                u="A",
                scale=base_a,
            )
    for e, (ix, y, rated, imax) in enumerate(zip(net.el_idx, net.el_y, net.el_rated, net.el_imax)):
        el = net.feeder.elements[e]
        for r, lim in zip(rated, imax):
            add(
                [(j, y[r, b]) for b, j in enumerate(ix)],
                0.0,
                lim * keep,
                RATING,
                el.name,
                names.get(el.terminals[r][1], "n"),
                el.rating_a,
                u="A",
                scale=el.rating_a / lim,
            )
    a = sp.csr_matrix((vals, (rows, cols)), shape=(len(kind), net.n), dtype=complex)
    return LimitMap(
        a,
        np.array(lower),
        np.array(upper),
        np.array(kind),
        tuple(element),
        tuple(phase),
        np.array(limit),
        np.array(lower_limit),
        tuple(unit),
        np.array(scales),
    )
