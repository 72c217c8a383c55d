"""The results schema: the binding limit read as data, the envelope reader's checks."""

from __future__ import annotations

import math

import pytest

from nfca.engine import read_feeder
from nfca.errors import InputError
from nfca.io import schema
from tests.feeder_texts import three_wire_text, write_dss


@pytest.fixture
def feeder(tmp_path):
    return read_feeder(write_dss(tmp_path, three_wire_text()))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("capacity", ("capacity", "", "", 9.2)),
        ("firm", ("firm", "", "", math.nan)),
        ("voltage bus cp8 phases ab 0.90 pu", ("voltage", "cp8", "ab", 0.90)),
        ("voltage bus 906 phase a 1.10 pu at 2024-01-01 12:00:00", ("voltage", "906", "a", 1.10)),
        ("neutral voltage bus cp7 node 4 10 V", ("neutral", "cp7", "node 4", 10.0)),
        ("ampacity line m1", ("current", "m1", "", 200.0)),
        ("rating Transformer.tr", ("rating", "Transformer.tr", "", None)),
        ("none (fairness rule)", ("none", "", "", math.nan)),
    ],
)
def test_binding_limit_as_data(feeder, text, expected):
    got = schema.binding_fields(text, feeder, 9.2)
    kind, element, phase, value = expected
    assert (got["binding_type"], got["binding_element"], got["binding_phase"]) == (kind, element, phase)
    if value is None:  # the transformer's rated current on its LV terminals: 250 kVA at 230 V
        assert got["binding_value"] == pytest.approx(250e3 / (3**0.5 * 230), rel=0.01)
    elif math.isnan(value):
        assert math.isnan(got["binding_value"])
    else:
        assert got["binding_value"] == pytest.approx(value)


def test_reader_names_what_is_wrong(tmp_path):
    bad = tmp_path / "e.csv"
    bad.write_text("end_user,direction\nu1,import\n")
    with pytest.raises(InputError, match="lacks column"):
        schema.read_envelopes(bad)
    cols = ",".join(schema.REQUIRED)
    bad.write_text(f"{cols}\nu1,cp1,cp1,a,wye,9.2,import,fair,-3,capacity\n")
    with pytest.raises(InputError, match="line 2: guaranteed_kw must be a number >= 0"):
        schema.read_envelopes(bad)


def test_schema_describes_every_column():
    table = schema.describe()
    assert list(table["name"]) == schema.names(schema.ENVELOPES)
    assert table["description"].str.len().gt(10).all()
    assert {c.unit for c in schema.ENVELOPES if c.name.endswith("_kw")} == {"kW"}
