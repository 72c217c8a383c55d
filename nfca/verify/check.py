"""Independent verification of envelopes by OpenDSS power flows of the full (unreduced) feeder.

A published set is a promise over a box of operating points (`nfca.model.box`). It is checked
at the box's corners, at each limit's worst vertex (found by the optimisation, but checked here
by OpenDSS alone) and at seeded random *audit* points of the box. A check passes when every
voltage an end-user sees is within its limits (and every limited neutral-to-earth voltage) and
no line or transformer is loaded above its rating. The box is rebuilt here from the published
values and the study's options, not taken from the optimisation.
"""

from __future__ import annotations

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


def verify(feeder: Feeder, sets: list[EnvelopeSet], options: EnvelopeOptions,
           audit_points: int | None = None) -> Verification:
    """Verify one method's published sets (both directions of a box, or one direction) at their
    box's corners, each limit's worst vertex and `audit_points` seeded random points."""
    return verify_many(feeder, [sets], options, audit_points)[0]


def verify_many(feeder: Feeder, groups: list[list[EnvelopeSet]], options: EnvelopeOptions,
                audit_points: int | None = None) -> list[Verification]:
    """`verify` for many groups of sets (e.g. every interval of a day) with one OpenDSS compile."""
    n_audit = options.audit_points if audit_points is None else audit_points
    plans = []
    for k, sets in enumerate(groups):
        box = promised_box(feeder, sets, options)
        promised = promised_points(box, sets)
        audit = box.sample(n_audit, options.audit_seed + k) if n_audit else []
        plans.append((box, promised, audit, sets[0].guarantee is not Guarantee.corner))
    loads = [box.loads(p) for box, promised, audit, _ in plans for p in promised + audit]
    checks = iter([check(feeder, pf, options) for pf in powerflows(feeder, loads, options.source_pu)])
    out = []
    for box, promised, audit, audit_fails in plans:
        got = [next(checks) for _ in promised + audit]
        out.append(combine(got[: len(promised)], got[len(promised):], promised + audit, audit_fails))
    return out


def verify_points(feeder: Feeder, loads: list[dict[str, tuple[float, float]]], options: EnvelopeOptions,
                  labels: list[str]) -> Verification:
    """Verify given operating points (kW, kvar per end-user); every one is part of the promise."""
    checks = [check(feeder, pf, options) for pf in powerflows(feeder, loads, options.source_pu)]
    return combine(checks, [], [Point(np.zeros(0), x) for x in labels])


def combine(promised: list[Verification], audit: list[Verification], points: list[Point],
            audit_fails: bool = True) -> Verification:
    """One verification from the checks of the promised points and of the audit points."""
    allv = promised + audit
    violations = []
    for v, p in zip(allv, points):
        violations += [f"{x} ({p.label})" for x in v.violations[:1]]
    bad_audit = sum(not v.verified for v in audit)
    verified = all(v.verified for v in promised) and (bad_audit == 0 or not audit_fails)
    users = allv[0].user_v_min_pu
    lines = allv[0].line_loading_pct
    margins = {}
    for key in allv[0].margins:
        margins[key] = float(min(v.margins[key] for v in allv))
    return Verification(
        converged=all(v.converged for v in allv),
        verified=verified,
        violations=tuple(violations[:5]),
        v_min_pu=float(min(v.v_min_pu for v in allv)),
        v_max_pu=float(max(v.v_max_pu for v in allv)),
        max_loading_pct=float(max(v.max_loading_pct for v in allv)),
        user_v_min_pu={u: float(min(v.user_v_min_pu[u] for v in allv)) for u in users},
        user_v_max_pu={u: float(max(v.user_v_max_pu[u] for v in allv)) for u in users},
        line_loading_pct={k: float(max(v.line_loading_pct[k] for v in allv)) for k in lines},
        v_neutral_max_v=float(max(v.v_neutral_max_v for v in allv)),
        points_checked=len(promised),
        audit_points=len(audit),
        audit_violations=bad_audit,
        margins=margins,
    )


def check(feeder: Feeder, pf: PowerFlow, options: EnvelopeOptions) -> Verification:
    """Compare one OpenDSS solution with the limits."""
    limits = options.limits
    v_tol, loading_tol = limits.v_tol_pu, limits.loading_tol_pct
    violations = []
    vmin_u, vmax_u = {}, {}
    vn_max, vn_lim = 0.0, limits.v_neutral_max_v
    low_margin = high_margin = np.inf
    for u in feeder.end_users:
        base = feeder.buses[u.bus].kv_base_ln * 1e3
        mags = []
        for leg in u.legs:
            vp = pf.voltages.get((u.bus, leg[0]), 0) if leg[0] != EARTH else 0
            vq = pf.voltages.get((u.bus, leg[1]), 0) if leg[1] != EARTH else 0
            nominal_v = base * leg_nominal_pu(leg)
            mag = abs(vp - vq) / nominal_v
            mags.append(mag)
            lo, hi = limits.voltage_bounds_pu(nominal_v)
            low_margin, high_margin = min(low_margin, mag - float(lo)), min(high_margin, float(hi) - mag)
            if mag < lo - v_tol or mag > hi + v_tol:
                violations.append(f"voltage at {u.name} (bus {u.bus} {leg_label(leg)}) {mag:.4f} pu")
        vmin_u[u.name], vmax_u[u.name] = min(mags), max(mags)
        for node in sorted({n for leg in u.legs for n in leg if n != EARTH and n not in PHASES}):
            vn = abs(pf.voltages.get((u.bus, node), 0))
            vn_max = max(vn_max, vn)
            if vn_lim is not None and vn > vn_lim + v_tol * base:
                violations.append(f"neutral voltage at {u.name} (bus {u.bus} node {node}) {vn:.3f} V")
    loading = {}
    for line in feeder.lines:
        pct = 100 * pf.line_amps[line.name] / line.ampacity_a
        loading[line.name] = pct
        if pct > 100 + loading_tol:
            violations.append(f"line {line.name} loaded {pct:.2f} %")
    element_pct = [0.0]
    for el in feeder.elements:
        if el.rating_a > 0 and el.name in pf.element_amps:
            pct = 100 * pf.element_amps[el.name] / el.rating_a
            loading[el.name] = pct
            element_pct.append(pct)
            if pct > 100 + loading_tol:
                violations.append(f"{el.name} loaded {pct:.2f} %")
    if not pf.converged:
        violations.insert(0, "OpenDSS power flow did not converge")
    margins = {
        "voltage_low_pu": float(low_margin), "voltage_high_pu": float(high_margin),
        "current_pct": float(100 - max((loading[x.name] for x in feeder.lines), default=0.0)),
        "rating_pct": float(100 - max(element_pct)),
    }
    if vn_lim is not None:
        margins["neutral_v"] = float(vn_lim - vn_max)
    return Verification(
        converged=pf.converged,
        verified=pf.converged and not violations,
        violations=tuple(violations),
        v_min_pu=float(min(vmin_u.values())),
        v_max_pu=float(max(vmax_u.values())),
        max_loading_pct=float(max(loading.values())) if loading else 0.0,
        user_v_min_pu=vmin_u,
        user_v_max_pu=vmax_u,
        line_loading_pct=loading,
        v_neutral_max_v=float(vn_max),
        margins=margins,
    )
