"""Build the IEEE European LV test feeder as OpenDSS files from pandapower's copy of it.

pandapower ships the feeder as ``pandapower.networks.ieee_european_lv_asymmetric``: an 11 kV
source, one 800 kVA 11/0.416 kV Dyn1 transformer, 906 LV buses, 905 lines and 55 single-phase
loads.  :func:`build` writes it as a deterministic OpenDSS model (``Master.dss`` and the files it
redirects to) so that the OpenDSS-based tools of this project can use it, and
:func:`compare_with_pandapower` checks that OpenDSS and pandapower's ``runpp_3ph`` agree on it.

Regenerate the committed model with ``python -m feeders.build_ieee_eulv``.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd

from nfca import engine

SCENARIOS = ("on_peak_566", "off_peak_1", "off_peak_1440")
"""pandapower's load snapshots (minute 566, 1 and 1440 of the IEEE daily load profiles)."""
DEFAULT_SCENARIO = "on_peak_566"
"""The snapshot written into ``Loads.dss`` (pandapower's default)."""
END_USER_KVA = 9.2
"""Connection capacity of every end-user in kVA (ALEXANDER D3.3), written as the loads' XfkVA."""
LOAD_KV = 0.23
"""Rated line-to-neutral voltage of the single-phase loads in kV, as in the original IEEE files."""
BASE_FREQUENCY = 50
PHASES = "abc"  # pandapower's phase letters; OpenDSS nodes 1, 2, 3


def _g(x: float) -> str:
    """Format a number with 7 significant digits.

    pandapower stores this feeder as float32 data, so 7 digits keep all of its information and
    drop the float32-to-float64 noise (0.416000008583069 is written as 0.416).
    """
    return f"{float(x):.7g}"


@functools.cache
def _net(scenario: str) -> pp.pandapowerNet:
    """pandapower's feeder for one scenario (cached: treat as read-only, copy before solving)."""
    return pn.ieee_european_lv_asymmetric(scenario)


def _bus_names(net: pp.pandapowerNet) -> dict[int, str]:
    """pandapower bus index -> OpenDSS bus name (pandapower's name, lower case like OpenDSS's)."""
    return {int(i): str(name).lower() for i, name in net.bus["name"].items()}


@functools.cache
def load_phases() -> dict[str, int]:
    """OpenDSS load name -> phase (1, 2, 3 for pandapower's a, b, c).

    A load's phase is the one phase whose p or q is non-zero in any of pandapower's scenarios, so
    a load that happens to be zero in one snapshot still gets its phase.
    """
    used = sum(
        (_net(s).asymmetric_load[[f"{k}_{ph}_{u}" for ph in PHASES]].to_numpy() != 0)
        for s in SCENARIOS
        for k, u in (("p", "mw"), ("q", "mvar"))
    )
    names = _net(DEFAULT_SCENARIO).asymmetric_load["name"]
    phases = {}
    for name, row in zip(names, used):
        (on,) = np.flatnonzero(row)  # exactly one phase, or the feeder is not what we think it is
        phases[str(name)] = int(on) + 1
    return phases


def snapshot_loads(scenario: str) -> dict[str, tuple[float, float]]:
    """OpenDSS load name -> (kW, kvar) of pandapower's scenario ``scenario`` (see SCENARIOS)."""
    loads = _net(scenario).asymmetric_load
    assert (loads["type"] == "wye").all() and loads["in_service"].all()
    out = {}
    for _, row in loads.iterrows():
        ph = PHASES[load_phases()[row["name"]] - 1]
        out[str(row["name"])] = (1e3 * row["scaling"] * row[f"p_{ph}_mw"], 1e3 * row["scaling"] * row[f"q_{ph}_mvar"])
    return out


def _source_impedances(net: pp.pandapowerNet) -> tuple[complex, complex]:
    """Positive- and zero-sequence source impedance (ohm) that the ext_grid's short-circuit data
    describes: |Z1| = kV^2 / s_sc_max_mva, R1/X1 = rx_max, X0/X1 = x0x_max, R0/X0 = r0x0_max."""
    eg = net.ext_grid.iloc[0]
    kv = net.bus.at[eg["bus"], "vn_kv"]
    x1 = kv**2 / eg["s_sc_max_mva"] / math.hypot(1.0, eg["rx_max"])
    x0 = eg["x0x_max"] * x1
    return complex(eg["rx_max"] * x1, x1), complex(eg["r0x0_max"] * x0, x0)


def _leakage_lv_ohm(vk_percent: float, vkr_percent: float, tr: pd.Series) -> complex:
    """Transformer short-circuit impedance from vk/vkr (%), referred to the LV side in ohm."""
    zbase = tr["vn_lv_kv"] ** 2 / tr["sn_mva"]
    return complex(vkr_percent, math.sqrt(vk_percent**2 - vkr_percent**2)) / 100 * zbase


def _master(net: pp.pandapowerNet) -> str:
    """Master.dss: circuit (source), transformer, redirects, voltage bases, bus coordinates."""
    eg = net.ext_grid.iloc[0]
    tr = net.trafo.iloc[0]
    names = _bus_names(net)
    assert len(net.ext_grid) == 1 and len(net.trafo) == 1 and eg["bus"] == tr["hv_bus"]
    kv = net.bus.at[eg["bus"], "vn_kv"]
    z1, z0 = _source_impedances(net)
    mvasc1 = 3 * kv**2 / abs(2 * z1 + z0)
    lead_lag = {30.0: "lag", 330.0: "lead", -30.0: "lead"}[float(tr["shift_degree"])]
    assert tr["vector_group"] == "Dyn" and tr["tap_side"] == "hv" and tr["parallel"] == 1
    tap = 1 + (tr["tap_pos"] - tr["tap_neutral"]) * tr["tap_step_percent"] / 100
    kva = 1e3 * tr["sn_mva"]
    noload = 100 * tr["pfe_kw"] / kva
    imag = math.sqrt(max(tr["i0_percent"] ** 2 - noload**2, 0.0))
    xhl = math.sqrt(tr["vk_percent"] ** 2 - tr["vkr_percent"] ** 2)
    r_winding = tr["vkr_percent"] / 2
    vbases = " ".join(_g(v) for v in sorted(set(net.bus["vn_kv"]), reverse=True))
    return f"""\
! IEEE European LV test feeder, written by feeders/build_ieee_eulv.py from
! pandapower.networks.ieee_european_lv_asymmetric(); do not edit by hand.
Clear
! DSS C-API keeps DefaultBaseFrequency across Clear: 60 Hz models loaded later must set theirs.
Set DefaultBaseFrequency={BASE_FREQUENCY}

! Source from pandapower's ext_grid "{eg["name"]}" (vm_pu={_g(eg["vm_pu"])}, s_sc_max_mva={_g(eg["s_sc_max_mva"])}, \
rx_max={_g(eg["rx_max"])}, x0x_max={_g(eg["x0x_max"])}, r0x0_max={_g(eg["r0x0_max"])}):
!   MVAsc3 = s_sc_max_mva, i.e. |Z1| = kV^2/MVAsc3;  X1R1 = 1/rx_max;  X0R0 = 1/r0x0_max;
!   X0 = x0x_max*X1, and MVAsc1 = 3*kV^2/|2*Z1 + Z0| (OpenDSS's single-phase fault level).
! pandapower's runpp_3ph differs: it holds the positive sequence at vm_pu at this bus (no Z1)
! and uses c=1.1 times these impedances in the negative and zero sequences (see README.md).
New Circuit.ieee_eulv basekv={_g(kv)} pu={_g(eg["vm_pu"])} angle={_g(eg["va_degree"])} phases=3 \
bus1={names[eg["bus"]]} MVAsc3={_g(eg["s_sc_max_mva"])} MVAsc1={_g(mvasc1)} \
X1R1={_g(z1.imag / z1.real)} X0R0={_g(z0.imag / z0.real)} basefreq={BASE_FREQUENCY}

! Transformer "{tr["name"]}" ({tr["std_type"]}): XHL = sqrt(vk^2 - vkr^2) with
! vk_percent={_g(tr["vk_percent"])}, the load loss vkr_percent={_g(tr["vkr_percent"])} split equally over the windings,
! pfe_kw={_g(tr["pfe_kw"])} and i0_percent={_g(tr["i0_percent"])} (no magnetising branch), tap_pos={_g(tr["tap_pos"])}.
! Dyn, shift_degree={_g(tr["shift_degree"])}: LV lags HV by 30 degrees (Dyn1, OpenDSS LeadLag=lag);
! the LV star point is solidly grounded (node 0).
New Transformer.{tr["name"]} phases=3 windings=2 buses=[{names[tr["hv_bus"]]}.1.2.3 {names[tr["lv_bus"]]}.1.2.3.0] \
conns=[delta wye] kVs=[{_g(tr["vn_hv_kv"])} {_g(tr["vn_lv_kv"])}] kVAs=[{_g(kva)} {_g(kva)}] \
XHL={_g(xhl)} %Rs=[{_g(r_winding)} {_g(r_winding)}] %noloadloss={_g(noload)} %imag={_g(imag)} \
taps=[{_g(tap)} 1] LeadLag={lead_lag} basefreq={BASE_FREQUENCY}

Redirect LineCodes.dss
Redirect Lines.dss
Redirect Loads.dss

Set VoltageBases=[{vbases}]
CalcVoltageBases
Buscoords BusCoords.csv
"""


def _linecodes(net: pp.pandapowerNet) -> str:
    """LineCodes.dss: one sequence-impedance line code per pandapower std_type."""
    cols = [
        "r_ohm_per_km",
        "x_ohm_per_km",
        "r0_ohm_per_km",
        "x0_ohm_per_km",
        "c_nf_per_km",
        "c0_nf_per_km",
        "g_us_per_km",
        "max_i_ka",
    ]
    codes = net.line.groupby("std_type")[cols]
    assert (codes.nunique() == 1).all().all(), "a std_type with differing parameters"
    assert (net.line[["c_nf_per_km", "c0_nf_per_km", "g_us_per_km"]] == 0).all().all()
    lines = ["! Line codes: one per pandapower line std_type (sequence impedances in ohm/km, c = 0)."]
    for name, c in codes.first().iterrows():
        lines.append(
            f"New LineCode.{name} nphases=3 R1={_g(c['r_ohm_per_km'])} X1={_g(c['x_ohm_per_km'])} "
            f"R0={_g(c['r0_ohm_per_km'])} X0={_g(c['x0_ohm_per_km'])} C1=0 C0=0 units=km "
            f"normamps={_g(1e3 * c['max_i_ka'])} basefreq={BASE_FREQUENCY}"
        )
    return "\n".join(lines) + "\n"


def _lines(net: pp.pandapowerNet) -> str:
    """Lines.dss: one line per pandapower line; lengths in m with 1e-6 m resolution."""
    names = _bus_names(net)
    assert net.line["in_service"].all() and (net.line["parallel"] == 1).all()
    lines = ["! Lines: pandapower's length_km written in metres (1e-6 m resolution)."]
    for _, ln in net.line.iterrows():
        lines.append(
            f"New Line.{ln['name']} phases=3 bus1={names[ln['from_bus']]} bus2={names[ln['to_bus']]} "
            f"linecode={ln['std_type']} length={1e3 * ln['length_km']:.6f} units=m"
        )
    return "\n".join(lines) + "\n"


def _loads(net: pp.pandapowerNet) -> str:
    """Loads.dss: single-phase constant-power wye loads with the default snapshot's kW/kvar."""
    names = _bus_names(net)
    phases = load_phases()
    power = snapshot_loads(DEFAULT_SCENARIO)
    lines = [
        f"! Single-phase constant-PQ loads, kW/kvar of pandapower's {DEFAULT_SCENARIO} snapshot.",
        "! XfkVA = the end-user's connection capacity (kVA). It must precede kW/kvar: setting XfkVA",
        "! switches an OpenDSS load to kVA allocation (kW = AllocationFactor*XfkVA*PF) until kW/kvar",
        "! are set again.",
    ]
    for _, ld in net.asymmetric_load.iterrows():
        kw, kvar = power[ld["name"]]
        lines.append(
            f"New Load.{ld['name']} phases=1 bus1={names[ld['bus']]}.{phases[ld['name']]} "
            f"kV={_g(LOAD_KV)} model=1 vminpu=0.5 vmaxpu=1.5 XfkVA={_g(END_USER_KVA)} "
            f"kW={_g(kw)} kvar={_g(kvar)}"
        )
    return "\n".join(lines) + "\n"


def _buscoords(net: pp.pandapowerNet) -> str:
    """BusCoords.csv: ``bus,x,y`` per bus from the GeoJSON points, no header (see build)."""
    names = _bus_names(net)
    rows = []
    for i, geo in net.bus["geo"].items():
        x, y = _point(geo)
        rows.append(f"{names[i]},{x:.3f},{y:.3f}")
    return "\n".join(rows) + "\n"


def _point(geo: str) -> tuple[float, float]:
    """(x, y) of a GeoJSON point."""
    point = json.loads(geo)
    assert point["type"] == "Point"
    x, y = point["coordinates"]
    return float(x), float(y)


def build(out_dir: Path) -> Path:
    """Write the OpenDSS model of the feeder into ``out_dir``; return the path of Master.dss."""
    from nfca.io.atomic import write_text
    from nfca.io.outputs import prepare_dir

    net = _net(DEFAULT_SCENARIO)
    out_dir = prepare_dir(out_dir)
    files = {
        "Master.dss": _master(net),
        "LineCodes.dss": _linecodes(net),
        "Lines.dss": _lines(net),
        "Loads.dss": _loads(net),
        "BusCoords.csv": _buscoords(net),
        # The coordinates are metres on a grid with no published geographic reference: nfca's
        # GeoPackage and maps take them as a local engineering CRS in metres.
        "crs.txt": "local\n",
    }
    for name, text in files.items():
        write_text(out_dir / name, text)  # each file whole, never half-written
    return out_dir / "Master.dss"


def model_impedances(net: pp.pandapowerNet) -> dict[str, dict[str, complex]]:
    """Sequence impedances (ohm) of source and transformer as each tool models them.

    Source impedances are at the source bus (11 kV), transformer ones referred to the LV side.
    OpenDSS: a Thevenin source with Z1 = Z2 from MVAsc3 and Z0 from MVAsc1 (see Master.dss),
    and a Dyn bank of single-phase units without magnetising branch, so Z0 = Z1 = leakage.
    pandapower's runpp_3ph (pandapower/build_bus.py, pd2ppc_zero.py): the ext_grid fixes the
    positive-sequence voltage at its bus (Z1 = 0) and adds c = 1.1 times the short-circuit
    impedances in the negative and zero sequences; the Dyn zero sequence is a T model whose
    leakage is split si0_hv_partial : 1 - si0_hv_partial around a magnetising impedance of
    mag0_percent/100 * |Zk0| (R/X = mag0_rx): Z0 = (1-si0)*Zk0 + (si0*Zk0 || Zm0).
    """
    tr = net.trafo.iloc[0]
    z1, z0 = _source_impedances(net)
    zk = _leakage_lv_ohm(tr["vk_percent"], tr["vkr_percent"], tr)
    zk0 = _leakage_lv_ohm(float(tr["vk0_percent"]), float(tr["vkr0_percent"]), tr)
    zm0 = float(tr["mag0_percent"]) / 100 * abs(zk0) * complex(float(tr["mag0_rx"]), 1)
    zm0 /= math.hypot(1, float(tr["mag0_rx"]))
    si0 = float(tr["si0_hv_partial"])
    c = 1.1
    return {
        "opendss": {"source_z1": z1, "source_z2": z1, "source_z0": z0, "trafo_z1": zk, "trafo_z0": zk},
        "pandapower": {
            "source_z1": 0j,
            "source_z2": c * z1,
            "source_z0": c * z0,
            "trafo_z1": zk,
            "trafo_z0": (1 - si0) * zk0 + 1 / (1 / (si0 * zk0) + 1 / zm0),
        },
    }


ALIGNABLE = ("source", "trafo_z0")
"""Model differences that ``compare_with_pandapower(align=...)`` can remove, see its docstring."""


def _solve_opendss(
    master: Path, loads: dict[str, tuple[float, float]], align: tuple[str, ...]
) -> tuple[dict[tuple[str, int], complex], np.ndarray]:
    """Solve the OpenDSS model with ``loads`` (through nfca's engine).

    Returns (bus, node) -> voltage (V), and the magnitudes (A) of the zero-, positive- and
    negative-sequence currents in the transformer's LV terminal.
    """
    with tempfile.TemporaryDirectory() as tmp:
        model = master
        if "source" in align:  # the same model with an ideal source
            model = Path(tmp) / "Master.dss"
            model.write_text(f'Redirect "{master.resolve()}"\nEdit Vsource.source MVAsc3=1e12 MVAsc1=1e12\n')
        feeder, _ = engine.read(model)
        pf = engine.powerflows(feeder, [loads])[0]
    assert pf.converged, "OpenDSS did not converge"
    (i_abc,) = pf.transformer_currents_a.values()
    a = np.exp(2j * np.pi / 3)
    i012_lv = np.abs(np.array([[1, 1, 1], [1, a, a * a], [1, a * a, a]]) @ i_abc / 3)
    return dict(pf.voltages), i012_lv


def _solve_pandapower(scenario: str, align: tuple[str, ...]) -> pp.pandapowerNet:
    """Run pandapower's runpp_3ph on a copy of the scenario's network.

    runpp_3ph stops at a hard-coded power mismatch of 3e-8 pu, i.e. 3 W per bus and phase on
    this network's sn_mva = 100 MVA base, which leaves voltage errors of up to 6e-6 pu; a 10 kVA
    base (the same physics) makes that 0.3 mW, so that the comparison measures the models rather
    than pandapower's stopping criterion.
    """
    net = copy.deepcopy(_net(scenario))
    net.sn_mva = 0.01
    if "source" in align:
        net.ext_grid["s_sc_max_mva"] = 1e12
    if "trafo_z0" in align:
        net.trafo["mag0_percent"] = 1e12
    pp.runpp_3ph(net, numba=False)
    return net


def compare_with_pandapower(master: Path, scenario: str, *, align: tuple[str, ...] = ()) -> dict:
    """Solve ``master`` in OpenDSS and pandapower's runpp_3ph with the loads of ``scenario`` and
    compare the LV phase-to-ground voltages.

    Returns max/mean absolute differences over all LV bus phases of the voltage magnitudes
    (``vm_*``, pu of vn_kv/sqrt(3)) and angles (``va_*``, degrees), the lowest magnitude in each
    tool, both tools' ``model_impedances`` and ``vm_predicted_diff_pu``: the difference that the
    source and transformer model differences alone explain, to first order
    |Z1s|*I1 + |dZ2s|*I2 + |dZ0t|*I0 in pu, with the source impedances referred to the LV side
    and I0, I1, I2 the sequence currents in the transformer's LV terminal (from OpenDSS).  The
    Dyn transformer blocks the zero sequence, so the source's Z0 has no effect on the LV side.

    ``align`` removes model differences before solving: "source" makes both sources ideal,
    "trafo_z0" gives pandapower's transformer OpenDSS's zero sequence (the leakage impedance,
    mag0_percent -> infinity).  With both, only numerical differences should remain.
    """
    assert set(align) <= set(ALIGNABLE), align
    net = _solve_pandapower(scenario, align)
    volts, i012 = _solve_opendss(master, snapshot_loads(scenario), align)
    res, names = net.res_bus_3ph, _bus_names(net)
    lv = net.bus.index[net.bus["vn_kv"] < 1]
    vm_pp, va_pp, vm_dss, va_dss = [], [], [], []
    for i in lv:
        vbase = 1e3 * net.bus.at[i, "vn_kv"] / math.sqrt(3)
        for k, ph in enumerate(PHASES, start=1):
            v = volts[(names[i], k)]
            vm_dss.append(abs(v) / vbase)
            va_dss.append(math.degrees(np.angle(v)))
            vm_pp.append(res.at[i, f"vm_{ph}_pu"])
            va_pp.append(res.at[i, f"va_{ph}_degree"])
    dvm = np.abs(np.subtract(vm_dss, vm_pp))
    dva = np.abs((np.subtract(va_dss, va_pp) + 180) % 360 - 180)

    models = model_impedances(net)
    tr = net.trafo.iloc[0]
    to_lv = (tr["vn_lv_kv"] / tr["vn_hv_kv"]) ** 2
    dz = {k: abs(models["opendss"][k] - models["pandapower"][k]) for k in ("source_z1", "source_z2", "trafo_z0")}
    dv = dz["source_z1"] * to_lv * i012[1] + dz["source_z2"] * to_lv * i012[2] + dz["trafo_z0"] * i012[0]
    return {
        "scenario": scenario,
        "align": tuple(align),
        "n_lv_phases": len(dvm),
        "vm_max_abs_diff_pu": float(dvm.max()),
        "vm_mean_abs_diff_pu": float(dvm.mean()),
        "va_max_abs_diff_deg": float(dva.max()),
        "va_mean_abs_diff_deg": float(dva.mean()),
        "vm_min_pu_opendss": float(min(vm_dss)),
        "vm_min_pu_pandapower": float(min(vm_pp)),
        "trafo_lv_i012_a": tuple(float(i) for i in i012),
        "vm_predicted_diff_pu": float(dv / (1e3 * tr["vn_lv_kv"] / math.sqrt(3))),
        "models": models,
    }


if __name__ == "__main__":
    build(Path(__file__).parent / "ieee_eulv")
