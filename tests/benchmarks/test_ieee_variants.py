"""benchmarks/ieee_variants.py: the scaling benchmark's feeders are seeded, readable, and the
IEEE feeder with more end-users (nothing else changed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nfca.engine import read_feeder
from tests.feeder_texts import IEEE_EULV

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ieee_variants.py"


@pytest.fixture(scope="module")
def variants():
    spec = importlib.util.spec_from_file_location("ieee_variants", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_other_seed_other_users(variants, tmp_path):
    a = _files(variants.generate(110, 1, tmp_path / "a").parent)
    b = _files(variants.generate(110, 1, tmp_path / "b").parent)
    c = _files(variants.generate(110, 2, tmp_path / "c").parent)
    assert a == b
    assert a["Loads.dss"] != c["Loads.dss"]
    assert {k: v for k, v in a.items() if k != "Loads.dss"} == {k: v for k, v in c.items() if k != "Loads.dss"}


def test_a_variant_is_the_ieee_feeder_with_more_end_users(variants, tmp_path):
    ieee = read_feeder(IEEE_EULV)
    big = read_feeder(variants.generate(110, 1, tmp_path))
    assert len(big.end_users) == 110
    assert {u.capacity_kva for u in big.end_users} == {9.2}
    assert len(big.lines) == len(ieee.lines) and set(big.buses) == set(ieee.buses)
    old = {u.name: (u.bus, u.legs) for u in ieee.end_users}
    assert {u.name: (u.bus, u.legs) for u in big.end_users if u.name in old} == old
    new = [u for u in big.end_users if u.name not in old]
    assert len({u.bus for u in new}) > 40 and {len(u.legs) for u in new} == {1}  # spread, single-phase
    with pytest.raises(ValueError, match="at least"):
        variants.generate(54, 1, tmp_path / "small")
