"""Exact network reduction: merge parallel cables, drop dead-end branches without end-users,
merge series segments.

All are exact for lines without shunt admittance. Parallel cables whose impedance matrices are
proportional (the same cable type, laid twice) share the current in fixed real proportions, so
they are one cable with the parallel impedance whose ampacity is the lowest of each original's
ampacity divided by its share. A dead end with nobody on it carries no current, and segments in
series with no user or branch between them carry the same current, so their impedances add and
the lowest ampacity of the chain is the chain's limit. Voltages are only limited where end-users
connect, and those buses are kept. Parallel branches that cannot be merged exactly (different
cable types, transformers) stay as they are, each limited by its own rating.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from nfca.errors import FeederError
from nfca.model.network import EARTH, PHASES, Feeder, Line


def reduce_feeder(feeder: Feeder) -> Feeder:
    """An equivalent feeder with fewer buses; end-user buses, sources and elements are kept."""
    feeder = merge_parallel(feeder)
    keep = {feeder.source.bus} | {u.bus for u in feeder.end_users}
    keep |= {b for el in feeder.elements for b, _ in el.terminals}
    parent = feeder.parent
    lines = {id(line): _oriented(line, parent) for line in feeder.lines}
    down: dict[str, list[int]] = {b: [] for b in feeder.buses}
    up: dict[str, int] = {}
    for k, line in lines.items():
        if line.bus_to in up:  # parallel branches left as they are: keep both ends
            keep |= {line.bus_from, line.bus_to}
        down[line.bus_from].append(k)
        up[line.bus_to] = k

    # Prune leaves with nobody on them, repeatedly.
    leaves = [b for b in feeder.buses if not down[b] and b not in keep and b in up]
    while leaves:
        b = leaves.pop()
        k = up[b]
        if lines[k].has_shunt:
            continue
        a = lines[k].bus_from
        del lines[k], up[b]
        down[a].remove(k)
        if not down[a] and a not in keep and a in up:
            leaves.append(a)

    # Merge series pairs through buses with one line in and one line out.
    for b in list(feeder.buses):
        if b in keep or b not in up or len(down[b]) != 1:
            continue
        ka, kb = up[b], down[b][0]
        a_line, b_line = lines[ka], lines[kb]
        if a_line.has_shunt or b_line.has_shunt or sorted(a_line.nodes_to) != sorted(b_line.nodes_from):
            continue
        merged = _series(a_line, b_line)
        del lines[kb]
        lines[ka] = merged
        down[b] = []
        del up[b]
        up[merged.bus_to] = ka

    used = {feeder.source.bus} | {b for line in lines.values() for b in (line.bus_from, line.bus_to)}
    used |= {b for el in feeder.elements for b, _ in el.terminals}
    buses = {name: bus for name, bus in feeder.buses.items() if name in used}
    kept = tuple(lines[id(line)] for line in feeder.lines if id(line) in lines)
    return replace(feeder, buses=buses, lines=kept)


def merge_parallel(feeder: Feeder) -> Feeder:
    """The feeder with every group of parallel cables that shares its current in fixed real
    proportions merged into one cable (exact); other parallel branches are left as they are."""
    lines = list(feeder.lines)
    for group in feeder.branches:
        if len(group) > 1 and all(isinstance(e, Line) for e in group):
            merged = _parallel(group)
            if merged is not None:
                at = lines.index(group[0])
                lines = [x for x in lines if not any(x is g for g in group)]
                lines.insert(min(at, len(lines)), merged)
    if len(lines) == len(feeder.lines):
        return feeder
    return replace(feeder, lines=tuple(lines))


def _parallel(group: tuple[Line, ...]) -> Line | None:
    """Parallel cables as one, or None when their current split is not a fixed real share per
    cable (impedance matrices not proportional, conductors not the same, shunt admittance)."""
    first = group[0]
    ends = (first.bus_from, first.bus_to)
    zs = []
    for line in group:
        if line.has_shunt:
            return None
        if (line.bus_from, line.bus_to) == ends:
            pairs = dict(zip(line.nodes_from, line.nodes_to))
            perm_from = line.nodes_from
        else:  # laid the other way round
            pairs = dict(zip(line.nodes_to, line.nodes_from))
            perm_from = line.nodes_to
        if sorted(pairs) != sorted(first.nodes_from) or any(
            pairs[a] != b for a, b in zip(first.nodes_from, first.nodes_to)
        ):
            return None
        perm = [perm_from.index(n) for n in first.nodes_from]
        zs.append(line.z_ohm[np.ix_(perm, perm)])
    ref = zs[0]
    ratios = []
    for z in zs:
        k = float(np.real(np.vdot(ref, z) / np.vdot(ref, ref)))
        if not k > 0 or not np.allclose(z, k * ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max()):
            return None
        ratios.append(k)
    y = np.array([1 / k for k in ratios])
    share = y / y.sum()  # of the group's current, per cable
    limit = [line.ampacity_a / s for line, s in zip(group, share)]
    weakest = group[int(np.argmin(limit))]
    return replace(
        first,
        z_ohm=ref / y.sum(),
        length_m=min(line.length_m for line in group),
        ampacity_a=float(min(limit)),
        merged=tuple(n for line in group for n in (line.merged or (line.name,))),
        limiting_line=weakest.rating_name,
    )


def _oriented(line: Line, parent: dict) -> Line:
    """The line with bus_from upstream (towards the source)."""
    if parent.get(line.bus_from, (None, None))[0] == line.bus_to:
        return replace(
            line, bus_from=line.bus_to, bus_to=line.bus_from, nodes_from=line.nodes_to, nodes_to=line.nodes_from
        )
    return line


def _series(a: Line, b: Line) -> Line:
    """Line a followed by line b, with b's conductors put in a's order."""
    perm = [b.nodes_from.index(n) for n in a.nodes_to]
    zb = b.z_ohm[np.ix_(perm, perm)]
    weakest = a if a.ampacity_a <= b.ampacity_a else b
    return replace(
        a,
        bus_to=b.bus_to,
        nodes_to=tuple(b.nodes_to[i] for i in perm),
        z_ohm=a.z_ohm + zb,
        length_m=a.length_m + b.length_m,
        ampacity_a=min(a.ampacity_a, b.ampacity_a),
        merged=(a.merged or (a.name,)) + (b.merged or (b.name,)),
        limiting_line=weakest.rating_name,
    )


def kron_reduce(feeder: Feeder) -> Feeder:
    """The three-wire model of a four-wire feeder: every neutral conductor (node >= 4) eliminated
    as if it were perfectly earthed everywhere (its voltage 0).

    This is the approximation behind Kron-reduced (3 x 3) feeder models, and what `--kron`
    computes envelopes on; it hides the neutral-point shift. Per line, with p the phase and n the
    neutral conductors, Z_abc = Z_pp - Z_pn Z_nn^-1 Z_np and the shunt admittance keeps Y_pp. A
    linear element (transformer, earthing reactor) loses the rows and columns of its neutral
    terminals: earthing a node sets its voltage to 0, so its column no longer drives current and
    its row is current into earth. End-user legs (a, n) become phase-to-earth legs (a, 0).
    Feeders without neutral conductors come back unchanged.
    """

    def neutral(n: int) -> bool:
        return n != EARTH and n not in PHASES

    lines = []
    for line in feeder.lines:
        pairs = list(zip(line.nodes_from, line.nodes_to))
        keep = [k for k, (a, b) in enumerate(pairs) if a in PHASES]
        gone = [k for k in range(len(pairs)) if k not in keep]
        if any(pairs[k][1] not in PHASES for k in keep) or any(pairs[k][1] in PHASES for k in gone):
            raise FeederError(f"Line.{line.name} joins a phase to a neutral or earth conductor: cannot Kron-reduce it")
        if not gone:
            lines.append(line)
            continue
        if not keep:  # a neutral-only line carries nothing once the neutral is earth
            continue
        z = line.z_ohm
        zk = z[np.ix_(keep, keep)] - z[np.ix_(keep, gone)] @ np.linalg.solve(
            z[np.ix_(gone, gone)], z[np.ix_(gone, keep)]
        )
        lines.append(
            replace(
                line,
                nodes_from=tuple(line.nodes_from[k] for k in keep),
                nodes_to=tuple(line.nodes_to[k] for k in keep),
                z_ohm=zk,
                y_shunt_s=line.y_shunt_s[np.ix_(keep, keep)],
            )
        )

    elements = []
    for el in feeder.elements:
        keep = [i for i, (_, n) in enumerate(el.terminals) if not neutral(n)]
        if not any(el.terminals[i][1] != EARTH for i in keep):
            continue  # an earthing element: it joins earth to earth now
        if len(keep) == len(el.terminals):
            elements.append(el)
            continue
        pos = {i: k for k, i in enumerate(keep)}
        elements.append(
            replace(
                el,
                terminals=tuple(el.terminals[i] for i in keep),
                y_s=el.y_s[np.ix_(keep, keep)],
                rated_terminals=tuple(pos[i] for i in el.rated_terminals if i in pos),
            )
        )

    used = {b for line in lines for b in (line.bus_from, line.bus_to)} | {feeder.source.bus}
    used |= {b for el in elements for b, n in el.terminals if n != EARTH}
    buses = {
        name: replace(bus, nodes=tuple(n for n in bus.nodes if not neutral(n)))
        for name, bus in feeder.buses.items()
        if name in used
    }
    users = tuple(
        replace(u, legs=tuple((EARTH if neutral(a) else a, EARTH if neutral(b) else b) for a, b in u.legs))
        for u in feeder.end_users
    )
    return replace(feeder, buses=buses, lines=tuple(lines), elements=tuple(elements), end_users=users)
