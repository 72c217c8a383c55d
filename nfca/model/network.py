"""The feeder as immutable data: buses, lines, linear elements, the source and end-users.

This is the *engineering* model: names from the feeder file, SI units. Conductors are the
feeder file's node numbers: 1, 2, 3 are phases, 0 is earth (never a variable) and 4 and above
are neutral conductors. Everything the optimiser needs is derived from here, in per unit, by
`nfca.opf`; results are mapped back to these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from nfca.errors import FeederError
from nfca.notices import Notice

EARTH = 0
PHASES = (1, 2, 3)
DEFAULT_CAPACITY_KVA = 9.2  # an end-user without a capacity in the file: single-phase 40 A at 230 V (ALEXANDER D3.3)


@dataclass(frozen=True)
class Bus:
    """A bus with its conductors and its phase-to-neutral voltage base."""

    name: str
    nodes: tuple[int, ...]
    kv_base_ln: float
    x: float | None = None
    y: float | None = None


@dataclass(frozen=True, eq=False)
class Line:
    """A series element with an n x n impedance: V_from - V_to = Z I, plus optional shunt."""

    name: str
    bus_from: str
    bus_to: str
    nodes_from: tuple[int, ...]
    nodes_to: tuple[int, ...]
    z_ohm: np.ndarray
    y_shunt_s: np.ndarray  # total shunt admittance, half at each end
    length_m: float
    ampacity_a: float  # per conductor
    linecode: str = ""  # the line code it was built from, "" if none
    # After exact reduction: the original lines merged into this one, and the one with the
    # lowest ampacity (the one a planner must upgrade).
    merged: tuple[str, ...] = ()
    limiting_line: str = ""

    @property
    def has_shunt(self) -> bool:
        return bool(np.any(self.y_shunt_s != 0))

    @property
    def rating_name(self) -> str:
        return self.limiting_line or self.name


@dataclass(frozen=True, eq=False)
class LinearElement:
    """An element modelled by its primitive admittance (transformer, shunt capacitor, reactor).

    Current leaving conductor `terminals[i]` into the element is sum_j Y[i, j] V(terminals[j]).
    `rating_a` limits the current at the terminals listed in `rated_terminals`.
    """

    name: str
    kind: str
    terminals: tuple[tuple[str, int], ...]  # (bus, node) per row of y_s; node 0 is earth
    y_s: np.ndarray
    rating_a: float = 0.0
    rated_terminals: tuple[int, ...] = ()
    description: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Source:
    """The upstream grid as a Norton equivalent: injection = Y (E - V) at the source bus."""

    name: str
    bus: str
    nodes: tuple[int, ...]
    e_v: np.ndarray  # open-circuit phase-to-earth voltages, complex, volts
    y_s: np.ndarray
    pu: float


@dataclass(frozen=True)
class EndUser:
    """One connection contract. Its power is shared equally by its legs.

    A leg is a pair of conductors (plus, minus) the user is connected between: (1, 0) is a
    single-phase wye user, (1, 2) a phase-to-phase user on a 3x230 V grid, three legs a
    three-phase user. Import (consumption) is positive.
    """

    name: str
    bus: str
    legs: tuple[tuple[int, int], ...]
    connection: str  # "wye" or "delta"
    capacity_kva: float
    p_kw: float = 0.0
    q_kvar: float = 0.0
    firm_kw: float | None = None  # its firm value when it does not take an NFCA; None: the study's rule
    rated_v: float | None = None  # voltage across each leg by the load's kV (V); None: not given

    @property
    def phases(self) -> str:
        nodes = sorted({n for leg in self.legs for n in leg if n in PHASES})
        return "".join("abc"[n - 1] for n in nodes)

    @property
    def n_phases(self) -> int:
        return 3 if len(self.legs) == 3 else 1


def leg_nominal_pu(leg: tuple[int, int]) -> float:
    """Nominal magnitude of a leg's voltage in per unit of the phase-to-neutral base."""
    plus, minus = leg
    return math.sqrt(3) if (plus in PHASES and minus in PHASES) else 1.0


def leg_label(leg: tuple[int, int]) -> str:
    name = {0: "", 1: "a", 2: "b", 3: "c"}
    plus, minus = leg
    if minus == EARTH:
        return name[plus]
    return name.get(plus, str(plus)) + name.get(minus, "n" if minus >= 4 else str(minus))


@dataclass(frozen=True)
class ConnectionPoint:
    """The bus where one or more end-users connect (a building can hold many contracts)."""

    bus: str
    end_users: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Feeder:
    """An LV feeder: the network the envelopes are computed on."""

    name: str
    path: str
    buses: dict[str, Bus]
    lines: tuple[Line, ...]
    elements: tuple[LinearElement, ...]
    source: Source
    end_users: tuple[EndUser, ...]
    notices: tuple[Notice, ...] = ()  # what the reader assumed where the file was silent

    def __repr__(self) -> str:  # short: a notebook must not print thousands of buses
        return (
            f"<Feeder {self.name}: {len(self.buses)} buses, {len(self.lines)} lines, {len(self.end_users)} end-users "
            f"on {len(self.connection_points)} connection points, {self.length_m:,.0f} m of cable, "
            f"source {self.source.pu:g} pu>"
        )

    @cached_property
    def connection_points(self) -> tuple[ConnectionPoint, ...]:
        by_bus: dict[str, list[str]] = {}
        for u in self.end_users:
            by_bus.setdefault(u.bus, []).append(u.name)
        return tuple(ConnectionPoint(bus, tuple(users)) for bus, users in by_bus.items())

    @cached_property
    def end_user(self) -> dict[str, EndUser]:
        return {u.name: u for u in self.end_users}

    @property
    def length_m(self) -> float:
        return float(sum(line.length_m for line in self.lines))

    @cached_property
    def branches(self) -> tuple[tuple[Line | LinearElement, ...], ...]:
        """Series elements grouped by the buses they join: parallel cables or transformers between
        the same buses form one group, a radial feeder's branch."""
        return tuple(_branches(self).values())

    @cached_property
    def tree(self) -> dict[str, tuple[str | None, tuple[Line | LinearElement, ...]]]:
        """Radial tree: each bus's upstream bus and the branch (parallel elements) between them."""
        return _tree(self)[0]

    @cached_property
    def parent(self) -> dict[str, tuple[str, Line | LinearElement | None]]:
        """Radial tree: each bus's upstream bus and the element between them (the first of parallel ones)."""
        return {b: (up, group[0] if group else None) for b, (up, group) in self.tree.items()}

    @cached_property
    def path_lines(self) -> dict[str, tuple[Line, ...]]:
        """The lines on each bus's path from the source (every one of parallel cables)."""
        tree = self.tree
        out: dict[str, tuple[Line, ...]] = {}

        def walk(bus: str) -> tuple[Line, ...]:
            if bus not in out:
                up, group = tree[bus]
                above = () if up is None else walk(up)
                out[bus] = above + tuple(e for e in group if isinstance(e, Line))
            return out[bus]

        for b in self.buses:
            walk(b)
        return out

    def distance_m(self) -> dict[str, float]:
        """Cable length from the source to every bus (the shortest of parallel cables)."""
        tree = self.tree
        out: dict[str, float] = {}

        def walk(bus: str) -> float:
            if bus not in out:
                up, group = tree[bus]
                hop = min((e.length_m for e in group if isinstance(e, Line)), default=0.0)
                out[bus] = 0.0 if up is None else walk(up) + hop
            return out[bus]

        for b in self.buses:
            walk(b)
        return out


def _buses_of(element: Line | LinearElement) -> tuple[str, ...]:
    if isinstance(element, Line):
        return tuple(sorted({element.bus_from, element.bus_to}))
    return tuple(sorted({b for b, _ in element.terminals}))


def _branches(feeder: Feeder) -> dict[tuple[str, ...], tuple[Line | LinearElement, ...]]:
    """Series elements (lines, and elements on two or more buses) by the set of buses they join."""
    out: dict[tuple[str, ...], list[Line | LinearElement]] = {}
    for e in (*feeder.lines, *feeder.elements):
        buses = _buses_of(e)
        if len(buses) > 1:
            out.setdefault(buses, []).append(e)
    return {k: tuple(v) for k, v in out.items()}


def _tree(feeder: Feeder) -> tuple[dict[str, tuple[str | None, tuple]], list[tuple[str, ...]]]:
    """Breadth-first tree from the source over branches (groups of parallel elements): each
    reached bus's upstream bus and branch, and the branches that close a loop."""
    groups = _branches(feeder)
    adj: dict[str, list[tuple[str, ...]]] = {b: [] for b in feeder.buses}
    for key in groups:
        for b in key:
            adj.setdefault(b, []).append(key)
    parent: dict[str, tuple[str | None, tuple]] = {feeder.source.bus: (None, ())}
    used: dict[tuple[str, ...], int] = {}  # buses each branch was the first to reach
    order = [feeder.source.bus]
    for bus in order:
        for key in adj.get(bus, []):
            for nxt in key:
                if nxt not in parent:
                    parent[nxt] = (bus, groups[key])
                    used[key] = used.get(key, 0) + 1
                    order.append(nxt)
    loops = [key for key in groups if all(b in parent for b in key) and used.get(key, 0) < len(key) - 1]
    return parent, loops


def check_topology(feeder: Feeder) -> None:
    """Raise FeederError naming the elements if the feeder is not one radial tree from the source.

    Parallel elements between the same buses (cables laid in parallel, transformers in parallel)
    are one branch of the tree; a loop through three or more buses is a mesh.
    """
    parent, loops = _tree(feeder)
    missing = [b for b in feeder.buses if b not in parent]
    if missing:
        users = [u.name for u in feeder.end_users if u.bus in missing]
        extra = f"; end-users {', '.join(users[:3])}{' ...' if len(users) > 3 else ''} are cut off" if users else ""
        lost = set(missing)
        cut = next(
            (_label(e) for g in _branches(feeder).values() for e in g if set(_buses_of(e)) & lost),
            f"Load.{users[0]}" if users else "",
        )
        src = feeder.source
        raise FeederError(
            f"{cut + ': ' if cut else ''}bus {missing[0]} is not connected to the source ({src.name} at bus "
            f"{src.bus}){extra}; {len(missing)} bus(es) disconnected in all"
        )
    if loops:
        groups = _branches(feeder)
        key = loops[0]
        closing = groups[key][0]
        # the branch's buses not reached through it: a tree path joins each to the branch's first bus
        root = min(key, key=lambda b: _depth(parent, b))
        other = next(b for b in key if b != root and parent[b][1] != groups[key])
        loop = [_label(e) for e in groups[key]] + [_label(g[0]) for g in _tree_path(parent, root, other)]
        shown = ", ".join(loop[:8]) + (", ..." if len(loop) > 8 else "")
        raise FeederError(
            f"{_label(closing)} closes a loop between buses {root} and {other} ({shown}): "
            "meshed feeders are not supported"
        )


def _depth(parent: dict, bus: str) -> int:
    d = 0
    while parent[bus][0] is not None:
        bus, d = parent[bus][0], d + 1
    return d


def _tree_path(parent: dict, a: str, b: str) -> list:
    """The branches (groups) on the tree path between buses a and b."""

    def up(x: str) -> list[str]:
        out = [x]
        while parent[out[-1]][0] is not None:
            out.append(parent[out[-1]][0])
        return out

    ua, ub = up(a), up(b)
    common = next(x for x in ua if x in set(ub))
    return [parent[x][1] for x in ua[: ua.index(common)]] + [parent[x][1] for x in ub[: ub.index(common)]]


def _label(element) -> str:
    return f"Line.{element.name}" if isinstance(element, Line) else element.name


# A galvanic group is earthed when raising all its voltages together by 1 V drives at least this
# current (A) to earth, i.e. its earth paths conduct at least 1e-4 S (together under 10 kohm).
# OpenDSS's anti-floating shunts on a transformer winding give about 3e-8 of the winding's
# admittance: 3e-6 S on a 250 kVA 416 V winding, 3e-5 S on 2.5 MVA. Absolute, so that a very short
# line in the group (a 1 mm export artefact, 1e6 S) cannot hide a 5 ohm earthing reactor.
EARTHED_S = 1e-4


def _branch_admittances(feeder: Feeder) -> list[tuple[list[tuple[str, int]], np.ndarray]]:
    """Every branch's terminals (bus, node) and primitive admittance: lines, elements, the source."""
    branches = []
    for line in feeder.lines:
        terms = [(line.bus_from, n) for n in line.nodes_from] + [(line.bus_to, n) for n in line.nodes_to]
        ys, yh = np.linalg.inv(line.z_ohm), line.y_shunt_s / 2
        branches.append((terms, np.block([[ys + yh, -ys], [-ys, ys + yh]])))
    branches += [(list(el.terminals), el.y_s) for el in feeder.elements]
    src = feeder.source
    branches.append(([(src.bus, n) for n in src.nodes], src.y_s))
    return branches


def check_earthing(feeder: Feeder, earthed_s: float = EARTHED_S) -> None:
    """Raise FeederError naming a neutral conductor that has no path to earth (a floating neutral).

    Conductors joined by lines or by one winding of a transformer form galvanic groups. A group
    is earthed when raising all its voltages together by 1 V drives at least `earthed_s` amperes
    to earth (through an earthing reactor or resistance, a transformer's Rneut, a line to node 0,
    the source...). OpenDSS only holds a floating group with its tiny anti-float shunts, which
    leaves the neutral-to-earth voltage undetermined, so a floating group with a neutral
    conductor (node >= 4) is rejected. A floating three-wire group (an IT grid on a delta
    winding) is accepted: its customers see phase-to-phase voltages only.
    """
    nodes = sorted({(b, n) for b, bus in feeder.buses.items() for n in bus.nodes if n != EARTH})
    ix = {bn: i for i, bn in enumerate(nodes)}
    root = list(range(len(nodes)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    def union(group: list[tuple[str, int]]) -> None:
        ids = [find(ix[t]) for t in group if t[1] != EARTH and t in ix]
        for i in ids[1:]:
            root[find(i)] = ids[0]

    for line in feeder.lines:
        for a, b in zip(line.nodes_from, line.nodes_to):
            union([(line.bus_from, a), (line.bus_to, b)])
    for el in feeder.elements:
        per_bus: dict[str, list[tuple[str, int]]] = {}
        for t in el.terminals:  # a transformer's windings are on different buses and not galvanic
            per_bus.setdefault(t[0] if el.kind == "transformer" else "", []).append(t)
        for group in per_bus.values():
            union(group)
    src = feeder.source
    union([(src.bus, n) for n in src.nodes])

    group_of = np.array([find(i) for i in range(len(nodes))])
    branches = None  # built when a group has a neutral conductor (a three-wire feeder needs none)
    for g in np.unique(group_of):
        members = np.flatnonzero(group_of == g)
        neutrals = [nodes[i] for i in members if nodes[i][1] >= 4]
        if not neutrals:
            continue
        branches = branches or _branch_admittances(feeder)
        # Current leaving every conductor when the group's voltages rise by 1 V together: within
        # the group the lines carry none, so what leaves goes to earth (or to another group).
        out = np.zeros(len(nodes), dtype=complex)
        for terms, y in branches:
            x = np.array([1.0 if (t in ix and group_of[ix[t]] == g) else 0.0 for t in terms])
            if x.any():
                for t, c in zip(terms, y @ x):
                    if t in ix:
                        out[ix[t]] += c
        if np.abs(out).sum() >= earthed_s:
            continue
        star = [
            (el.name, t) for el in feeder.elements if el.kind == "transformer" for t in el.terminals if t in neutrals
        ]
        bus, node = star[0][1] if star else neutrals[0]
        where = f" (the star point of {star[0][0]})" if star else ""
        raise FeederError(
            f"the neutral conductor {bus}.{node}{where} is not earthed: nothing connects it, or "
            f"the {len(members)} conductors galvanically joined to it, to earth (together less than "
            f"{earthed_s:g} S), so the neutral-to-earth voltage is undetermined; earth "
            f"it, e.g. 'New Reactor.earth phases=1 bus1={bus}.{node} bus2={bus}.0 R=1 X=0' "
            f"(floating neutrals are not supported)"
        )
