"""Physics and data checks: MATPOWER units, PTDF against a DC power flow, LinDistFlow balance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from market_bridge.cases import load_case
from market_bridge.clearing import distribution_injection, distribution_state
from market_bridge.networks import build_distribution, build_transmission, lindistflow, read_matpower_case
from market_bridge.schemes import common


def test_case69_units_are_converted_to_mw_and_pu():
    c = read_matpower_case("case69")
    assert c.bus[:, 2].sum() == pytest.approx(3.8021, abs=1e-4)  # Baran & Wu total load, MW
    assert c.bus[:, 3].sum() == pytest.approx(2.6947, abs=1e-4)
    z_base = 12.66**2 / 10.0  # kV^2 / MVA
    assert c.branch[0, 2] == pytest.approx(0.0005 / z_base)  # first branch r = 0.0005 ohm


def test_case141_load_from_kva_at_085_power_factor():
    c = read_matpower_case("case141")
    p, q = c.bus[:, 2], c.bus[:, 3]
    assert p.sum() == pytest.approx(11.944625, rel=1e-9)
    loaded = p > 0
    assert np.allclose(q[loaded] / p[loaded], np.tan(np.arccos(0.85)))


def test_unknown_matlab_statement_is_refused(tmp_path: Path):
    text = (read_matpower_case.__globals__["matpower_data_dir"]() / "case69.m").read_text()
    bad = tmp_path / "case69x.m"
    bad.write_text(text + "\nmpc.bus(:, PD) = mpc.bus(:, PD) * 2;\n")
    with pytest.raises(ValueError, match="unrecognised"):
        read_matpower_case(bad)


def test_ptdf_flows_equal_pandapower_dc_power_flow():
    pp = pytest.importorskip("pandapower")
    import pandapower.networks as pn

    net = pn.case14()
    pp.rundcpp(net)
    t = build_transmission(read_matpower_case("case14"))
    flows = t.flows(-net.res_bus.p_mw.to_numpy())
    ref = {(r.from_bus + 1, r.to_bus + 1): net.res_line.p_from_mw[i] for i, r in net.line.iterrows()}
    ref |= {(r.hv_bus + 1, r.lv_bus + 1): net.res_trafo.p_hv_mw[i] for i, r in net.trafo.iterrows()}
    assert len(ref) == len(t.lines)
    for k, line in enumerate(t.lines):
        assert flows[k] == pytest.approx(ref[line], abs=1e-8)


def test_lindistflow_close_to_ac_power_flow_on_case69():
    pp = pytest.importorskip("pandapower")
    from pandapower.converter.pypower import from_ppc

    c = read_matpower_case("case69")
    net = from_ppc({"version": "2", "baseMVA": c.base_mva, "bus": c.bus, "gen": c.gen, "branch": c.branch}, f_hz=60)
    pp.runpp(net)
    d = build_distribution(c, "D69", 1.0, np.full(len(c.branch), 10.0), 0.9, 1.1)
    v = lindistflow(d).v_pu
    # LinDistFlow neglects losses: at most 0.004 pu (the README's figure), no unit mistakes
    # (those give 10 % or more); losses only lower the AC voltages.
    assert np.max(np.abs(net.res_bus.vm_pu.to_numpy() - v)) < 0.004
    assert v.min() > net.res_bus.vm_pu.min()


def test_lindistflow_power_balance_in_a_cleared_model():
    case = load_case("A")
    res = common(case)
    assert res.status.ok
    for dname, net in case.distributions.items():
        inj = distribution_injection(case, dname, res.activation)
        st = distribution_state(case, dname, res.activation)
        net_load = net.load_mw - inj
        for k in range(len(net.parent)):  # flow into a node = its net load + flows to its children
            j = net.child[k]
            out = st.p_mw[net.parent == j].sum()
            assert st.p_mw[k] == pytest.approx(net_load[j] + out, abs=1e-9)
        head = net.parent == 0
        assert st.p_mw[head].sum() == pytest.approx(net_load.sum(), abs=1e-9)  # lossless
        # voltage drop of each branch
        w = st.v_pu**2
        drop = 2 * (net.r_pu * st.p_mw + net.x_pu * st.q_mvar) / net.base_mva
        assert np.allclose(w[net.parent] - w[net.child], drop, atol=1e-12)


def _activation_model(case, dname, rng):
    """A model with every bid of ``dname`` fixed at a random activation within its volume."""
    from market_bridge.clearing import constraint_distribution, grid_limits, new_market

    net = case.distributions[dname]
    bids = case.bids_in(dname)
    m = new_market(bids, {b.bid_id: b.qty_mw for b in bids})
    blk = constraint_distribution(m, case, dname, np.zeros(net.n_nodes), grid_limits(net))
    act = {b.bid_id: float(rng.uniform(0, b.qty_mw)) for b in bids}
    for b in bids:
        m.a[b.bid_id].fix(act[b.bid_id])
    return blk, act


@pytest.mark.parametrize("dname", ["D69", "D141"])
def test_lindistflow_limits_in_the_model_are_the_power_flow(dname):
    """Every limit the market model keeps reads the LinDistFlow power flow's branch flow or squared
    voltage for the same activations (the sensitivity form is exact)."""
    import pyomo.environ as pyo

    case = load_case("B")
    blk, act = _activation_model(case, dname, np.random.default_rng(0))
    st = distribution_state(case, dname, act)
    assert len(blk.rows) > 0
    for r, (kind, i, _) in enumerate(blk.rows):
        expected = st.p_mw[i] if kind == "p" else st.v_pu[i] ** 2
        assert pyo.value(blk.limits[r].body) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("dname", ["D69", "D141"])
def test_limits_left_out_of_the_model_cannot_bind(dname):
    """A limit is left out only when no activation within the bids' volumes reaches it: checked
    at the corners (every up bid or every down bid in full) and at random activations."""
    from market_bridge.clearing import grid_limits

    case = load_case("B")
    net = case.distributions[dname]
    lim = grid_limits(net)
    blk, _ = _activation_model(case, dname, np.random.default_rng(1))
    kept = set(blk.rows)
    rng = np.random.default_rng(2)
    bids = case.bids_in(dname)
    trials = [{b.bid_id: b.qty_mw * (b.direction == d) for b in bids} for d in ("up", "down")]
    trials += [{b.bid_id: float(rng.uniform(0, b.qty_mw)) for b in bids} for _ in range(20)]
    for act in trials:
        st = distribution_state(case, dname, act)
        w = st.v_pu**2
        for k in range(len(net.parent)):
            if ("p", k, True) not in kept:
                assert st.p_mw[k] <= lim.p_max[k] + 1e-9
            if ("p", k, False) not in kept:
                assert st.p_mw[k] >= lim.p_min[k] - 1e-9
        for n in range(1, net.n_nodes):
            if ("w", n, True) not in kept:
                assert w[n] <= lim.w_max[n] + 1e-9
            if ("w", n, False) not in kept:
                assert w[n] >= lim.w_min[n] - 1e-9
