"""NFCA envelopes as prequalification: LV end-user bids capped by their guaranteed envelope in
every market layer, the common reference included; only participants (and firm users listed as
flexible) bid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from market_bridge.cases import CaseError, case_file, load_case
from market_bridge.kpis import evaluate
from market_bridge.schemes import run_scheme


def write_envelopes(path: Path, participants: tuple[int, ...] = (0, 1, 2, 3)) -> Path:
    """A small envelopes.csv as written by ``nfca envelopes``: 6 end-users (EU4 and EU5 firm),
    two methods. A non-participant's guaranteed value is its firm connection (its capacity)."""
    rows = []
    for i in range(6):
        cap = 17.3 if i % 2 else 9.2
        part = i in participants
        for method, exp, imp in (("optimal", 4.0 + i, 6.0 + i), ("fair", 3.5, 5.0)):
            for direction, g in (("export", exp), ("import", imp)):
                rows.append(
                    {
                        "end_user": f"EU{i}",
                        "connection_point": f"CP{i // 2}",
                        "bus": f"lv{i // 2}",
                        "phases": "abc" if i % 2 else "a",
                        "connection": "wye",
                        "capacity_kva": cap,
                        "direction": direction,
                        "method": method,
                        "participant": part,
                        "guaranteed_kw": g if part else cap,
                        "binding": "voltage" if part else "firm",
                    }
                )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture()
def envelopes(tmp_path: Path) -> Path:
    return write_envelopes(tmp_path / "envelopes.csv")


def test_participants_bid_capped_by_their_envelopes(envelopes):
    case = load_case("B", envelopes=envelopes)
    lv = [b for b in case.bids if b.kind == "lv"]
    assert {b.end_user for b in lv} == {"EU0", "EU1", "EU2", "EU3"}  # non-participants bid nothing
    assert {b.area for b in lv} == {"D69"} and {b.bus for b in lv} == {27}
    eu1_up = next(b for b in lv if b.end_user == "EU1" and b.direction == "up")
    assert eu1_up.qty_mw == pytest.approx(0.0173)
    assert case.lv_caps[eu1_up.bid_id] == pytest.approx(0.005)  # optimal export of EU1 = 5 kW


def test_firm_users_bid_only_when_listed_as_flexible(tmp_path: Path, envelopes):
    edited = tmp_path / "B.toml"
    edited.write_text(case_file("B").read_text().replace("firm_flexible = []", 'firm_flexible = ["EU5"]'))
    case = load_case(path=edited, envelopes=envelopes)
    eu5 = [b for b in case.bids if b.end_user == "EU5"]
    assert len(eu5) == 2 and "EU4" not in {b.end_user for b in case.bids}
    for b in eu5:  # a firm connection's cap is its firm value: the full capacity
        assert case.lv_caps[b.bid_id] == pytest.approx(0.0173)
    edited.write_text(case_file("B").read_text().replace("firm_flexible = []", 'firm_flexible = ["EU9"]'))
    with pytest.raises(CaseError, match="EU9"):
        load_case(path=edited, envelopes=envelopes)


def test_nfca_caps_hold_in_every_layer_and_in_the_reference(envelopes):
    """Under @nfca no layer activates an end-user beyond its envelope, the common reference
    (common@nfca) included, and the inefficiency is measured against that reference; without the
    caps the TSO takes the cheap LV bids in full."""
    case = load_case("B", envelopes=envelopes)
    df, _ = evaluate(case, ["ml03@nfca", "ml06@nfca", "ml01"])
    ref = df[(df["scheme"] == "common") & (df["prequalification"] == "nfca")]
    assert len(ref) == 1 and ref["lv_envelope_exceedances"].iloc[0] == 0
    capped = df[df["prequalification"] == "nfca"]
    assert (capped["lv_envelope_exceedances"] == 0).all() and (capped["status"] == "optimal").all()
    ml03 = capped[capped["scheme"] == "multilevel_03"].iloc[0]
    ref_cost = ref["cost_eur"].iloc[0]
    assert ml03["inefficiency_pct"] == pytest.approx((ml03["cost_eur"] - ref_cost) / ref_cost * 100, abs=1e-3)
    assert ml03["n_line_violations"] + ml03["n_voltage_violations"] == 0
    assert df[df["scheme"] == "multilevel_01"]["lv_envelope_exceedances"].iloc[0] > 0


def test_nfca_needs_envelopes():
    with pytest.raises(ValueError, match="envelopes"):
        run_scheme(load_case("A"), "ml03@nfca")


def test_bad_envelopes_files_are_named(tmp_path: Path):
    bad = tmp_path / "envelopes.csv"
    bad.write_text("end_user,direction\nEU0,sideways\n")
    with pytest.raises(CaseError, match="envelopes.csv.*lacks"):
        load_case("A", envelopes=bad)
    bad.write_bytes("end_user,capacity_kva\nCaf\xe9,9\n".encode("latin-1"))
    with pytest.raises(CaseError, match="envelopes.csv.*decode"):
        load_case("A", envelopes=bad)
    good = write_envelopes(tmp_path / "e.csv")
    df = pd.read_csv(good)
    df.loc[0, "method"] = "greedy"
    df.to_csv(good, index=False)
    with pytest.raises(CaseError, match="greedy"):
        load_case("A", envelopes=good)
