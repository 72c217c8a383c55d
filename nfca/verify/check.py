"""Independent verification of envelopes by an OpenDSS power flow of the full (unreduced) feeder.

Every participant draws (import) or injects (export) exactly its published envelope, all at
the same time, and every non-participant its firm capacity in the same direction (or the net
power the envelope set was computed for, `EnvelopeSet.firm_kw`, e.g. its forecast). The check
passes when every voltage an end-user sees is within limits and no line or transformer is
loaded above its rating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfca.engine import PowerFlow, powerflows
from nfca.model.envelope import EnvelopeOptions, EnvelopeSet, firm_kw
from nfca.model.network import EARTH, PHASES, Feeder, leg_label, leg_nominal_pu



@dataclass(frozen=True)
class Verification:
    converged: bool
    v_min_pu: float
    v_max_pu: float
    max_loading_pct: float
    verified: bool
    violations: tuple[str, ...]
    user_v_min_pu: dict[str, float]
    user_v_max_pu: dict[str, float]
    line_loading_pct: dict[str, float]
    v_neutral_max_v: float = 0.0  # highest neutral-to-earth voltage at an end-user's neutral conductor


def envelope_loads(feeder: Feeder, env: EnvelopeSet, options: EnvelopeOptions) -> dict[str, tuple[float, float]]:
    """(kW, kvar) of every load, consumption positive, at the envelope."""
    tan_phi = np.tan(np.arccos(options.power_factor))
    loads = {}
    for u in feeder.end_users:
        if not env.participant[u.name] and env.firm_kw is not None:  # held at a given power (forecast)
            p = env.firm_kw[u.name]
            loads[u.name] = (p, tan_phi * abs(p))
            continue
        g = env.guaranteed_kw[u.name] if env.participant[u.name] else firm_kw(u, options)
        loads[u.name] = (env.direction.sign * g, tan_phi * g)
    return loads


def verify(feeder: Feeder, envs: list[EnvelopeSet], options: EnvelopeOptions) -> list[Verification]:
    """Verify each envelope set on the full feeder; one OpenDSS compile for all of them."""
    flows = powerflows(feeder, [envelope_loads(feeder, e, options) for e in envs], options.source_pu)
    return [check(feeder, pf, options) for pf in flows]


def check(feeder: Feeder, pf: PowerFlow, options: EnvelopeOptions) -> Verification:
    """Compare one OpenDSS solution with the limits."""
    violations = []
    vmin_u, vmax_u = {}, {}
    limits = options.limits
    v_tol, loading_tol = limits.v_tol_pu, limits.loading_tol_pct
    vn_max, vn_lim = 0.0, limits.v_neutral_max_v
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
    for el in feeder.elements:
        if el.rating_a > 0 and el.name in pf.element_amps:
            pct = 100 * pf.element_amps[el.name] / el.rating_a
            loading[el.name] = pct
            if pct > 100 + loading_tol:
                violations.append(f"{el.name} loaded {pct:.2f} %")
    if not pf.converged:
        violations.insert(0, "OpenDSS power flow did not converge")
    return Verification(
        converged=pf.converged,
        v_min_pu=float(min(vmin_u.values())),
        v_max_pu=float(max(vmax_u.values())),
        max_loading_pct=float(max(loading.values())) if loading else 0.0,
        verified=pf.converged and not violations,
        violations=tuple(violations),
        user_v_min_pu=vmin_u,
        user_v_max_pu=vmax_u,
        line_loading_pct=loading,
        v_neutral_max_v=float(vn_max),
    )
