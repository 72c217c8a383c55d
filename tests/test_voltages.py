"""Customer voltages in volts (nfca.model.voltages): limits stated in volts, checked against the
loads' own kV, and limits given in volts that make the envelopes independent of VoltageBases."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app
from nfca.engine import read_feeder
from nfca.errors import InputError
from nfca.model.envelope import EnvelopeOptions
from nfca.model.limits import Limits
from nfca.model.voltages import check_voltage_limits, rated_voltage_notices, voltage_limits_v
from nfca.studies.envelopes import run_envelopes
from tests.feeder_texts import export_text, four_wire_kron_text, write_dss

runner = CliRunner()
EN50160 = Limits(vmin_v=207, vmax_v=253)


def _spanish(tmp_path, bases: str = "0.42", name: str = "spain.dss"):
    """The export with a 0.42 kV winding and base, whose loads say kV=0.23 (Spain)."""
    text = export_text(voltage_bases=True, normamps=True, lv_kv=0.42, load_kv=0.23, xfkva=True, load_kw=5.0)
    return read_feeder(
        write_dss(tmp_path, text.replace("Set VoltageBases=[11 0.42]", f"Set VoltageBases=[11 {bases}]"), name)
    )


def test_limits_in_volts_per_kind_of_customer_voltage(tmp_path, it_feeder):
    f = _spanish(tmp_path)
    (row,) = voltage_limits_v(f, Limits())
    assert row == {"legs": "phase-to-neutral", "nominal_v": 242.5, "vmin_v": 218.25, "vmax_v": 266.75, "end_users": 7}
    assert voltage_limits_v(f, EN50160)[0]["vmin_v"] == 207
    # a 3x230 V three-wire grid: every end-user sees phase-to-phase 230 V
    (row,) = voltage_limits_v(read_feeder(it_feeder), Limits())
    assert row["legs"] == "phase-to-phase" and row["nominal_v"] == 230 and row["vmin_v"] == 207


def test_loads_rated_off_their_base_earn_a_notice(tmp_path):
    f = _spanish(tmp_path)
    (notice,) = rated_voltage_notices(f, Limits())
    assert notice.data["rated_v"] == 230 and notice.data["nominal_v"] == 242.5 and notice.data["end_users"] == 6
    assert "218.2-266.8 V" in notice.message and "207-253 V" in notice.message
    assert "--vmin-v 207 --vmax-v 253" in notice.message
    assert rated_voltage_notices(f, EN50160) == ()  # limits in volts do not depend on the base
    # loads of 0.24 kV on a 0.416 kV base (240 V against 240.2 V): nothing to say
    ok = read_feeder(write_dss(tmp_path, export_text(voltage_bases=True, normamps=True), "ok.dss"))
    assert rated_voltage_notices(ok, Limits()) == ()


def test_limits_in_volts_make_envelopes_independent_of_the_voltage_bases(tmp_path):
    """Physics: the same feeder with bases [11 0.42] or [11 0.40] is the same network; in pu the
    limits move with the base (0.90-1.10 pu is 218-267 V or 208-254 V phase-to-neutral), so the
    envelopes move; in volts they must not."""
    a, b = _spanish(tmp_path, "0.42", "a.dss"), _spanish(tmp_path, "0.4", "b.dss")
    assert a.buses["cp1"].kv_base_ln != b.buses["cp1"].kv_base_ln

    def totals(f, limits):
        study = run_envelopes(f, ["optimal", "fair"], ["import", "export"], EnvelopeOptions(limits=limits))  # verified
        return {(e.method.value, e.direction.value): e.total_kw for e in study.envelopes}, study

    pu_a, pu_b = totals(a, Limits())[0], totals(b, Limits())[0]
    assert abs(pu_a[("fair", "export")] - pu_b[("fair", "export")]) > 1.0  # kW: the base changed the answer
    (v_a, study), (v_b, _) = totals(a, EN50160), totals(b, EN50160)
    # equal but for the model's publication margin, 1e-4 pu of each base (0.024 V against 0.023 V)
    assert v_a == pytest.approx(v_b, rel=1e-3)
    assert abs(pu_a[("fair", "export")] / pu_b[("fair", "export")] - 1) > 0.05
    for ver in study.verifications:  # what the customers see, in volts, within 207-253 V
        base = a.buses["cp1"].kv_base_ln * 1e3
        assert 207 - 1e-3 <= ver.v_min_pu * base and ver.v_max_pu * base <= 253 + 1e-3


def test_volts_limits_no_customer_voltage_can_meet_are_refused(tmp_path, it_feeder):
    """207-253 V fits phase-to-neutral users on 400 V and phase-to-phase users on 3x230 V, not a
    three-phase delta user's 416 V legs: refused by name, not left to the solver."""
    check_voltage_limits(read_feeder(it_feeder), EN50160)
    text = four_wire_kron_text(n_segments=4).replace(
        "Set VoltageBases", "New Load.motor bus1=cp2.1.2.3 phases=3 conn=delta kV=0.416 XfkVA=20 kW=5\nSet VoltageBases"
    )
    f = read_feeder(write_dss(tmp_path, text, "motor.dss"))
    with pytest.raises(
        InputError,
        match=r"207-253 V cannot hold for the phase-to-phase voltage of nominal 416 V that "
        r"Load\.motor",
    ):
        check_voltage_limits(f, EN50160)
    check_voltage_limits(f, Limits())  # in pu each leg has its own nominal


def test_cli_states_the_limits_in_volts(tmp_path):
    text = export_text(voltage_bases=True, normamps=True, lv_kv=0.42, load_kv=0.23, xfkva=True)
    path = write_dss(tmp_path, text, "spain.dss")
    out = tmp_path / "out"
    args = ["envelopes", str(path), "--out", str(out), "--method", "fair", "--direction", "export", "--format", "json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    table = " ".join(res.stdout.split())  # the results table's title states the limits
    assert "voltage limits 218.25-266.75 V phase-to-neutral (0.90-1.10 pu of 242.5 V)" in table
    assert "notice: 6 load(s) rated 230 V phase-to-neutral" in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["voltage_limits"][0]["vmax_v"] == 266.75
    assert [n["kind"] for n in summary["notices"]] == ["length_units_missing", "rated_voltage_differs"]
    res = runner.invoke(app, args + ["--vmin-v", "207", "--vmax-v", "253"])
    assert res.exit_code == 0, res.output
    assert "voltage limits 207-253 V phase-to-neutral," in " ".join(res.stdout.split())
    assert "rated 230 V" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["vmin_v"] == 207 and summary["voltage_limits"][0]["vmax_v"] == 253
    assert [n["kind"] for n in summary["notices"]] == ["length_units_missing"]
