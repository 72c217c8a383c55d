"""Exact network reduction: drop dead-end branches without end-users, merge series segments.

Both are exact for lines without shunt admittance: a dead end with nobody on it carries no
current, and segments in series with no user or branch between them carry the same current,
so their impedances add and the lowest ampacity of the chain is the chain's limit. Voltages
are only limited where end-users connect, and those buses are kept.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from nfca.network import Feeder, Line


def reduce_feeder(feeder: Feeder) -> Feeder:
    """An equivalent feeder with fewer buses; end-user buses, sources and elements are kept."""
    keep = {feeder.source.bus} | {u.bus for u in feeder.end_users}
    keep |= {b for el in feeder.elements for b, _ in el.terminals}
    parent = feeder.parent
    lines = {id(line): _oriented(line, parent) for line in feeder.lines}
    down: dict[str, list[int]] = {b: [] for b in feeder.buses}
    up: dict[str, int] = {}
    for k, line in lines.items():
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


def _oriented(line: Line, parent: dict) -> Line:
    """The line with bus_from upstream (towards the source)."""
    if parent.get(line.bus_from, (None, None))[1] is line:
        return replace(line, bus_from=line.bus_to, bus_to=line.bus_from,
                       nodes_from=line.nodes_to, nodes_to=line.nodes_from)
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
