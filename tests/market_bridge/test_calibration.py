"""The shipped case files and the README's data statements are what the calibration script
derives from its design rules, and the design has the physics it claims."""

from __future__ import annotations

import pytest

from market_bridge import calibration
from market_bridge.cases import CASES_DIR


@pytest.mark.parametrize("name", ["A", "B", "C", "D"])
def test_case_files_are_reproduced_by_the_script(name):
    assert (CASES_DIR / f"{name}.toml").read_text() == calibration.render(name)


def test_readme_data_statements_are_reproduced_by_the_script():
    text = calibration.README.read_text()
    block = text[text.index(calibration.BEGIN) + len(calibration.BEGIN) : text.index(calibration.END)].strip("\n")
    assert block == calibration.readme_block()


def test_design_has_the_physics_it_claims():
    f = calibration.facts()
    assert f["d141_import_cut_mw"] > 1.0  # the transformer needs the interface flow itself to fall
    assert f["d141_v_min_pu"] > 0.95  # D141: current binds, voltage does not
    lo, hi = calibration.WEAK_LATERAL
    assert f["d69_v_min_pu"] < 0.95 and lo <= f["d69_v_min_node"] <= hi
    assert f["der_all_up_v_max"] > 1.05  # the storage units together break the upper limit
    high = f["critical_nodes"][: calibration.N_CRITICAL]
    assert set(calibration.DER_NODES) & set(high)
