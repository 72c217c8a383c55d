"""Independent verification of envelopes by OpenDSS power flows of the full (unreduced) feeder.

A published set is a promise over a box of operating points (`nfca.model.box`). It is checked
at the box's corners, at each limit's worst vertex (found by the optimisation, but checked here
by OpenDSS alone) and at seeded random *audit* points of the box. A check passes when every
voltage an end-user sees is within its limits (and every limited neutral-to-earth voltage) and
no line or transformer is loaded above its rating. The box is rebuilt here from the published
values and the study's options, not taken from the optimisation.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from nfca.engine import PowerFlow, powerflows
from nfca.model.box import Box, Guarantee, Point
from nfca.model.envelope import Direction, EnvelopeOptions, EnvelopeSet, firm_kw
from nfca.model.network import EARTH, PHASES, Feeder, leg_label, leg_nominal_pu


@dataclass(frozen=True)
class Verification:
    """What OpenDSS found over the checked points of one envelope set."""

    converged: bool
    verified: bool
    violations: tuple[str, ...]  # the first few, each naming the point
    v_min_pu: float  # over every end-user's voltages and every checked point
    v_max_pu: float
    max_loading_pct: float
    user_v_min_pu: dict[str, float]
    user_v_max_pu: dict[str, float]
    line_loading_pct: dict[str, float]  # the highest over the points, per line and transformer
    v_neutral_max_v: float = 0.0  # highest neutral-to-earth voltage at an end-user's neutral conductor
    points_checked: int = 1  # corners and worst cases (the promise)
    audit_points: int = 0  # random points of the box
    audit_violations: int = 0  # of them, those where a limit breaks
    # the smallest distance to each family of limits over all points (negative: broken): pu for
    # customer voltages, % of rating for currents, V for neutrals
    margins: dict[str, float] = field(default_factory=dict)


def promised_box(feeder: Feeder, sets: list[EnvelopeSet], options: EnvelopeOptions) -> Box:
    """The operating points the published `sets` (one method; both directions for a box
    guarantee) promise, from their values and the study's options."""
    first = sets[0]
    by_dir = {e.direction: e for e in sets}
    imp, exp = by_dir.get(Direction.import_), by_dir.get(Direction.export)
    lo, hi = [], []
    for u in feeder.end_users:
        if first.participant[u.name]:
            lo.append(-exp.guaranteed_kw[u.name] if exp is not None else 0.0)
            hi.append(imp.guaranteed_kw[u.name] if imp is not None else 0.0)
        elif first.firm_kw is not None:  # held at a given power, e.g. its forecast
            lo.append(first.firm_kw[u.name])
            hi.append(first.firm_kw[u.name])
        else:
            f = firm_kw(u, options)
            lo.append(-f if exp is not None else 0.0)
            hi.append(f if imp is not None else 0.0)
    tan_phi = float(np.tan(np.arccos(options.power_factor)))
    return Box(tuple(u.name for u in feeder.end_users), np.array(lo), np.array(hi), tan_phi)


def promised_points(box: Box, sets: list[EnvelopeSet]) -> list[Point]:
    """The points a set is promised for and checked at: for the seed's corner guarantee, every
    participant at its envelope in each direction computed; otherwise the box's corners and each
    limit's worst vertex."""
    dirs = {e.direction for e in sets}
    high, low = box.corners()
    if sets[0].guarantee is Guarantee.corner:
        return ([high] if Direction.import_ in dirs else []) + ([low] if Direction.export in dirs else [])
    return [high, low] + [p for p in sets[0].worst_points if p.t.size == len(box.users)]


def verify(
    feeder: Feeder, sets: list[EnvelopeSet], options: EnvelopeOptions, audit_points: int | None = None
) -> Verification:
    """Verify one method's published sets (both directions of a box, or one direction) at their
    box's corners, each limit's worst vertex and `audit_points` seeded random points."""
    return verify_many(feeder, [sets], options, audit_points)[0]


def verify_many(
    feeder: Feeder, groups: list[list[EnvelopeSet]], options: EnvelopeOptions, audit_points: int | None = None
) -> list[Verification]:
    """`verify` for many groups of sets (e.g. every interval of a day) with one OpenDSS compile."""
    return _conclude(feeder, options, _solve(feeder, groups, options, audit_points))


@dataclass(frozen=True)
class _Solved:
    """The OpenDSS power flows of groups of sets, not yet compared with the limits."""

    plans: list[tuple[list[Point], list[Point], bool]]  # per group: promised points, audit points, audit fails
    flows: list[PowerFlow]  # the groups' points in order


def _solve(
    feeder: Feeder, groups: list[list[EnvelopeSet]], options: EnvelopeOptions, audit_points: int | None
) -> _Solved:
    n_audit = options.audit_points if audit_points is None else audit_points
    plans, loads = [], []
    for k, sets in enumerate(groups):
        box = promised_box(feeder, sets, options)
        promised = promised_points(box, sets)
        audit = box.sample(n_audit, options.audit_seed + k) if n_audit else []
        plans.append((promised, audit, sets[0].guarantee is not Guarantee.corner))
        loads += [box.loads(p) for p in promised + audit]
    return _Solved(plans, powerflows(feeder, loads, options.source_pu))


def _conclude(feeder: Feeder, options: EnvelopeOptions, solved: _Solved) -> list[Verification]:
    checks = iter(_checks(feeder, solved.flows, options))
    out = []
    for promised, audit, audit_fails in solved.plans:
        got = [next(checks) for _ in promised + audit]
        out.append(combine(got[: len(promised)], got[len(promised) :], promised + audit, audit_fails))
    return out


class Verifier:
    """`verify` of groups of sets one after another, in the order given: OpenDSS runs in its own
    process (the other core) on the sets solved so far while the caller solves the next. Use it
    as a context manager: nothing else may use the feeder's engine until it is closed, and
    closing (on an error too) waits for the group being verified.

    A background thread only waits for the engine's power flows; the flows are compared with
    the limits in `results()`, on the caller's thread. That comparison is many numpy operations,
    each of which lets go of the interpreter lock: done beside a busy solve, each would wait up
    to a switch interval (5 ms) to take it back (0.006 s of checks became 0.9 s)."""

    def __init__(self, feeder: Feeder, options: EnvelopeOptions):
        self.feeder, self.options = feeder, options
        self._groups: queue.SimpleQueue = queue.SimpleQueue()
        self._done: list[tuple[list[EnvelopeSet], _Solved | None, BaseException | None]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._work, name="nfca-verify", daemon=True)
        self._thread.start()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, group: list[EnvelopeSet]) -> None:
        self._groups.put(group)

    def _work(self) -> None:
        while (group := self._groups.get()) is not None and not self._stop:
            try:
                self._done.append((group, _solve(self.feeder, [group], self.options, None), None))
            except BaseException as exc:  # handed to the caller by results()
                self._done.append((group, None, exc))

    def results(self) -> Iterator[tuple[list[EnvelopeSet], Verification]]:
        """Each group and its verification, in the order submitted, once all are done (an
        error raised by one is raised here)."""
        self._groups.put(None)
        self._thread.join()
        for group, solved, exc in self._done:
            if exc is not None:
                raise exc
            yield group, _conclude(self.feeder, self.options, solved)[0]

    def close(self) -> None:
        """Drop the groups not started and wait for the one being verified: the engine is then
        the caller's again."""
        self._stop = True
        self._groups.put(None)
        self._thread.join()


def verify_points(
    feeder: Feeder, loads: list[dict[str, tuple[float, float]]], options: EnvelopeOptions, labels: list[str]
) -> Verification:
    """Verify given operating points (kW, kvar per end-user); every one is part of the promise."""
    checks = _checks(feeder, powerflows(feeder, loads, options.source_pu), options)
    return combine(checks, [], [Point(np.zeros(0), x) for x in labels])


def combine(
    promised: list[Checked], audit: list[Checked], points: list[Point], audit_fails: bool = True
) -> Verification:
    """One verification from the checks of the promised points and of the audit points."""
    allv = promised + audit
    violations = []
    for v, p in zip(allv, points):
        violations += [f"{x} ({p.label})" for x in v.violations[:1]]
    bad_audit = sum(not v.verified for v in audit)
    verified = all(v.verified for v in promised) and (bad_audit == 0 or not audit_fails)
    return _verification(allv, tuple(violations[:5]), verified, len(promised), len(audit), bad_audit)


def _verification(
    checks: list[Checked], violations: tuple[str, ...], verified: bool, promised: int, audit: int, bad_audit: int
) -> Verification:
    """The extremes of `checks` (one layout) as one Verification."""
    lay = checks[0].lay
    umin = np.min([v.umin for v in checks], axis=0)
    umax = np.max([v.umax for v in checks], axis=0)
    line_pct = np.max([v.line_pct for v in checks], axis=0)
    el_pct = np.max([v.el_pct for v in checks], axis=0)
    return Verification(
        converged=all(v.converged for v in checks),
        verified=verified,
        violations=violations,
        v_min_pu=float(umin.min()),
        v_max_pu=float(umax.max()),
        max_loading_pct=float(max(line_pct.max(initial=0.0), el_pct.max(initial=0.0))),
        user_v_min_pu=dict(zip(lay.users, umin.tolist())),
        user_v_max_pu=dict(zip(lay.users, umax.tolist())),
        line_loading_pct=dict(zip(lay.lines, line_pct.tolist())) | dict(zip(lay.elements, el_pct.tolist())),
        v_neutral_max_v=float(max(v.vn_max for v in checks)),
        points_checked=promised,
        audit_points=audit,
        audit_violations=bad_audit,
        margins={key: float(min(v.margins[key] for v in checks)) for key in checks[0].margins},
    )


class _Layout:
    """Where one feeder's limited quantities sit in a power flow's arrays, with their limits: built
    once per feeder, limits and compiled network, then every check is a few array operations."""

    def __init__(self, feeder: Feeder, pf: PowerFlow, options: EnvelopeOptions):
        limits = options.limits
        nodes = pf.voltages.index
        earth = len(nodes)  # the position of a zero appended to the voltages
        users, plus, minus, nominal, labels, first = [], [], [], [], [], []
        n_plus, n_user, n_base, n_label = [], [], [], []
        for k, u in enumerate(feeder.end_users):
            base = feeder.buses[u.bus].kv_base_ln * 1e3
            first.append(len(plus))
            for leg in u.legs:
                users.append(k)
                plus.append(nodes.get((u.bus, leg[0]), earth) if leg[0] != EARTH else earth)
                minus.append(nodes.get((u.bus, leg[1]), earth) if leg[1] != EARTH else earth)
                nominal.append(base * leg_nominal_pu(leg))
                labels.append(f"{u.name} (bus {u.bus} {leg_label(leg)})")
            for node in sorted({n for leg in u.legs for n in leg if n != EARTH and n not in PHASES}):
                n_plus.append(nodes.get((u.bus, node), earth)), n_user.append(k), n_base.append(base)
                n_label.append(f"{u.name} (bus {u.bus} node {node})")
        self.users = [u.name for u in feeder.end_users]
        self.plus, self.minus, self.first = np.array(plus), np.array(minus), np.array(first)
        self.nominal = np.array(nominal)
        self.lo, self.hi = limits.voltage_bounds_pu(self.nominal)
        self.labels = labels
        self.n_pos, self.n_base, self.n_label = np.array(n_plus, dtype=int), np.array(n_base), n_label
        self.lines = [line.name for line in feeder.lines]
        self.line_pos = np.array([pf.line_amps.index[n] for n in self.lines], dtype=int)
        self.ampacity = np.array([line.ampacity_a for line in feeder.lines])
        rated = [el for el in feeder.elements if el.rating_a > 0 and el.name in pf.element_amps.index]
        self.elements = [el.name for el in rated]
        self.el_pos = np.array([pf.element_amps.index[el.name] for el in rated], dtype=int)
        self.rating = np.array([el.rating_a for el in rated])


_LAYOUTS: dict[tuple, tuple[tuple, _Layout]] = {}


def _layout(feeder: Feeder, pf: PowerFlow, options: EnvelopeOptions) -> _Layout:
    """The feeder's layout in this compile's arrays, built once. The cache holds the objects it is
    keyed on, so a key's ids cannot be reused by others while it is cached."""
    owners = (feeder, pf.voltages.index, pf.line_amps.index, pf.element_amps.index)
    key = (*map(id, owners), options.limits)
    hit = _LAYOUTS.get(key)
    if hit is None or any(a is not b for a, b in zip(hit[0], owners)):
        if len(_LAYOUTS) > 16:
            _LAYOUTS.clear()
        hit = _LAYOUTS[key] = (owners, _Layout(feeder, pf, options))
    return hit[1]


def check(feeder: Feeder, pf: PowerFlow, options: EnvelopeOptions) -> Verification:
    """Compare one OpenDSS solution with the limits."""
    c = _checks(feeder, [pf], options)[0]
    return _verification([c], c.violations, c.verified, 1, 0, 0)


@dataclass(frozen=True)
class Checked:
    """One power flow against the limits, as arrays in its layout's order (combined by array
    operations over thousands of points)."""

    lay: _Layout
    converged: bool
    violations: tuple[str, ...]
    umin: np.ndarray  # per end-user, the lowest and highest of its voltages (pu)
    umax: np.ndarray
    line_pct: np.ndarray  # loading per line, per rated element (% of rating)
    el_pct: np.ndarray
    vn_max: float
    margins: dict[str, float]

    @property
    def verified(self) -> bool:
        return self.converged and not self.violations


def _checks(feeder: Feeder, pfs: list[PowerFlow], options: EnvelopeOptions) -> list[Checked]:
    """Each power flow against the limits: the arrays of all of them at once (one layout, one
    compile), the violations' text only for the points that break a limit."""
    if not pfs:
        return []
    lay = _layout(feeder, pfs[0], options)
    if any(_layout(feeder, pf, options) is not lay for pf in pfs[1:]):
        return [c for pf in pfs for c in _checks(feeder, [pf], options)]
    limits = options.limits
    v_tol, loading_tol, vn_lim = limits.v_tol_pu, limits.loading_tol_pct, limits.v_neutral_max_v
    v = np.array([np.append(np.asarray(pf.voltages.values), 0.0) for pf in pfs])
    mag = np.abs(v[:, lay.plus] - v[:, lay.minus]) / lay.nominal
    umin, umax = np.minimum.reduceat(mag, lay.first, axis=1), np.maximum.reduceat(mag, lay.first, axis=1)
    vn = np.abs(v[:, lay.n_pos])
    line_pct = 100 * np.array([np.asarray(pf.line_amps.values)[lay.line_pos] for pf in pfs]) / lay.ampacity
    el_pct = 100 * np.array([np.asarray(pf.element_amps.values)[lay.el_pos] for pf in pfs]) / lay.rating
    v_bad = (mag < lay.lo - v_tol) | (mag > lay.hi + v_tol)
    vn_bad = vn > vn_lim + v_tol * lay.n_base if vn_lim is not None else np.zeros_like(vn, dtype=bool)
    line_bad, el_bad = line_pct > 100 + loading_tol, el_pct > 100 + loading_tol
    margins = {
        "voltage_low_pu": np.min(mag - lay.lo, axis=1),
        "voltage_high_pu": np.min(lay.hi - mag, axis=1),
        "current_pct": 100 - line_pct.max(axis=1, initial=0.0),
        "rating_pct": 100 - el_pct.max(axis=1, initial=0.0),
    }
    vn_max = vn.max(axis=1, initial=0.0)
    if vn_lim is not None:
        margins["neutral_v"] = vn_lim - vn_max
    out = []
    for j, pf in enumerate(pfs):
        violations = [f"voltage at {lay.labels[k]} {mag[j, k]:.4f} pu" for k in np.flatnonzero(v_bad[j])]
        violations += [f"neutral voltage at {lay.n_label[k]} {vn[j, k]:.3f} V" for k in np.flatnonzero(vn_bad[j])]
        violations += [f"line {lay.lines[k]} loaded {line_pct[j, k]:.2f} %" for k in np.flatnonzero(line_bad[j])]
        violations += [f"{lay.elements[k]} loaded {el_pct[j, k]:.2f} %" for k in np.flatnonzero(el_bad[j])]
        if not pf.converged:
            violations.insert(0, "OpenDSS power flow did not converge")
        out.append(
            Checked(
                lay,
                bool(pf.converged),
                tuple(violations),
                umin[j],
                umax[j],
                line_pct[j],
                el_pct[j],
                float(vn_max[j]),
                {key: float(x[j]) for key, x in margins.items()},
            )
        )
    return out
