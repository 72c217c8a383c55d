"""Properties of the market schemes (issue item 5) on the shipped cases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_bridge.cases import load_case
from market_bridge.clearing import distribution_state, net_activation, transmission_injection
from market_bridge.kpis import evaluate, grid_violations
from market_bridge.prequalification import prequalify
from market_bridge.schemes import SCHEMES, bid_aggregation, common, multilevel_01

SAFE_BY_DESIGN = ("multilevel_03", "multilevel_04", "multilevel_06", "bid_aggregation", "common")
FAST_CASES = ("A", "B")


def _kpis(name: str) -> tuple[pd.DataFrame, list]:
    case = load_case(name)
    df, results = evaluate(case, SCHEMES)
    return df, results


@pytest.fixture(scope="module")
def kpis_fast() -> dict[str, tuple]:
    return {c: (load_case(c), *_kpis(c)) for c in FAST_CASES}


def _check_properties(case, df: pd.DataFrame, results) -> None:
    assert (df["status"] == "ok").all(), df[["scheme", "status", "message"]]
    cost = dict(zip(df["scheme"], df["cost_eur"]))
    viol = dict(zip(df["scheme"], df["n_line_violations"] + df["n_voltage_violations"]))
    ref = cost["common"]
    for s in SCHEMES:
        if viol[s] == 0:  # the common market is no dearer than any grid-safe outcome
            assert ref <= cost[s] + 1e-6 * abs(ref), s
    assert cost["multilevel_04"] >= ref - 1e-6 * abs(ref)
    for s in SAFE_BY_DESIGN:
        assert viol[s] == 0, s
    for _, r in df.iterrows():  # a negative inefficiency always comes with violations
        if r["inefficiency_pct"] < -1e-6:
            assert r["n_line_violations"] + r["n_voltage_violations"] > 0, r["scheme"]
    for res in results:  # every outcome balances the system and respects transmission limits
        assert net_activation(case.bids, res.activation) == pytest.approx(case.imbalance_mw, abs=1e-6)
        assert grid_violations(case, res.activation)["n_transmission_violations"] == 0
        for b in case.bids:
            assert -1e-9 <= res.activation.get(b.bid_id, 0.0) <= b.qty_mw + 1e-6


@pytest.mark.parametrize("name", FAST_CASES)
def test_scheme_properties(kpis_fast, name):
    _check_properties(*kpis_fast[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", ("C", "D"))
def test_scheme_properties_slow_cases(name):
    case = load_case(name)
    _check_properties(case, *evaluate(case, SCHEMES))


def test_unsafe_schemes_show_up_in_case_b(kpis_fast):
    """Case B makes the vanilla DSO-TSO market activate unsafe distribution bids (as the seed)."""
    _, df, _ = kpis_fast["B"]
    ml01 = df[df["scheme"] == "multilevel_01"].iloc[0]
    assert ml01["n_line_violations"] + ml01["n_voltage_violations"] > 0
    assert ml01["inefficiency_pct"] < 0


def test_bid_aggregation_approaches_common_market():
    case = load_case("B")
    ref = common(case).cost
    costs = [bid_aggregation(case, step).cost for step in (2.0, 1.0, 0.5, 0.25)]
    assert all(c >= ref - 1e-6 for c in costs)
    assert all(a >= b - 1e-6 for a, b in zip(costs, costs[1:]))  # nested grids: never dearer
    assert (costs[-1] - ref) / ref < 0.01
    assert costs[-1] < costs[0]


@pytest.mark.parametrize("method", ["price_oe", "uniform_oe", "interrface"])
def test_prequalified_caps_are_grid_safe_at_full_activation(method):
    """Every bid of one direction at its cap, on top of the DSO layer: no (new) violation."""
    case = load_case("B")
    first = multilevel_01(case)
    dso = {k: v for lr in first.layers if lr.name.startswith("dso") for k, v in lr.activation.items()}
    avail = {b.bid_id: b.qty_mw - dso.get(b.bid_id, 0.0) for b in case.bids if b.area != "T"}
    pq = prequalify(case, method, avail, dso)
    assert 0 <= pq.unqualified_up <= 1 and 0 <= pq.unqualified_down <= 1
    for direction in ("up", "down"):
        act = dict(dso)
        for b in case.bids:
            if b.area != "T" and b.direction == direction:
                act[b.bid_id] = act.get(b.bid_id, 0.0) + pq.cap.get(b.bid_id, 0.0)
        assert grid_violations(case, act)["n_line_violations"] == 0
        assert grid_violations(case, act)["n_voltage_violations"] == 0


def test_clearing_is_deterministic():
    case = load_case("A")
    a, b = common(case), common(case)
    assert a.activation == b.activation and a.cost == b.cost


def test_transmission_flows_of_outcome_are_ptdf_flows():
    case = load_case("A")
    res = common(case)
    inj = transmission_injection(case, res.activation)
    assert inj.sum() == pytest.approx(0.0, abs=1e-6)  # balanced after activation
    flows = case.transmission.flows(inj)
    assert np.all(np.abs(flows) <= case.transmission.limit_mw + 1e-6)
    for dname in case.distributions:
        st = distribution_state(case, dname, res.activation)
        assert np.all(st.s_mva <= case.distributions[dname].limit_mva + 1e-6)
