"""Parallel cables and transformers between the same two buses: one radial branch, each original
element limited by its own rating, envelopes verified on the file as it is.

The feeder (tests/feeder_texts.py, parallel_text): a 416 V feeder whose 60 m head cable is laid twice (or as
one equivalent cable), 8 end-users, one or more transformers in parallel.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nfca.engine import read_feeder
from nfca.errors import FeederError
from nfca.model.envelope import EnvelopeOptions
from nfca.model.reduction import merge_parallel, reduce_feeder
from nfca.studies.envelopes import run_envelopes
from nfca.verify import verify
from tests.feeder_texts import HEADER, parallel_text, write_dss

METHODS, DIRECTIONS = ["optimal", "fair"], ["import", "export"]


def _study(tmp_path, name: str, reduce: bool = True, **kw):
    f = read_feeder(write_dss(tmp_path, parallel_text(**kw), f"{name}.dss"))
    return run_envelopes(f, METHODS, DIRECTIONS, EnvelopeOptions(reduce=reduce), require_verified=False)


def _totals(study) -> dict:
    return {(e.method.value, e.direction.value): e.total_kw for e in study.envelopes}


def test_identical_parallel_cables_merge_into_their_equivalent(tmp_path):
    f = read_feeder(write_dss(tmp_path, parallel_text("identical", head_amps=70)))
    assert {"head", "head_b"} <= {line.name for line in f.lines}  # the reader keeps the file's elements
    merged = merge_parallel(f)
    head = next(line for line in merged.lines if line.name == "head")
    assert "head_b" not in {line.name for line in merged.lines}
    one = next(line for line in f.lines if line.name == "head")
    assert np.allclose(head.z_ohm, one.z_ohm / 2)
    assert head.ampacity_a == pytest.approx(140) and set(head.merged) == {"head", "head_b"}
    # the parallel pair does not stop the reduction: the head merges with the first main segment
    assert len(reduce_feeder(f).buses) < len(f.buses)


@pytest.mark.parametrize("reduce", [True, False])
def test_envelopes_equal_those_of_the_equivalent_cable(tmp_path, reduce):
    """Physics: two identical 70 A cables in parallel are one cable of half the impedance rated
    140 A; the head cable binds, so the envelopes must be the same, and OpenDSS, on the file with
    the two cables, must find each at the same share of its rating."""
    pair = _study(tmp_path, "pair", reduce, head="identical", head_amps=70)
    one = _study(tmp_path, "one", reduce, head="equivalent", head_amps=70)
    assert pair.verified and one.verified
    for key, total in _totals(one).items():
        assert _totals(pair)[key] == pytest.approx(total, abs=2e-3), key
    for ver in pair.verifications:
        assert ver.line_loading_pct["head"] == pytest.approx(ver.line_loading_pct["head_b"], abs=1e-6)
        assert ver.line_loading_pct["head"] == pytest.approx(99.99, abs=0.01)  # at its limit (model margin 0.01 %)
    assert any(b.text.startswith("ampacity line head") for env in pair.envelopes for b in env.binding.values())


@pytest.mark.parametrize("reduce", [True, False])
def test_each_parallel_cable_keeps_its_own_ampacity(tmp_path, reduce):
    """A 70 A cable in parallel with a 120 A one of another type: the current splits by their
    impedances, so the 70 A cable reaches its rating while the other is at two thirds of its own.
    The envelopes verify, and a model that rated the pair by the sum of ratings would not."""
    study = _study(tmp_path, "mixed", reduce, head="mixed", head_amps=70)
    assert study.verified
    for ver in study.verifications:
        assert ver.line_loading_pct["head"] == pytest.approx(99.99, abs=0.01)
        assert ver.line_loading_pct["head_b"] < 80
    assert any(b.text == "ampacity line head" for env in study.envelopes for b in env.binding.values())
    f = study.feeder
    head, head_b = (next(line for line in f.lines if line.name == n) for n in ("head", "head_b"))
    z = np.linalg.inv(np.linalg.inv(head.z_ohm) + np.linalg.inv(head_b.z_ohm))
    summed = replace(
        f,
        lines=tuple(
            replace(head, z_ohm=z, ampacity_a=190.0) if line is head else line for line in f.lines if line is not head_b
        ),
    )
    naive = run_envelopes(summed, ["optimal"], ["import"], require_verified=False)
    ver = verify(f, list(naive.envelopes), naive.options)
    assert not ver.verified and any(v.startswith("line head loaded") for v in ver.violations)


def test_parallel_transformers_equal_one_of_their_total_rating(tmp_path):
    pair = _study(tmp_path, "pair", transformers=(40, 40), head="equivalent", head_amps=150)
    one = _study(tmp_path, "one", transformers=(80,), head="equivalent", head_amps=150)
    assert pair.verified and one.verified
    for key, total in _totals(one).items():
        assert _totals(pair)[key] == pytest.approx(total, abs=2e-3), key
    for ver in pair.verifications:
        assert ver.line_loading_pct["Transformer.tr1"] == pytest.approx(ver.line_loading_pct["Transformer.tr2"])
        assert ver.line_loading_pct["Transformer.tr1"] == pytest.approx(99.99, abs=0.01)


def test_each_parallel_transformer_keeps_its_own_rating(tmp_path):
    """40 and 60 kVA in parallel with the same impedance in ohms share the load equally: the
    40 kVA one binds at 80 kVA together, not 100."""
    mixed = _study(tmp_path, "mixed", transformers=(40, 60), head="equivalent", head_amps=150)
    pair = _study(tmp_path, "pair", transformers=(40, 40), head="equivalent", head_amps=150)
    assert mixed.verified
    for ver in mixed.verifications:
        assert ver.line_loading_pct["Transformer.tr1"] == pytest.approx(99.99, abs=0.01)
        assert ver.line_loading_pct["Transformer.tr2"] == pytest.approx(99.99 * 40 / 60, abs=0.01)
    assert any(b.text == "rating Transformer.tr1" for env in mixed.envelopes for b in env.binding.values())
    for key, total in _totals(pair).items():
        assert _totals(mixed)[key] == pytest.approx(total, abs=2e-3), key


def test_a_mesh_names_every_element_of_the_loop(tmp_path):
    text = parallel_text(extra="New Line.tie bus1=n2 bus2=n4 linecode=main length=30 units=m")
    with pytest.raises(FeederError, match=r"closes a loop between buses n\d and n\d \(.*\): meshed") as err:
        read_feeder(write_dss(tmp_path, text))
    loop = str(err.value).split("(")[1].split(")")[0].split(", ")
    assert sorted(loop) == ["Line.m3", "Line.m4", "Line.tie"]


def test_a_loop_through_transformers_names_them(tmp_path):
    """Two transformers feeding two LV busbars joined by a cable: a mesh, not a parallel pair."""
    text = (
        HEADER.format(name="ring", pu=1.0, kv=0.416, kva=250)
        + "\n".join(
            [
                "New Transformer.tr2 phases=3 windings=2 buses=[mv lv2] conns=[delta wye] kVs=[11 0.416] kVAs=[250 250] XHL=4",
                "New LineCode.c nphases=3 R1=0.3 X1=0.07 R0=1 X0=0.1 C1=0 C0=0 units=km normamps=200",
                "New Line.tie bus1=lv bus2=lv2 linecode=c length=100 units=m",
                "New Load.u1 bus1=lv2.1 phases=1 kV=0.24 XfkVA=9 kW=1",
                "Set VoltageBases=[11 0.416]",
                "CalcVoltageBases",
            ]
        )
        + "\n"
    )
    with pytest.raises(FeederError) as err:
        read_feeder(write_dss(tmp_path, text))
    message = str(err.value)
    assert "closes a loop" in message and "meshed" in message
    assert all(name in message for name in ("Transformer.tr", "Transformer.tr2", "Line.tie"))
