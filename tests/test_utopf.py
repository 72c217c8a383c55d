"""The UTOPF model in power-flow mode is a three-phase power flow that agrees with OpenDSS."""

from __future__ import annotations

import numpy as np
import pytest

from nfca.engine import powerflows, read_feeder
from nfca.model.reduction import reduce_feeder
from nfca.opf.formulation import admittance_matrix, per_unit, solve_powerflow
from nfca.studies.validation import compare_powerflow

TOL_PU = 1e-6


@pytest.mark.parametrize("fixture", ["kron_feeder", "it_feeder"])
@pytest.mark.parametrize("load_kw", [None, 6.0])
def test_powerflow_agrees_with_opendss(request, fixture, load_kw):
    report = compare_powerflow(request.getfixturevalue(fixture), load_kw)
    assert report["solver_status"] == "optimal"
    assert report["max_abs_dv_pu"] <= TOL_PU


def _source_power(net, v):
    """Complex power the source injects (pu), from its Norton equivalent."""
    i = net.src_y @ (net.src_e - v[net.src_idx])
    return np.sum(v[net.src_idx] * np.conj(i))


@pytest.mark.parametrize("fixture", ["kron_feeder", "it_feeder"])
def test_power_balance_and_positive_losses(request, fixture):
    f = read_feeder(request.getfixturevalue(fixture))
    net = per_unit(f)
    pf = solve_powerflow(net)
    v = pf.v_pu
    s_src = _source_power(net, v)
    s_load = sum(complex(u.p_kw, u.q_kvar) for u in f.end_users) * 1e3 / net.s_base_va
    # losses = injected - consumed = V^H Y V over the network's branches (>= 0 for passive R)
    losses = s_src - s_load
    y = admittance_matrix(net)
    # nodal balance: Y V = I_source - I_loads, so V^H Y V equals the branch losses plus source internal
    assert losses.real > 0
    assert losses.real < 0.1 * s_load.real  # a sane LV feeder loses well under 10 %
    i_net = y @ v
    s_nodes = v * np.conj(i_net)
    # sum of S over all nodes of Y V equals losses in lines, transformer and source impedance
    assert np.sum(s_nodes).real >= losses.real - 1e-9


def test_reduced_model_gives_the_same_user_voltages(kron_feeder):
    f = read_feeder(kron_feeder)
    r = reduce_feeder(f)
    assert len(r.buses) < len(f.buses)
    full = solve_powerflow(per_unit(f)).voltages_v
    red = solve_powerflow(per_unit(r)).voltages_v
    for u in f.end_users:
        for node in (1, 2, 3):
            assert red[(u.bus, node)] == pytest.approx(full[(u.bus, node)], abs=1e-6)
    ref = powerflows(f, [{}])[0]
    for bn, v in red.items():
        assert abs(v - ref.voltages[bn]) / (f.buses[bn[0]].kv_base_ln * 1e3) < TOL_PU


@pytest.mark.slow
@pytest.mark.parametrize("load_kw", [None, 5.0])
def test_ieee_eulv_powerflow_agrees_with_opendss(ieee_eulv, load_kw):
    report = compare_powerflow(ieee_eulv, load_kw)
    assert report["buses"] == 907 and report["end_users"] == 55
    assert report["solver_status"] == "optimal"
    assert report["max_abs_dv_pu"] <= TOL_PU


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["on_peak_566", "off_peak_1"])
def test_ieee_eulv_snapshots_agree_with_opendss(ieee_eulv, scenario):
    from feeders.build_ieee_eulv import snapshot_loads

    loads = snapshot_loads(scenario)
    f = read_feeder(ieee_eulv)
    ours = solve_powerflow(per_unit(reduce_feeder(f)), loads).voltages_v
    ref = powerflows(f, [loads])[0]
    dv = max(abs(v - ref.voltages[bn]) / (f.buses[bn[0]].kv_base_ln * 1e3) for bn, v in ours.items())
    assert dv <= TOL_PU
