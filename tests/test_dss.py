"""The reader: any radial OpenDSS feeder in, clear errors for what is not supported."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nfca.engine import powerflows, read_feeder
from nfca.errors import FeederError
from nfca.model.ratings import AmpacityRules
from tests.feeder_texts import IEEE_EULV, export_text, four_wire_kron_text, three_wire_text, write_dss


def test_three_wire_feeder_end_users(it_feeder):
    f = read_feeder(it_feeder)
    users = f.end_user
    assert users["a1"].legs == ((2, 3),) and users["a1"].connection == "delta"
    assert users["d3"].legs == ((1, 2), (2, 3), (3, 1)) and users["d3"].capacity_kva == 25.1
    # several end-users on one connection point
    cp = next(c for c in f.connection_points if c.bus == "cp4")
    assert set(cp.end_users) == {"a4", "b0", "b1", "b2", "b3"}
    assert f.elements[0].description["vector_group"] == "Dyn"
    assert f.elements[0].rating_a == pytest.approx(250 / (3**0.5 * 0.23))


def test_kron_feeder_lines_have_impedance_and_ampacity(kron_feeder):
    f = read_feeder(kron_feeder)
    m1 = next(line for line in f.lines if line.name == "m1")
    # 40 m of R1 = 0.32, R0 = 1.3 ohm/km: self R = (2 R1 + R0) / 3 * length
    assert m1.z_ohm[0, 0].real == pytest.approx((2 * 0.32 + 1.3) / 3 * 0.04)
    assert m1.ampacity_a == 180 and m1.length_m == pytest.approx(40)
    assert f.end_user["u1"].legs == ((1, 0),)
    assert f.end_user["t4"].legs == ((1, 0), (2, 0), (3, 0))


BAD = {
    "mesh": ("New Line.loop bus1=n2 bus2=n5 linecode=main length=30 units=m", "closes a loop"),
    "regulator": ("New RegControl.reg1 transformer=tr winding=2 vreg=120", "RegControl.reg1: voltage regulators"),
    "no ampacity": (
        "New LineCode.bad nphases=3 R1=0.3 X1=0.07 R0=1 X0=0.1 units=km normamps=0\n"
        "New Line.x1 bus1=n8 bus2=x1 linecode=bad length=10 units=m",
        "Line.x1: no ampacity",
    ),
    "missing phase": (
        "New LineCode.two nphases=2 R1=0.3 X1=0.07 R0=1 X0=0.1 units=km normamps=100\n"
        "New Line.x2 bus1=n8.1.2 bus2=x2.1.2 phases=2 linecode=two length=10 units=m\n"
        "New Load.bad bus1=x2.3 phases=1 kV=0.24 kW=1",
        "Load.bad is connected to node 3 of bus x2",
    ),
    "unknown linecode": ("New Line.x3 bus1=n8 bus2=x3 linecode=nothere length=10 units=m", "nothere"),
    "disconnected": (
        "New Line.x4 bus1=island1 bus2=island2 linecode=main length=10 units=m\n"
        "New Load.lost bus1=island2.1 phases=1 kV=0.24 kW=1",
        "not connected to the source",
    ),
    "generator": ("New Generator.g1 bus1=n3 kV=0.416 kW=10", "Generator.g1"),
    "negative length": (
        "New Line.x5 bus1=n8 bus2=x5 linecode=main length=-3 units=m",
        "Line.x5: length must be positive",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unsupported_or_malformed_feeders_name_the_element(tmp_path, case):
    extra, message = BAD[case]
    text = four_wire_kron_text().replace("Set VoltageBases", extra + "\nSet VoltageBases")
    with pytest.raises(FeederError, match=message):
        read_feeder(write_dss(tmp_path, text))


def test_missing_file_and_empty_feeder(tmp_path):
    with pytest.raises(FeederError, match="no such feeder file"):
        read_feeder(tmp_path / "nothere.dss")
    text = "\n".join(line for line in three_wire_text().splitlines() if not line.startswith("New Load"))
    with pytest.raises(FeederError, match="no loads"):
        read_feeder(write_dss(tmp_path, text))


# ----------------------------------------------------------------------------- what exports lack


def _export(tmp_path, name: str = "Master.dss", **kw):
    return read_feeder(write_dss(tmp_path, export_text(**kw), name), ampacity=AmpacityRules(default_a=200))


def test_voltage_bases_are_inferred_when_the_file_sets_none(tmp_path):
    """No `Set VoltageBases`: the source's and the windings' kV, as CalcVoltageBases with that
    list, the same bases as the file that sets them, and a notice that says so."""
    inferred = _export(tmp_path, "a.dss")
    given = _export(tmp_path, "b.dss", voltage_bases=True)
    assert {b: bus.kv_base_ln for b, bus in inferred.buses.items()} == {
        b: bus.kv_base_ln for b, bus in given.buses.items()
    }
    assert inferred.buses["cp3"].kv_base_ln == pytest.approx(0.416 / 3**0.5)
    (notice,) = [n for n in inferred.notices if n.kind == "voltage_bases_inferred"]
    assert notice.data["voltage_bases_kv"] == [11, 0.416] and "[11 0.416] kV" in notice.message
    assert not [n for n in given.notices if n.kind == "voltage_bases_inferred"]


def test_voltage_bases_left_at_opendss_defaults_are_inferred_too(tmp_path):
    """CalcVoltageBases without Set VoltageBases would give the 0.416 kV grid OpenDSS's 0.48 kV."""
    text = export_text().replace("New Load.shop", "CalcVoltageBases\nNew Load.shop")
    f = read_feeder(write_dss(tmp_path, text), ampacity=AmpacityRules(default_a=200))
    assert f.buses["cp3"].kv_base_ln == pytest.approx(0.416 / 3**0.5)


def test_a_source_far_from_its_winding_is_refused(tmp_path):
    """OpenDSS's default 115 kV left above an 11 kV transformer: every voltage below is a tenth."""
    with pytest.raises(FeederError) as err:
        _export(tmp_path, source_kv=None)
    assert str(err.value).startswith(
        "Vsource.source: basekv 115 kV, but the winding 1 of Transformer.tr it feeds at bus mv is rated 11 kV"
    )
    _export(tmp_path, "ok.dss", source_kv=11.4)  # within 5 %


@pytest.mark.parametrize("units", ["none", "m", "mixed"])
def test_lengths_without_units_follow_the_line_code(tmp_path, units):
    """Lengths without `units=` are in the line code's units, as OpenDSS reads them: the same
    physical feeder written three ways has the same lengths and impedances."""
    f = _export(tmp_path, voltage_bases=True, units=units)
    ref = _export(tmp_path, "ref.dss", voltage_bases=True, units="m")
    lengths = {line.name: line.length_m for line in f.lines}
    assert lengths["m1"] == pytest.approx(35) and lengths["s2"] == pytest.approx(12)
    assert lengths == pytest.approx({line.name: line.length_m for line in ref.lines})
    for a, b in zip(f.lines, ref.lines):
        assert np.allclose(a.z_ohm, b.z_ohm, rtol=1e-12)
    assert f.distance_m()["cp6"] == pytest.approx(6 * 35 + 12)
    # the one line with no unit anywhere (its own R/X): metres, and said
    assert lengths["bare"] == 15
    (notice,) = [n for n in f.notices if n.kind == "length_units_missing"]
    assert notice.data == {"lines": 1, "example": "bare"}


def test_defaulted_capacities_are_counted_and_big_loads_warned(tmp_path):
    f = _export(tmp_path, voltage_bases=True)
    (notice,) = [n for n in f.notices if n.kind == "capacity_defaulted"]
    assert notice.data == {"loads": 7, "capacity_kva": 9.2} and notice.level == "notice"
    assert not [n for n in f.notices if n.kind == "capacity_below_load"]
    big = _export(tmp_path, "big.dss", voltage_bases=True, load_kw=600)
    (warning,) = [n for n in big.notices if n.kind == "capacity_below_load"]
    assert warning.level == "warning" and warning.data["loads"] == 7 and warning.data["example"] == "shop"
    assert "Load.shop: 1200 kW" in warning.message
    given = _export(tmp_path, "given.dss", voltage_bases=True, xfkva=True)
    assert not [n for n in given.notices if n.kind.startswith("capacity")]


# ----------------------------------------------------------------------------- power flows

_ONE_AT_A_TIME = """
import json, sys
from pathlib import Path
import numpy as np
from nfca.engine import opendss

master, work = Path(sys.argv[1]), Path(sys.argv[2])
dss = opendss.start(work)


def compiled():
    opendss.compile_feeder(dss, master, master)
    feeder = opendss.read_feeder(dss, master)
    return feeder, opendss.Flows(dss, feeder)


feeder, flows = compiled()
names = flows.layout.loads
base = np.array([[u.p_kw, u.q_kvar] for u in feeder.end_users])
rng = np.random.default_rng(7)
cases = [base]  # the file's own loads first: nothing changes, some loads keep their pf
for _ in range(6):
    case = base.copy()
    pick = rng.random(len(names)) < 0.7
    case[pick, 0] = rng.uniform(-8.0, 6.0, pick.sum())
    case[pick, 1] = rng.uniform(-1.0, 2.0, pick.sum())
    cases.append(case)
cases.append(base)
cases = np.stack(cases)

# the reference: each changed load set by name, one call per value, arrays read as lists
now, ref = base.copy(), []
for case in cases:
    for j in np.flatnonzero(np.any(case != now, axis=1)):
        dss.Loads.Name(names[j])
        dss.Loads.kW(case[j, 0])
        dss.Loads.kvar(case[j, 1])
    now = case.copy()
    dss.Solution.Solve()
    ref.append((dss.Circuit.AllBusVolts(), dss.PDElements.AllCurrents(), dss.Solution.Iterations()))

feeder, flows = compiled()  # the same history of solves from a fresh compile
conv, iters, v, amps, i_tr = flows.solve(cases, None)
v_ref = np.array([np.asarray(r[0]).view(complex) for r in ref])
i_ref = np.array([np.asarray(r[1]).view(complex) for r in ref])
amps_ref = np.zeros_like(amps)
for c in range(len(cases)):
    np.maximum.at(amps_ref[c], flows.owner, np.abs(i_ref[c][flows.pos]))
print(json.dumps({
    "loads": len(names),
    "converged": bool(conv.all()),
    "iterations": [iters.tolist(), [r[2] for r in ref]],
    "v": float(np.max(np.abs(v - v_ref) / np.abs(v_ref).clip(1e-300))),
    "amps": float(np.max(np.abs(amps - amps_ref) / np.abs(amps_ref).clip(1e-300), initial=0.0)),
    "i_tr": float(np.max(np.abs(i_tr - i_ref[:, flows.tr_pos]) / np.abs(i_ref[:, flows.tr_pos]).clip(1e-300))),
    "zero_amps_equal": bool(np.array_equal(amps == 0, amps_ref == 0)),
}))
"""


@pytest.mark.parametrize("feeder", ["three_wire", "four_wire_kron", "ieee_eulv"])
def test_power_flows_set_all_loads_at_once_as_one_at_a_time(tmp_path, feeder):
    """The engine sets every load's kW and kvar of a case in two batch calls and reads the arrays
    as numpy: the voltages, line loadings and transformer currents are those of setting each load
    by name, one call at a time (what OpenDSS's classic API does), to 1e-9 relative."""
    if feeder == "ieee_eulv":
        master = IEEE_EULV
    else:
        text = three_wire_text() if feeder == "three_wire" else four_wire_kron_text()
        master = write_dss(tmp_path, text)
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(  # OpenDSS locked down in its own process, as in the engine
        [sys.executable, "-c", _ONE_AT_A_TIME, str(master.resolve()), str(work)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["loads"] > 5 and got["converged"]
    assert got["iterations"][0] == got["iterations"][1] and max(got["iterations"][0]) > 2
    assert got["v"] <= 1e-9 and got["amps"] <= 1e-9 and got["i_tr"] <= 1e-9
    assert got["zero_amps_equal"]


def test_power_flow_cases_are_read_by_load_name_whatever_their_order(it_feeder):
    """Cases name their loads in any order, any subset, any case: each load gets its own power
    (the engine looks a run of cases naming the same loads up once)."""
    feeder = read_feeder(it_feeder)
    names = [u.name for u in feeder.end_users]
    power = {n: (1.0 + k, 0.1 * k) for k, n in enumerate(names)}
    forward = dict(power)
    backward = {n: power[n] for n in reversed(names)}
    upper = {n.upper(): pq for n, pq in power.items()}
    some = {names[0]: (6.0, 0.0)}
    flows = powerflows(feeder, [forward, backward, forward, upper, some, {}])
    v = [np.array(f.voltages.values) for f in flows]

    def same(a, b):  # each solve starts from the last one's voltages: equal to the 1e-10 pu tolerance
        return np.allclose(a, b, rtol=0, atol=1e-6)

    assert same(v[0], v[1]) and same(v[0], v[2]) and same(v[0], v[3])
    alone = powerflows(feeder, [some])[0]
    assert same(v[4], np.array(alone.voltages.values)) and not same(v[4], v[0]) and not same(v[5], v[4])
    with pytest.raises(FeederError, match="Load.nobody is not in"):
        powerflows(feeder, [forward, {"nobody": (1.0, 0.0)}])
