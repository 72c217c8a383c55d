"""Synthetic Sibelga-style LV grid: 3 MV feeders, 49 LV feeders, 712 connection points, 2,267 end-users.

The ALEXANDER D3.3 case study B (section 5.2) uses part of Sibelga's Brussels LV grid. The data are
not public, so this module generates a grid with the published characteristics and writes it as
OpenDSS feeders plus a GeoPackage:

* 3 MV feeders (11 kV) feeding 49 LV feeders at 3x230 V: three wires, no neutral (IT network);
* exactly 712 connection points (CPs) and 2,267 end-users, up to ~20 end-users on one CP;
* single-phase end-users connected phase-to-phase and three-phase end-users, all delta-connected,
  unevenly spread over the phase pairs;
* connection capacities on the standard fuse ratings 16-63 A: 3.7 kVA (1 x 16 A at 230 V) to
  25.1 kVA (3 x 63 A: sqrt(3) x 230 V x 63 A), rounded to 0.1 kVA as in DSO tariff tables;
* about 13 m between consecutive CPs along a feeder (urban row houses, CPs on both sides);
* feeder population designed so that the three feeder types of the study occur (see below).

Feeder archetypes (``manifest.csv`` column ``archetype``; the type is what the design aims at,
the envelope computation decides):

========  =====  ============================================================  ===============
name      count  design                                                        intended type
========  =====  ============================================================  ===============
short     15     1-8 CPs, 1-24 end-users, 58-227 m, 4x150/4x240 Al; fuses and  1: every user
                 services fitted so that all users at full capacity stay       gets full
                 within cable ratings and 0.92 pu (linear estimate)            capacity
dense     20     8-20 CPs of apartment buildings (2-14 users each, phase       2: head cable
                 pairs assigned round-robin, so balanced), 4x150/4x240 Al      limits, fair ~
                                                                               optimal
building  6      single-family houses along the street and one multi-unit      3: the
                 building of 18-22 users mid-feeder (an old town house split   building's
                 into flats) still on its original 4x16 Cu service             service binds
long      8      24-36 CPs of houses, 4x150 Al tapering to an older 3x95 Al    3: voltage at
                 or 3x70 Cu section, often with a 3x95 Al branch               the far end
========  =====  ============================================================  ===============

Cables (three-wire IT network: only the positive-sequence impedance matters; see ``_linecodes``):

==========  =============================  ======  ======  =====  ===========================
code        construction (typical use)     R1      X1      I      where the figures come from
                                           ohm/km  ohm/km  A
==========  =============================  ======  ======  =====  ===========================
al4x240     4x240 Al XLPE, e.g. EAXeCWB    0.125   0.08    364    R: IEC 60228; X: [H];
            (new mains)                                           I: [V], NAYY 4x240
al4x150     4x150 Al XLPE, e.g. EAXeCWB    0.206   0.08    270    R: IEC 60228; X, I: [H]
            (mains, large services)                               NAYY 4x150 SE
al3x95      3x95 Al, e.g. EAXVB (older     0.320   0.08    215    R: IEC 60228; X: [H];
            mains, branches, building                             I: [V], NAYY 4x95
            services)
cu3x70      3x70 Cu (older main sections)  0.268   0.08    230    R: IEC 60228; X: [H];
                                                                  I: [V], NYY 4x70 (~232)
cu4x25      4x25 Cu service cable          0.727   0.09    130    R: IEC 60228; X: ~0.09 [M];
                                                                  I: [V], NYY 4x25 (rounded)
cu4x16      4x16 Cu service cable          1.15    0.09    100    R: IEC 60228; X: ~0.09 [M];
                                                                  I: [V], NYY 4x16 (~102)
cu4x10      4x10 Cu service cable          1.83    0.09    75     R: IEC 60228; X: ~0.09 [M];
                                                                  I: [V], NYY 4x10 (rounded)
==========  =============================  ======  ======  =====  ===========================

* R1: IEC 60228 maximum DC resistance of class-2 conductors at 20 degC (standard values; the AC
  resistance at operating temperature is 10-25 % higher, so voltage drops are slightly optimistic).
* [H] Heuck, Dettmann, Schulz, *Elektrische Energieversorgung*, Vieweg+Teubner 2013, p. 744, as
  shipped in pandapower's standard line types (NAYY 4x150 SE: 0.208 ohm/km, 0.080 ohm/km, 270 A;
  NAYY 4x50 SE: X = 0.083 ohm/km): about 0.08 ohm/km for multi-core sector-conductor LV cables.
* [V] DIN VDE 0276-603 (HD 603) ratings of 0.6/1 kV four-core PVC cables laid direct in ground
  (20 degC soil, 1 K.m/W, load factor 0.7) as printed in manufacturers' tables (e.g. Faber Kabel
  NAYY-J / NYY-J). These are conservative for XLPE cables and in the range DSOs plan with for a
  cable in a shared trench; Sibelga's own planning ratings are not public. Values marked
  "rounded" are given to about 5 A because tables differ by a few amperes.
* [M] Small round-conductor four-core cables: about 0.09 ohm/km in manufacturers' datasheets.

Other modelling choices (documented where they are written): MV/LV transformers 11/0.23 kV Dyn
chosen by the customers served (<= 120: 400, <= 300: 630, else 1000 kVA; uk 4 % up to 630 kVA,
6 % above, as in EN 50464-1; load losses of the order of 1 %, as in EN 50588-1); MV short-circuit
level falling from 250 MVA at the first substation of an MV feeder to 100 MVA at the last; default
demand about 1 kW per household (after-diversity peak: 0.3-1.2 kW single-phase, 0.6-2.0 kW
three-phase), pf 0.95.
Each LV feeder is its own OpenDSS circuit with its substation's transformer (the substation's
other feeders are not modelled in that file).
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nfca.io.atomic import atomic_path, write_text

V_LL = 230.0  # phase-to-phase voltage of the IT network (V)
PF = 0.95
FUSES_A = (16, 20, 25, 32, 40, 50, 63)
PAIRS = ("1.2", "2.3", "3.1")
TARGETS = {"mv_feeders": 3, "lv_feeders": 49, "connection_points": 712, "end_users": 2267}
CRS = "EPSG:31370"  # Belgian Lambert 72 (metres)
ORIGIN = (149_000.0, 170_500.0)  # primary substation, near the centre of Brussels in Lambert 72
MVASC_RANGE = (250.0, 100.0)  # MV fault level at the first and last substation of an MV feeder


def capacity_kva(phases: int, amps: int) -> float:
    """Connection capacity of a fuse rating, rounded to 0.1 kVA as DSOs publish it (3.7 ... 25.1)."""
    return round((math.sqrt(3.0) if phases == 3 else 1.0) * V_LL * amps / 1000.0, 1)


@dataclass(frozen=True)
class Cable:
    """A three-wire cable type: positive-sequence impedance (ohm/km) and rating (A)."""

    code: str
    r1: float
    x1: float
    amps: float


CABLES = {
    c.code: c
    for c in (
        Cable("al4x240", 0.125, 0.08, 364.0),
        Cable("al4x150", 0.206, 0.08, 270.0),
        Cable("al3x95", 0.320, 0.08, 215.0),
        Cable("cu3x70", 0.268, 0.08, 230.0),
        Cable("cu4x25", 0.727, 0.09, 130.0),
        Cable("cu4x16", 1.15, 0.09, 100.0),
        Cable("cu4x10", 1.83, 0.09, 75.0),
    )
}
SERVICES = ("cu4x10", "cu4x16", "cu4x25", "al3x95", "al4x150", "al4x240")  # by rating


@dataclass(frozen=True)
class Archetype:
    """A family of feeders: how many, CP count range, lead length, cables, branching."""

    name: str
    count: int
    cps: tuple[int, int]
    lead_m: tuple[float, float]
    mains: tuple[str, ...]
    taper: tuple[str, ...] = ()  # cable of the outer part of long feeders
    branch_p: float = 0.0


ARCHETYPES = (
    Archetype("short", 15, (1, 8), (15.0, 70.0), ("al4x150", "al4x240")),
    Archetype("dense", 20, (8, 20), (20.0, 80.0), ("al4x150", "al4x240"), branch_p=0.3),
    Archetype("building", 6, (14, 24), (20.0, 60.0), ("al4x150",), branch_p=0.2),
    Archetype("long", 8, (24, 36), (20.0, 60.0), ("al4x150",), ("al3x95", "cu3x70"), 0.6),
)
ARCH = {a.name: a for a in ARCHETYPES}
SHORT_LENGTH_M = (58.0, 227.0)  # the study's type-1 feeders
SHORT_MAX_USERS = 24


@dataclass
class EndUser:
    name: str
    phases: int
    pair: str  # "1.2", "2.3", "3.1" or "1.2.3"
    amps: int
    kw: float

    @property
    def kva(self) -> float:
        return capacity_kva(self.phases, self.amps)


@dataclass
class Line:
    name: str
    bus1: str
    bus2: str
    cable: str
    coords: list[tuple[float, float]]
    length_m: float


@dataclass
class ConnectionPoint:
    index: int
    tap: str
    xy: tuple[float, float]
    users: list[EndUser] = field(default_factory=list)

    @property
    def bus(self) -> str:
        return f"cp{self.index}"


@dataclass
class Feeder:
    name: str
    archetype: str
    mv_feeder: str = ""
    substation: str = ""
    kva_tr: int = 400
    mvasc3: float = 200.0
    sub_xy: tuple[float, float] = (0.0, 0.0)
    lines: list[Line] = field(default_factory=list)
    cps: list[ConnectionPoint] = field(default_factory=list)
    nodes: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def users(self) -> list[EndUser]:
        return [u for cp in self.cps for u in cp.users]

    @property
    def length_m(self) -> float:
        """Route length of the distribution cable (main and branch), services excluded."""
        return sum(ln.length_m for ln in self.lines if not ln.name.startswith("s"))


class Street:
    """A street as a polyline of straight legs; positions are along-street distances (m)."""

    def __init__(self, start: np.ndarray, heading: float, bend_at: float | None = None, turn: float = 0.0) -> None:
        u1 = np.array([math.cos(heading), math.sin(heading)])
        self.legs = [(start, u1, 0.0)]
        if bend_at is not None:
            u2 = np.array([math.cos(heading + turn), math.sin(heading + turn)])
            self.legs.append((start + u1 * bend_at, u2, bend_at))

    def at(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        """Point and unit direction at distance s."""
        p, u, s0 = [leg for leg in self.legs if leg[2] <= s][-1]
        return p + u * (s - s0), u

    def path(self, s0: float, s1: float) -> list[tuple[float, float]]:
        """Vertices from s0 to s1, including the corner when the stretch crosses a bend."""
        pts = [self.at(s0)[0]] + [p for p, _, s in self.legs if s0 < s < s1] + [self.at(s1)[0]]
        return [(round(float(p[0]), 2), round(float(p[1]), 2)) for p in pts]


# ----------------------------------------------------------------------------- planning


def _adjust(
    values: list[int], target: int, lo: list[int], hi: list[int], pool: list[int], rng: np.random.Generator
) -> None:
    """Add or remove 1 at random members of ``pool`` (within bounds) until sum(values) == target."""
    while (diff := target - sum(values)) != 0:
        step = 1 if diff > 0 else -1
        ok = [i for i in pool if lo[i] <= values[i] + step <= hi[i]]
        if not ok:
            raise ValueError("cannot reach target within bounds")
        values[int(rng.choice(ok))] += step


def _plan(rng: np.random.Generator) -> tuple[list[str], list[list[int]]]:
    """Archetype of each feeder and end-users per CP, hitting the CP and end-user totals exactly."""
    kinds = [a.name for a in ARCHETYPES for _ in range(a.count)]
    assert len(kinds) == TARGETS["lv_feeders"]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    ncp = [int(rng.integers(ARCH[k].cps[0], ARCH[k].cps[1] + 1)) for k in kinds]
    lo = [ARCH[k].cps[0] for k in kinds]
    hi = [ARCH[k].cps[1] for k in kinds]
    _adjust(ncp, TARGETS["connection_points"], lo, hi, [i for i, k in enumerate(kinds) if k != "short"], rng)

    eus: list[list[int]] = []
    for k, n in zip(kinds, ncp):
        if k == "short":  # 1-24 end-users in total
            total = int(rng.integers(n, min(SHORT_MAX_USERS, 3 * n + 3) + 1))
            eus.append([1 + int(x) for x in rng.multinomial(total - n, [1.0 / n] * n)])
        elif k == "dense":  # apartment buildings
            eus.append([2 + int(x) for x in rng.binomial(12, 0.3, n)])
        elif k == "long":  # houses, a few split into flats
            eus.append([int(x) for x in rng.choice([1, 2, 3], n, p=[0.7, 0.22, 0.08])])
        else:  # single-family houses and one multi-unit building mid-feeder
            cp = [int(x) for x in rng.choice([1, 2], n, p=[0.85, 0.15])]
            cp[n // 2 + int(rng.integers(-2, 3))] = int(rng.integers(18, 23))
            eus.append(cp)
    # hit the end-user total by adjusting the dense (apartment) CPs within 2..14 users
    flat = [x for cp in eus for x in cp]
    owner = [(f, j) for f, cp in enumerate(eus) for j in range(len(cp))]
    pool = [i for i, (f, _) in enumerate(owner) if kinds[f] == "dense"]
    _adjust(flat, TARGETS["end_users"], [2] * len(flat), [14] * len(flat), pool, rng)
    for x, (f, j) in zip(flat, owner):
        eus[f][j] = x
    return kinds, eus


def _users(rng: np.random.Generator, cp: int, n: int, pair_of) -> list[EndUser]:
    """End-users of one CP: phases, fuse rating, phase pair and a typical demand."""
    house = n <= 2
    p3 = 0.45 if house else 0.05
    w1 = (0.0, 0.02, 0.08, 0.15, 0.45, 0.15, 0.15) if house else (0.06, 0.08, 0.2, 0.2, 0.4, 0.04, 0.02)
    w3 = (0.02, 0.05, 0.2, 0.3, 0.25, 0.1, 0.08)
    out = []
    for k in range(1, n + 1):
        three = rng.random() < p3
        amps = int(rng.choice(FUSES_A, p=w3 if three else w1))
        kw = rng.uniform(0.6, 2.0) if three else rng.uniform(0.3, 1.2)
        out.append(
            EndUser(f"eu{cp}_{k}", 3 if three else 1, "1.2.3" if three else pair_of(k), amps, round(float(kw), 2))
        )
    return out


# ----------------------------------------------------------------------------- electrical checks

_A = np.exp(-2j * np.pi / 3)
_VPH = V_LL / math.sqrt(3) * np.array([1, _A, _A**2])  # nominal phase voltages, positive sequence
_IDX = {"1.2": (0, 1), "2.3": (1, 2), "3.1": (2, 0)}


def _cp_currents(users: list[EndUser], full: bool = True) -> np.ndarray:
    """Phase currents (A, complex) drawn by a CP's delta users at nominal voltage."""
    i = np.zeros(3, complex)
    for u in users:
        s = (u.kva if full else u.kw / PF) * 1000.0 * (PF + 1j * math.sqrt(1 - PF**2))
        for pair in PAIRS if u.phases == 3 else (u.pair,):
            a, b = _IDX[pair]
            iab = np.conj(s / u.phases / (_VPH[a] - _VPH[b]))
            i[a] += iab
            i[b] -= iab
    return i


def _estimate(f: Feeder, full: bool = True) -> tuple[float, float]:
    """Linear (one backward/forward sweep) estimate: min phase-to-phase voltage (pu) and max loading.

    Used only to fit the short feeders' fuses and services; OpenDSS is the reference.
    """
    inj = {cp.bus: _cp_currents(cp.users, full) for cp in f.cps}
    cur = {ln.name: np.zeros(3, complex) for ln in f.lines}
    for ln in reversed(f.lines):  # lines are written parent before child
        cur[ln.name] = cur[ln.name] + inj.get(ln.bus2, 0)
        parent = [p for p in f.lines if p.bus2 == ln.bus1]
        if parent:
            cur[parent[0].name] += cur[ln.name]
    head = sum(cur[ln.name] for ln in f.lines if ln.bus1 == "lv")
    ztr = (0.01 + 1j * (0.04 if f.kva_tr <= 630 else 0.06)) * V_LL**2 / (f.kva_tr * 1000.0)
    v = {"lv": _VPH - ztr * head}
    loading = 0.0
    for ln in f.lines:
        c = CABLES[ln.cable]
        v[ln.bus2] = v[ln.bus1] - complex(c.r1, c.x1) * ln.length_m / 1000.0 * cur[ln.name]
        loading = max(loading, float(np.abs(cur[ln.name]).max()) / c.amps)
    vmin = min(float(np.abs(x - np.roll(x, -1)).min()) for x in v.values()) / V_LL
    return vmin, loading


def _size_services(f: Feeder, diversity: bool, margin: float = 1.0) -> None:
    """Smallest service cable carrying the CP's design current.

    Design current = g(n) x the CP's largest phase current at full connection capacity, with the
    diversity factor g(n) = min(1, 0.2 + 0.8/sqrt(n)) for n end-users (1 for a house, ~0.38 for 20
    flats): DSOs size shared connections for diversified demand, not for the sum of fuses. Short
    (type-1) feeders use g = 1 and keep ``margin`` (loading <= margin at full capacity).
    """
    for cp in f.cps:
        n = len(cp.users)
        g = min(1.0, 0.2 + 0.8 / math.sqrt(n)) if diversity else 1.0
        need = g * float(np.abs(_cp_currents(cp.users)).max())
        code = next((c for c in SERVICES if CABLES[c].amps * margin >= need), SERVICES[-1])
        ln = next(ln for ln in f.lines if ln.bus2 == cp.bus)
        ln.cable = code


def _old_building_service(f: Feeder) -> None:
    """The multi-unit building is an old town house split into ~20 flats (common in Brussels)
    that kept its original 4x16 Cu service: the local bottleneck of the 'building' archetype."""
    big = max(f.cps, key=lambda cp: len(cp.users))
    next(ln for ln in f.lines if ln.bus2 == big.bus).cable = "cu4x16"


def _fit_short(f: Feeder) -> None:
    """Short feeders are type 1 ("oversized"): every end-user at full capacity must fit.

    Remedies in turn until the linear estimate keeps >= 0.92 pu and <= 85 % loading: services
    sized for full capacity, the feeder cable upgraded to 4x240 Al, the largest fuses reduced one
    rating at a time, the single-phase users spread round-robin over the phase pairs.
    """
    balanced = False
    while True:
        _size_services(f, diversity=False, margin=0.85)
        vmin, loading = _estimate(f)
        if vmin >= 0.92 and loading <= 0.85:
            return
        mains = [ln for ln in f.lines if not ln.name.startswith("s")]
        big = max((u for u in f.users if u.amps > FUSES_A[0]), key=lambda u: u.kva, default=None)
        if any(ln.cable != "al4x240" for ln in mains):
            for ln in mains:
                ln.cable = "al4x240"
        elif big is not None:
            big.amps = FUSES_A[FUSES_A.index(big.amps) - 1]
        elif not balanced:
            for k, u in enumerate(u for u in f.users if u.phases == 1):
                u.pair = PAIRS[k % 3]
            balanced = True
        else:
            raise RuntimeError(f"{f.name}: full capacity does not fit a short feeder")


# ----------------------------------------------------------------------------- layout


def _layout(f: Feeder, eus: list[int], rng: np.random.Generator, heading: float) -> None:
    """Streets, taps every ~13 m, CPs on both sides, main/branch/service lines, end-users."""
    arch = ARCH[f.archetype]
    n = len(eus)
    gaps = np.clip(rng.gamma(4.0, 13.0 / 4.0, n), 4.0, 35.0).round(1)  # mean ~13 m between CPs
    lead = float(rng.uniform(*arch.lead_m))
    n_branch = 0
    if n >= 8 and rng.random() < arch.branch_p:
        n_branch = int(round(n * rng.uniform(0.25, 0.45)))
    n_main = n - n_branch
    steps = gaps[1:n_main]
    if f.archetype == "short":  # the study's type-1 feeders are 58-227 m long
        lo, hi = SHORT_LENGTH_M
        if steps.sum() > hi - 10.0:
            steps = steps * (hi - 10.0) / steps.sum()
        lead = float(np.clip(lead, max(10.0, lo - steps.sum()), hi - steps.sum()))
    s_main = (lead + np.concatenate([[0.0], np.cumsum(steps)])).round(1)
    bend = float(s_main[-1] * rng.uniform(0.3, 0.7)) if rng.random() < 0.4 else None
    street = Street(np.array(f.sub_xy), heading, bend, float(rng.choice([-1, 1])) * math.pi / 2)
    main_cable = str(rng.choice(arch.mains))
    if f.archetype == "dense" and sum(eus) > 75:  # planners lay the big cable for many customers
        main_cable = "al4x240"
    taper_at = float(s_main[-1] * rng.uniform(0.5, 0.7)) if arch.taper else math.inf
    taper_cable = str(rng.choice(arch.taper)) if arch.taper else main_cable
    f.nodes = {"mv": f.sub_xy, "lv": f.sub_xy}

    def add_cp(i: int, tap_xy: np.ndarray, u: np.ndarray) -> None:
        side = 1.0 if rng.random() < 0.5 else -1.0  # -1: across the street
        depth = rng.uniform(2.0, 6.0) if side > 0 else rng.uniform(9.0, 14.0)
        normal = np.array([-u[1], u[0]])
        xy = tap_xy + normal * side * depth
        cp = ConnectionPoint(i, f"n{i}", (round(float(xy[0]), 2), round(float(xy[1]), 2)))
        f.cps.append(cp)
        f.nodes[cp.bus] = cp.xy
        f.lines.append(Line(f"s{i}", cp.tap, cp.bus, "cu4x16", [f.nodes[cp.tap], cp.xy], round(float(depth), 1)))

    prev, s_prev = "lv", 0.0
    for i in range(1, n_main + 1):
        s = float(s_main[i - 1])
        p, u = street.at(s)
        f.nodes[f"n{i}"] = (round(float(p[0]), 2), round(float(p[1]), 2))
        cable = main_cable if s_prev < taper_at else taper_cable
        f.lines.append(Line(f"m{i}", prev, f"n{i}", cable, street.path(s_prev, s), round(s - s_prev, 1)))
        add_cp(i, p, u)
        prev, s_prev = f"n{i}", s
    if n_branch:
        j = int(rng.integers(max(1, n_main // 3), max(2, 2 * n_main // 3) + 1))  # junction tap
        p0, u0 = street.at(float(s_main[j - 1]))
        side = float(rng.choice([-1, 1]))
        side_street = Street(p0, math.atan2(u0[1], u0[0]) + side * math.pi / 2)
        s_b = np.cumsum(gaps[n_main:]).round(1)
        cable = "al3x95" if f.archetype in ("long", "building") else main_cable
        prev, s_prev = f"n{j}", 0.0
        for k, s in enumerate(s_b):
            i = n_main + k + 1
            p, u = side_street.at(float(s))
            f.nodes[f"n{i}"] = (round(float(p[0]), 2), round(float(p[1]), 2))
            f.lines.append(
                Line(f"m{i}", prev, f"n{i}", cable, side_street.path(s_prev, float(s)), round(float(s) - s_prev, 1))
            )
            add_cp(i, p, u)
            prev, s_prev = f"n{i}", float(s)

    weights = rng.dirichlet([3.0, 3.0, 3.0])  # uneven phase-pair use on this feeder
    for cp, n_eu in zip(f.cps, eus):
        if f.archetype == "dense":  # installers spread a building's flats over the pairs
            start = int(rng.integers(3))
            pair_of = lambda k, s=start: PAIRS[(s + k) % 3]  # noqa: E731
        else:
            pair_of = lambda k: PAIRS[int(rng.choice(3, p=weights))]  # noqa: E731
        cp.users = _users(rng, cp.index, n_eu, pair_of)


def _build(seed: int) -> list[Feeder]:
    """The whole grid as Python objects; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    kinds, eus = _plan(rng)
    feeders = [Feeder(f"lv{i + 1:02d}", k) for i, k in enumerate(kinds)]
    sizes: list[int] = []
    while sum(sizes) < len(feeders):  # 2-5 LV feeders per MV/LV substation
        sizes.append(min(int(rng.integers(2, 6)), len(feeders) - sum(sizes)))
    groups = np.split(np.arange(len(feeders)), np.cumsum(sizes)[:-1])
    chains = np.array_split(np.arange(len(groups)), TARGETS["mv_feeders"])
    for m, chain in enumerate(chains):
        phi = math.radians(90.0 + 120.0 * m) + rng.uniform(-0.2, 0.2)
        for k, g in enumerate(chain):
            sub = f"ss{int(g) + 1:02d}"
            along = 400.0 + 750.0 * k
            lateral = rng.uniform(-120.0, 120.0)
            xy = (
                round(ORIGIN[0] + along * math.cos(phi) - lateral * math.sin(phi), 2),
                round(ORIGIN[1] + along * math.sin(phi) + lateral * math.cos(phi), 2),
            )
            frac = k / (len(chain) - 1) if len(chain) > 1 else 0.0
            mvasc = round(MVASC_RANGE[0] + (MVASC_RANGE[1] - MVASC_RANGE[0]) * frac)
            users = sum(sum(eus[i]) for i in groups[g])
            kva = 400 if users <= 120 else 630 if users <= 300 else 1000  # by customers served
            theta0 = rng.uniform(0.0, 2 * math.pi)
            for j, i in enumerate(groups[g]):
                f = feeders[i]
                f.mv_feeder, f.substation, f.kva_tr, f.mvasc3, f.sub_xy = f"mv{m + 1}", sub, kva, mvasc, xy
                heading = theta0 + 2 * math.pi * j / len(groups[g]) + rng.uniform(-0.2, 0.2)
                _layout(f, eus[i], rng, heading)
                if f.archetype == "short":
                    _fit_short(f)
                else:
                    _size_services(f, diversity=True)
                if f.archetype == "building":
                    _old_building_service(f)
    return feeders


# ----------------------------------------------------------------------------- writing


def _atomic_write(path: Path, text: str) -> None:
    """Write text atomically (nfca's one atomic writer): never a half-written file."""
    write_text(path, text)


def _linecodes() -> str:
    """Three-wire line codes. Z0 = Z1: with delta loads and a three-wire line no zero-sequence
    current can flow, so the zero-sequence data have no effect; Z0 = Z1 keeps the phase matrix
    diagonal and the phase-to-phase drops are exactly Z1 x I."""
    return "".join(
        f"New LineCode.{c.code} nphases=3 R1={c.r1:g} X1={c.x1:g} R0={c.r1:g} X0={c.x1:g} "
        f"C1=0 C0=0 units=km normamps={c.amps:g} emergamps={c.amps * 1.2:g}\n"
        for c in CABLES.values()
    )


def _master(f: Feeder, seed: int) -> str:
    """OpenDSS model of one LV feeder (no Solve)."""
    xhl = 4 if f.kva_tr <= 630 else 6
    out = [
        f"! LV feeder {f.name} ({f.archetype}) of substation {f.substation} on MV feeder {f.mv_feeder}",
        f"! Synthetic Sibelga-style 3x230 V IT feeder, feeders.sibelga seed {seed}.",
        "Clear",
        "Set DefaultBaseFrequency=50",
        "! MV source: fault level of the 11 kV feeder at this substation (250 MVA at the first, 100 MVA at",
        "! the last substation). MVAsc1 = MVAsc3/3 gives Z0 ~ Z1; irrelevant behind the delta MV winding.",
        f"New Circuit.{f.name} basekv=11 pu=1.0 phases=3 bus1=mv MVAsc3={f.mvasc3:g} MVAsc1={f.mvasc3 / 3:.1f}",
        "! 11/0.23 kV Dyn transformer. The LV network is IT (3x230 V, no neutral); the secondary star",
        "! point is grounded here only to give the model a reference: every end-user is delta-connected",
        "! and lines are three-wire, so no zero-sequence current flows and the phase-to-phase voltages",
        "! are exactly those of the IT network. uk per EN 50464-1, load losses ~1 % (EN 50588-1).",
        f"New Transformer.tr_{f.substation} phases=3 windings=2 buses=[mv lv] conns=[delta wye] "
        f"kVs=[11 0.23] kVAs=[{f.kva_tr} {f.kva_tr}] XHL={xhl} %loadloss=1 "
        f"normhkVA={f.kva_tr} emerghkVA={f.kva_tr * 1.5:g}",
        _linecodes().rstrip("\n"),
    ]
    out += [
        f"New Line.{ln.name} bus1={ln.bus1} bus2={ln.bus2} linecode={ln.cable} "
        f"length={ln.length_m:.1f} units=m phases=3"
        for ln in f.lines
    ]
    out += [
        "! End-users: XfkVA = connection capacity (kVA). XfkVA must come before kW: OpenDSS sizes a",
        "! load from the last of kW/kVA/XfkVA given, and XfkVA alone means AllocationFactor x XfkVA.",
    ]
    for cp in f.cps:
        for u in cp.users:
            conn = (
                f"phases=3 conn=delta bus1={cp.bus}.1.2.3"
                if u.phases == 3
                else f"phases=1 conn=delta bus1={cp.bus}.{u.pair}"
            )
            out.append(
                f"New Load.{u.name} {conn} kV=0.23 XfkVA={u.kva:.1f} kW={u.kw:.2f} pf={PF} "
                "model=1 vminpu=0.5 vmaxpu=1.5"
            )
    out += ["Set VoltageBases=[11 0.23]", "CalcVoltageBases", "Buscoords buscoords.csv", ""]
    return "\n".join(out)


MANIFEST_COLUMNS = (
    "feeder",
    "mv_feeder",
    "substation",
    "master",
    "length_m",
    "connection_points",
    "end_users",
    "capacity_kva",
    "archetype",
)


def _write_gpkg(feeders: list[Feeder], path: Path) -> None:
    """Layers lines, connection_points, substations in EPSG:31370, written atomically and
    reproducibly (GeoPackage's last_change timestamp pinned through OGR_CURRENT_DATE)."""
    import geopandas as gpd
    import pyogrio
    from shapely.geometry import LineString, Point

    lines = gpd.GeoDataFrame(
        [
            {
                "feeder": f.name,
                "name": ln.name,
                "bus1": ln.bus1,
                "bus2": ln.bus2,
                "cable": ln.cable,
                "length_m": ln.length_m,
                "ampacity_a": CABLES[ln.cable].amps,
                "geometry": LineString(ln.coords),
            }
            for f in feeders
            for ln in f.lines
        ],
        crs=CRS,
    )
    cps = gpd.GeoDataFrame(
        [
            {
                "feeder": f.name,
                "bus": cp.bus,
                "end_users": len(cp.users),
                "capacity_kva": round(sum(u.kva for u in cp.users), 1),
                "geometry": Point(cp.xy),
            }
            for f in feeders
            for cp in f.cps
        ],
        crs=CRS,
    )
    subs = {}
    for f in feeders:
        subs.setdefault(
            f.substation,
            {
                "substation": f.substation,
                "mv_feeder": f.mv_feeder,
                "kva": f.kva_tr,
                "mvasc3": f.mvasc3,
                "lv_feeders": 0,
                "geometry": Point(f.sub_xy),
            },
        )["lv_feeders"] += 1
    subs_df = gpd.GeoDataFrame(list(subs.values()), crs=CRS)
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2000-01-01T00:00:00Z"})
    try:
        with atomic_path(path) as tmp:
            for name, df in (("lines", lines), ("connection_points", cps), ("substations", subs_df)):
                pyogrio.write_dataframe(df, tmp, layer=name, driver="GPKG")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})


def generate(seed: int, out_dir: Path) -> Path:
    """Write the grid for ``seed`` into ``out_dir``; return the path of ``manifest.csv``.

    Same seed, same bytes: every random draw comes from ``numpy.random.default_rng(seed)`` in a
    fixed order, floats are written with fixed formats and nothing records the time.
    """
    from nfca.io.outputs import prepare_dir

    out_dir = prepare_dir(out_dir)
    feeders = _build(seed)
    rows = []
    for f in feeders:
        folder = out_dir / f.name
        folder.mkdir(exist_ok=True)
        _atomic_write(folder / "Master.dss", _master(f, seed))
        _atomic_write(folder / "crs.txt", f"{CRS}\n")  # the CRS of buscoords.csv (nfca reads it)
        _atomic_write(folder / "buscoords.csv", "".join(f"{b},{x:.2f},{y:.2f}\n" for b, (x, y) in f.nodes.items()))
        rows.append(
            (
                f.name,
                f.mv_feeder,
                f.substation,
                f"{f.name}/Master.dss",
                f"{f.length_m:.1f}",
                len(f.cps),
                len(f.users),
                f"{sum(u.kva for u in f.users):.1f}",
                f.archetype,
            )
        )
    _write_gpkg(feeders, out_dir / "grid.gpkg")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    manifest = out_dir / "manifest.csv"
    _atomic_write(manifest, buf.getvalue())
    return manifest


# ----------------------------------------------------------------------------- reading back

_NEW = re.compile(r"^New\s+(\w+)\.(\S+)\s+(.*)$", re.IGNORECASE)
_KV = re.compile(r"(\S+?)=(\[[^\]]*\]|\S+)")


def read_master(master: Path) -> dict[str, list[dict[str, str]]]:
    """The ``New`` elements of a Master.dss written here: {class: [{name, prop: value}]}."""
    out: dict[str, list[dict[str, str]]] = {}
    for line in Path(master).read_text(encoding="utf-8").splitlines():
        if m := _NEW.match(line.strip()):
            props = {k.lower(): v for k, v in _KV.findall(m.group(3))}
            out.setdefault(m.group(1).lower(), []).append({"name": m.group(2), **props})
    return out


def _fuse(phases: int, kva: float) -> int:
    amps = kva * 1000.0 / ((math.sqrt(3.0) if phases == 3 else 1.0) * V_LL)
    return min(FUSES_A, key=lambda a: abs(a - amps))


def grid_stats(manifest: Path) -> dict:
    """Totals and distributions of a written grid, read back from manifest.csv and the Master.dss files.

    Feeder length is the route length of the distribution cable (services excluded); spacing is the
    length of main-cable sections between two consecutive CP taps (the lead from the substation is
    not a spacing).
    """
    manifest = Path(manifest)
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cp_users: list[int] = []
    lengths, spacings, per_feeder = [], [], []
    hist: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    phases: Counter[int] = Counter()
    kvas: list[float] = []
    worst_pair: list[float] = []  # per feeder: share of its single-phase users on its busiest pair
    for row in rows:
        el = read_master(manifest.parent / row["master"])
        loads = el.get("load", [])
        buses = Counter(ld["bus1"].split(".")[0] for ld in loads)
        cp_users += list(buses.values())
        per_feeder.append(len(loads))
        lines = el.get("line", [])
        taps = {ln["bus1"] for ln in lines if ln["bus2"] in buses}
        mains = [ln for ln in lines if ln["bus2"] not in buses]
        lengths.append(sum(float(ln["length"]) for ln in mains))
        spacings += [float(ln["length"]) for ln in mains if ln["bus1"] in taps and ln["bus2"] in taps]
        for ld in loads:
            ph, kva = int(ld["phases"]), float(ld["xfkva"])
            phases[ph] += 1
            kvas.append(kva)
            hist[f"{ph}ph {_fuse(ph, kva)} A ({kva:.1f} kVA)"] += 1
            if ph == 1:
                pairs[ld["bus1"].split(".", 1)[1]] += 1
        own = Counter(ld["bus1"].split(".", 1)[1] for ld in loads if ld["phases"] == "1")
        if sum(own.values()) >= 6:
            worst_pair.append(max(own.values()) / sum(own.values()))
    n1 = sum(pairs.values())
    return {
        "mv_feeders": len({r["mv_feeder"] for r in rows}),
        "substations": len({r["substation"] for r in rows}),
        "lv_feeders": len(rows),
        "connection_points": len(cp_users),
        "end_users": sum(cp_users),
        "single_phase": phases[1],
        "three_phase": phases[3],
        "archetypes": dict(sorted(Counter(r.get("archetype", "") for r in rows).items())),
        "capacity_kva": {"min": min(kvas), "max": max(kvas), "total": round(sum(kvas), 1)},
        "capacity_histogram": dict(sorted(hist.items(), key=lambda kv: (kv[0][0], _key_amps(kv[0])))),
        "end_users_per_cp": {
            "max": max(cp_users),
            "mean": round(statistics.mean(cp_users), 2),
            "distribution": dict(sorted(Counter(cp_users).items())),
        },
        "feeder_length_m": {
            "min": round(min(lengths), 1),
            "median": round(statistics.median(lengths), 1),
            "max": round(max(lengths), 1),
        },
        "end_users_per_feeder": {"min": min(per_feeder), "max": max(per_feeder)},
        "short_feeders": sum(1 for ln, n in zip(lengths, per_feeder) if ln < 230 and n <= 24),
        "cp_spacing_mean_m": round(statistics.mean(spacings), 2),
        "phase_pair_share": {p: round(pairs[p] / n1, 3) if n1 else 0.0 for p in PAIRS},
        "busiest_pair_share_per_feeder": {
            "median": round(statistics.median(worst_pair), 3),
            "max": round(max(worst_pair), 3),
        },
    }


def _key_amps(label: str) -> int:
    return int(label.split()[1])


def format_stats(stats: dict) -> str:
    """Plain-text rendering of ``grid_stats`` (one item per line, nested dicts indented)."""
    lines = []
    for key, value in stats.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
