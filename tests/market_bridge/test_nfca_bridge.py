"""NFCA envelopes as prequalification: LV end-user bids capped by their guaranteed envelope."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from market_bridge.cases import CaseError, load_case
from market_bridge.kpis import kpi_row
from market_bridge.schemes import common, multilevel_01, run_scheme


def write_envelopes(path: Path) -> Path:
    """A small envelopes.csv as written by ``nfca envelopes``: 6 end-users, two methods."""
    rows = []
    for i in range(6):
        cap = 17.3 if i % 2 else 9.2
        for method, exp, imp in (("optimal", 4.0 + i, 6.0 + i), ("fair", 3.5, 5.0)):
            for direction, g in (("export", exp), ("import", imp)):
                rows.append({"end_user": f"EU{i}", "connection_point": f"CP{i // 2}", "bus": f"lv{i // 2}",
                             "phases": 3 if i % 2 else 1, "connection": "wye", "capacity_kva": cap,
                             "direction": direction, "method": method, "guaranteed_kw": g,
                             "binding": "voltage" if g < cap else ""})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture()
def envelopes(tmp_path: Path) -> Path:
    return write_envelopes(tmp_path / "envelopes.csv")


def test_lv_bids_and_caps_from_envelopes(envelopes):
    case = load_case("B", envelopes=envelopes)
    lv = [b for b in case.bids if b.kind == "lv"]
    assert len(lv) == 12 and {b.area for b in lv} == {"D69"} and {b.bus for b in lv} == {27}
    eu1_up = next(b for b in lv if b.end_user == "EU1" and b.direction == "up")
    assert eu1_up.qty_mw == pytest.approx(0.0173)
    assert case.lv_caps[eu1_up.bid_id] == pytest.approx(0.005)  # optimal export of EU1 = 5 kW


def test_nfca_prequalification_respects_envelopes(envelopes):
    case = load_case("B", envelopes=envelopes)
    ref = common(case).cost
    vanilla = kpi_row(case, multilevel_01(case), ref)
    nfca = kpi_row(case, run_scheme(case, "ml03@nfca"), ref)
    assert vanilla["lv_envelope_exceedances"] > 0  # the TSO takes the cheap LV bids in full
    assert nfca["status"] == "ok" and nfca["lv_envelope_exceedances"] == 0
    assert nfca["n_line_violations"] == 0 and nfca["n_voltage_violations"] == 0
    assert nfca["inefficiency_pct"] >= -1e-9


def test_nfca_needs_envelopes():
    case = load_case("A")
    with pytest.raises(ValueError, match="envelopes"):
        run_scheme(case, "ml03@nfca")


def test_bad_envelopes_file(tmp_path: Path):
    bad = tmp_path / "envelopes.csv"
    bad.write_text("end_user,direction\nEU0,sideways\n")
    with pytest.raises(CaseError, match="lacks columns"):
        load_case("A", envelopes=bad)
