"""Validation of the model itself: the UTOPF in power-flow mode against OpenDSS at the same loads.

Not part of envelope verification (which never uses the optimisation model): this is the model's
first correctness test, behind `nfca powerflow`.
"""

from __future__ import annotations

import time

from nfca.engine import powerflows, read_feeder
from nfca.model.network import EARTH, PHASES
from nfca.model.reduction import reduce_feeder
from nfca.opf.formulation import solve_powerflow
from nfca.opf.network import leg_voltages_pu, per_unit


def compare_powerflow(path, load_kw: float | None = None, reduce: bool = False) -> dict:
    """UTOPF in power-flow mode against OpenDSS at the same loads: the model's first test.

    `load_kw` puts every end-user at that power (pf 1); otherwise the file's loads are used.
    """

    t0 = time.perf_counter()
    feeder = read_feeder(path, ampacity=None)  # a power flow needs no ampacity
    loads = {u.name: ((load_kw, 0.0) if load_kw is not None else (u.p_kw, u.q_kvar)) for u in feeder.end_users}
    model_feeder = reduce_feeder(feeder) if reduce else feeder
    net = per_unit(model_feeder)
    t1 = time.perf_counter()
    ours = solve_powerflow(net, loads)
    t2 = time.perf_counter()
    ref = powerflows(feeder, [loads])[0]
    err = {bn: abs(v - ref.voltages[bn]) / (feeder.buses[bn[0]].kv_base_ln * 1e3) for bn, v in ours.voltages_v.items()}
    dv = max(err.values())
    dv_neutral = [e for (_, node), e in err.items() if node != EARTH and node not in PHASES]
    vl = leg_voltages_pu(net, ours.v_pu)
    return {
        "feeder": feeder.name,
        "max_abs_dv_pu": float(dv),  # over every conductor, neutrals included (to earth)
        "neutral_conductors": len(dv_neutral),
        "max_abs_dv_neutral_pu": float(max(dv_neutral, default=0.0)),
        "buses": len(feeder.buses),
        "model_buses": len(model_feeder.buses),
        "lines": len(feeder.lines),
        "end_users": len(feeder.end_users),
        "total_load_kw": round(sum(p for p, _ in loads.values()), 6),
        "v_min_pu": float(vl.min()),
        "v_max_pu": float(vl.max()),
        "solver_status": ours.result.status,
        "iterations": ours.result.iterations,
        "seconds": round(t2 - t1, 4),
        "read_seconds": round(t1 - t0, 4),
        "opendss_converged": ref.converged,
        "notices": [n.as_dict() for n in feeder.notices],
    }
