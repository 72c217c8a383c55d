"""OpenDSS at arm's length: the one reader that turns a feeder file into a `Feeder`, and the
independent power flow that verifies envelopes. Nothing else in nfca imports opendssdirect.

OpenDSS keeps global state (active circuit, working directory), so every call here compiles
the feeder afresh and restores the working directory.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfca.errors import FeederError, SolverError
from nfca.network import (
    EARTH, PHASES, Bus, EndUser, Feeder, Line, LinearElement, Source, check_earthing, check_topology,
)

# OpenDSS length units -> metres (Lines.Units codes). 0 ("none") is taken as metres.
_UNIT_M = {0: 1.0, 1: 1609.344, 2: 304.8, 3: 1000.0, 4: 1.0, 5: 0.3048, 6: 0.0254, 7: 0.01, 8: 0.001}
# Elements that carry no physics for the envelopes and are ignored.
_IGNORED = {"energymeter", "monitor", "sensor", "fault"}
_SUPPORTED = {"vsource", "line", "transformer", "load", "capacitor", "reactor"}
DEFAULT_CAPACITY_KVA = 9.2  # single-phase 40 A at 230 V, the ALEXANDER D3.3 study's value


def _dss():
    import opendssdirect as dss  # imported here so worker processes each get their own engine

    return dss


def compile_feeder(path: Path | str):
    """Compile a feeder file into a fresh OpenDSS circuit and return the opendssdirect module.

    OpenDSS's defaults are restored first (its base frequency survives `Clear`), the working
    directory is kept, and a file OpenDSS cannot read raises FeederError.
    """
    dss = _dss()
    path = Path(path)
    if not path.is_file():
        raise FeederError(f"{path}: no such feeder file")
    cwd = os.getcwd()
    try:
        dss.Text.Command("Clear")
        dss.Text.Command("Set DefaultBaseFrequency=60")  # OpenDSS's default; it survives Clear
        try:
            dss.Text.Command(f'Redirect "{path.resolve()}"')
        except Exception as exc:  # opendssdirect raises DSSException with OpenDSS's message
            raise FeederError(f"{path}: OpenDSS cannot read the feeder: {_clean(exc)}") from None
    finally:
        os.chdir(cwd)
    if dss.Circuit.Name() == "" or dss.Circuit.NumBuses() == 0:
        raise FeederError(f"{path}: the file defines no circuit (no 'New Circuit' line)")
    return dss


@contextlib.contextmanager
def _compiled(path: Path):
    """`compile_feeder` for a block; the working directory is restored after it too."""
    cwd = os.getcwd()
    try:
        yield compile_feeder(path)
    finally:
        os.chdir(cwd)


def _clean(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _cmatrix(flat: list[float]) -> np.ndarray:
    a = np.asarray(flat, dtype=float)
    n = int(round(math.sqrt(a.size // 2)))
    return (a[0::2] + 1j * a[1::2]).reshape(n, n)


def _split_bus(spec: str) -> str:
    return spec.split(".")[0].lower()


def read_feeder(path: Path | str, default_capacity_kva: float = DEFAULT_CAPACITY_KVA) -> Feeder:
    """Read any radial OpenDSS feeder into a `Feeder`; raise FeederError naming what is wrong."""
    path = Path(path)
    with _compiled(path) as dss:
        if all(b == 0 for b in _bus_bases(dss)):
            dss.Text.Command("CalcVoltageBases")
        names = [n for n in dss.Circuit.AllElementNames()]
        _check_supported(dss, names)
        buses = _read_buses(dss)
        source = _read_source(dss, names)
        earthing = {n for n in names if n.lower().startswith("line.") and _is_earthing_line(dss, n)}
        lines = tuple(_read_line(dss, n) for n in names if n.lower().startswith("line.") and n not in earthing)
        elements = tuple(
            _read_element(dss, n)
            for n in names
            if n.split(".")[0].lower() in ("transformer", "capacitor", "reactor") or n in earthing
        )
        end_users = tuple(
            _read_load(dss, n, default_capacity_kva) for n in names if n.lower().startswith("load.")
        )
        circuit = dss.Circuit.Name()
    feeder = Feeder(circuit, str(path), buses, lines, elements, source, end_users)
    _check_feeder(feeder)
    return feeder


def _bus_bases(dss) -> list[float]:
    out = []
    for b in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(b)
        out.append(dss.Bus.kVBase())
    return out


def _check_supported(dss, names: list[str]) -> None:
    for full in names:
        cls = full.split(".")[0].lower()
        if cls in _IGNORED or cls in _SUPPORTED:
            continue
        if cls in ("regcontrol",):
            raise FeederError(f"{full}: voltage regulators are not supported")
        raise FeederError(f"{full}: elements of class {full.split('.')[0]} are not supported")
    # Controls are not circuit elements in OpenDSS's list; look for them explicitly.
    for reg in dss.RegControls.AllNames() or []:
        if reg and reg.lower() != "none":
            raise FeederError(f"RegControl.{reg}: voltage regulators are not supported")
    sources = [n for n in names if n.lower().startswith("vsource.")]
    if len(sources) != 1:
        raise FeederError(f"the feeder must have exactly one Vsource, found {len(sources)}")


def _read_buses(dss) -> dict[str, Bus]:
    buses = {}
    for name in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(name)
        kv = dss.Bus.kVBase()
        if kv <= 0:
            raise FeederError(f"bus {name} has no voltage base: add 'Set VoltageBases=[...]' and 'CalcVoltageBases'")
        has_xy = dss.Bus.Coorddefined()
        buses[name] = Bus(
            name=name,
            nodes=tuple(sorted(int(n) for n in dss.Bus.Nodes())),
            kv_base_ln=kv,
            x=dss.Bus.X() if has_xy else None,
            y=dss.Bus.Y() if has_xy else None,
        )
    return buses


def _read_source(dss, names: list[str]) -> Source:
    full = next(n for n in names if n.lower().startswith("vsource."))
    dss.Circuit.SetActiveElement(full)
    bus_names = dss.CktElement.BusNames()
    order = list(dss.CktElement.NodeOrder())
    n = dss.CktElement.NumConductors()
    if any(node != EARTH for node in order[n:]):
        raise FeederError(f"{full}: a source whose second bus is not earth is not supported")
    y = _cmatrix(dss.CktElement.YPrim())[:n, :n]
    dss.Vsources.Name(full.split(".", 1)[1])
    kv, pu, ang = dss.Vsources.BasekV(), dss.Vsources.PU(), dss.Vsources.AngleDeg()
    nodes = tuple(order[:n])
    if sorted(nodes) != [1, 2, 3]:
        raise FeederError(f"{full}: only three-phase sources on nodes 1.2.3 are supported")
    e = np.array([pu * kv * 1e3 / math.sqrt(3) * np.exp(1j * math.radians(ang - 120 * (k - 1))) for k in nodes])
    return Source(full, _split_bus(bus_names[0]), nodes, e, y, kv, pu)


def _read_line(dss, full: str) -> Line:
    dss.Circuit.SetActiveElement(full)
    name = full.split(".", 1)[1]
    bus_names = dss.CktElement.BusNames()
    order = list(dss.CktElement.NodeOrder())
    n = dss.CktElement.NumConductors()
    y = _cmatrix(dss.CktElement.YPrim())
    dss.Lines.Name(name)
    length_m = dss.Lines.Length() * _UNIT_M.get(dss.Lines.Units(), 1.0)
    if dss.Lines.Length() <= 0:
        raise FeederError(f"{full}: length must be positive, got {dss.Lines.Length()}")
    if not np.all(np.isfinite(y)):
        raise FeederError(f"{full}: zero impedance (check its line code, R and X)")
    y12 = y[:n, n:]
    try:
        z = -np.linalg.inv(y12)
    except np.linalg.LinAlgError:
        raise FeederError(f"{full}: zero or singular impedance matrix") from None
    if np.any(np.diag(z).real <= 0):
        raise FeederError(f"{full}: resistance must be positive (check its line code)")
    amps = dss.Lines.NormAmps()
    if amps <= 0:
        raise FeederError(f"{full}: no ampacity (set normamps on the line or its line code)")
    return Line(
        name=name,
        bus_from=_split_bus(bus_names[0]),
        bus_to=_split_bus(bus_names[1]),
        nodes_from=tuple(order[:n]),
        nodes_to=tuple(order[n:]),
        z_ohm=z,
        y_shunt_s=2 * (y[:n, :n] + y12),
        length_m=length_m,
        ampacity_a=amps,
        is_switch=bool(dss.Lines.IsSwitch()),
    )


def _is_earthing_line(dss, full: str) -> bool:
    """A line with every conductor of one end on node 0: an earth electrode or earthing resistance.

    It is not a branch of the feeder's tree; it is read like a reactor, by its primitive admittance.
    """
    dss.Circuit.SetActiveElement(full)
    order = list(dss.CktElement.NodeOrder())
    n = dss.CktElement.NumConductors()
    return all(x == EARTH for x in order[n:]) or all(x == EARTH for x in order[:n])


def _read_element(dss, full: str) -> LinearElement:
    dss.Circuit.SetActiveElement(full)
    bus_names = [_split_bus(b) for b in dss.CktElement.BusNames()]
    order = list(dss.CktElement.NodeOrder())
    nc = dss.CktElement.NumConductors()
    terminals = tuple((bus_names[i // nc], order[i]) for i in range(len(order)))
    y = _cmatrix(dss.CktElement.YPrim())
    kind = full.split(".")[0].lower()
    rating, rated, desc = 0.0, (), {}
    if kind == "transformer":
        dss.Transformers.Name(full.split(".", 1)[1])
        nw = dss.Transformers.NumWindings()
        kvs, kvas, conns, rs = [], [], [], []
        for w in range(1, nw + 1):
            dss.Transformers.Wdg(w)
            kvs.append(dss.Transformers.kV())
            kvas.append(dss.Transformers.kVA())
            conns.append("delta" if dss.Transformers.IsDelta() else "wye")
            rs.append(dss.Transformers.R())
        nph = dss.CktElement.NumPhases()
        # Rated current of the last (LV) winding's phase conductors.
        rating = kvas[-1] / (math.sqrt(3) * kvs[-1]) if nph == 3 else kvas[-1] / kvs[-1]
        last = (nw - 1) * nc
        rated = tuple(i for i in range(last, last + nc) if order[i] in PHASES)
        letters = {"delta": "d", "wye": "y"}
        group = letters[conns[0]].upper() + "".join(letters[c] for c in conns[1:])
        if conns[-1] == "wye" and order[last + nc - 1] == EARTH:
            group += "n"
        desc = {"kv": kvs, "kva": kvas, "conns": conns, "vector_group": group,
                "xhl_pct": dss.Transformers.Xhl(), "r_pct": rs}
    return LinearElement(full, kind, terminals, y, rating, rated, desc)


def _read_load(dss, full: str, default_capacity_kva: float) -> EndUser:
    dss.Circuit.SetActiveElement(full)
    name = full.split(".", 1)[1]
    bus = _split_bus(dss.CktElement.BusNames()[0])
    order = list(dss.CktElement.NodeOrder())
    dss.Loads.Name(name)
    nph, delta = dss.Loads.Phases(), dss.Loads.IsDelta()
    if delta:
        if nph == 1:
            legs = ((order[0], order[1]),)
        elif nph == 3:
            legs = ((order[0], order[1]), (order[1], order[2]), (order[2], order[0]))
        else:
            raise FeederError(f"{full}: a {nph}-phase delta load is not supported")
    else:
        neutral = order[-1]
        legs = tuple((order[i], neutral) for i in range(nph))
    for plus, minus in legs:
        if plus == minus:
            raise FeederError(f"{full}: connected between node {plus} and itself")
    cap = dss.Loads.XfkVA()
    if cap < 0:
        raise FeederError(f"{full}: negative connection capacity XfkVA={cap}")
    return EndUser(
        name=name,
        bus=bus,
        legs=legs,
        connection="delta" if delta else "wye",
        capacity_kva=cap if cap > 0 else default_capacity_kva,
        p_kw=dss.Loads.kW(),
        q_kvar=dss.Loads.kvar(),
    )


def _check_feeder(feeder: Feeder) -> None:
    if not feeder.end_users:
        raise FeederError(f"{feeder.path}: the feeder has no loads, so no end-users to compute envelopes for")
    fed = {(line.bus_from, n) for line in feeder.lines for n in line.nodes_from}
    fed |= {(line.bus_to, n) for line in feeder.lines for n in line.nodes_to}
    fed |= {t for el in feeder.elements if el.kind == "transformer" for t in el.terminals}
    fed |= {(feeder.source.bus, n) for n in feeder.source.nodes}
    for u in feeder.end_users:
        for node in {n for leg in u.legs for n in leg if n != EARTH}:
            if (u.bus, node) not in fed:
                raise FeederError(
                    f"Load.{u.name} is connected to node {node} of bus {u.bus}, which no line or transformer feeds"
                )
    check_topology(feeder)
    check_earthing(feeder)


# ----------------------------------------------------------------------------- power flow


@dataclass(frozen=True)
class PowerFlow:
    """An OpenDSS power flow: node voltages (V, complex) and element currents (A)."""

    converged: bool
    voltages: dict[tuple[str, int], complex]
    line_amps: dict[str, float]  # max conductor current per line
    element_amps: dict[str, float]  # max rated-terminal current per transformer
    iterations: int


def powerflow(path: Path | str, loads_kw_kvar: dict[str, tuple[float, float]] | None = None) -> PowerFlow:
    """Solve the feeder in OpenDSS with the named loads at the given (kW, kvar)."""
    return powerflows(path, [loads_kw_kvar or {}])[0]


def powerflows(
    path: Path | str, scenarios: list[dict[str, tuple[float, float]]], source_pu: float | None = None
) -> list[PowerFlow]:
    """Solve the feeder in OpenDSS once per scenario of load powers (constant P and Q).

    The feeder is compiled once. Loads not named keep the file's values. Loads are forced to
    the constant-power model over the whole voltage range (vminpu 0.5, vmaxpu 1.5) so OpenDSS
    solves the physics the envelopes promise; the convergence tolerance is 1e-10 pu.
    `source_pu` overrides the source voltage.
    """
    out = []
    with _compiled(Path(path)) as dss:
        known = {n.lower() for n in dss.Loads.AllNames()}
        for name in known:
            dss.Loads.Name(name)
            dss.Loads.Model(1)
            dss.Loads.Vminpu(0.5)
            dss.Loads.Vmaxpu(1.5)
        if source_pu is not None:
            dss.Vsources.First()
            dss.Vsources.PU(source_pu)
        dss.Text.Command("Set Tolerance=1e-10")
        dss.Text.Command("Set MaxIterations=200")
        dss.Text.Command("Set Mode=Snap")
        for loads in scenarios:
            for name, (p, q) in loads.items():
                if name.lower() not in known:
                    raise FeederError(f"Load.{name} is not in {path}")
                dss.Loads.Name(name)
                dss.Loads.kW(p)
                dss.Loads.kvar(q)
            out.append(_solve_snapshot(dss))
    return out


def _solve_snapshot(dss) -> PowerFlow:
    try:
        dss.Solution.Solve()
    except Exception as exc:
        raise SolverError(f"OpenDSS power flow failed: {_clean(exc)}") from None
    volts = np.asarray(dss.Circuit.AllBusVolts())
    voltages = {}
    for i, nn in enumerate(dss.Circuit.AllNodeNames()):
        bus, node = nn.rsplit(".", 1)
        voltages[(bus.lower(), int(node))] = complex(volts[2 * i], volts[2 * i + 1])
    line_amps = {}
    for name in dss.Lines.AllNames():
        dss.Circuit.SetActiveElement(f"Line.{name}")
        cur = np.asarray(dss.CktElement.CurrentsMagAng())[0::2]
        order = dss.CktElement.NodeOrder()
        line_amps[name] = float(max(c for c, n in zip(cur, order) if n != EARTH))
    element_amps = {}
    for name in dss.Transformers.AllNames():
        dss.Circuit.SetActiveElement(f"Transformer.{name}")
        cur = np.asarray(dss.CktElement.CurrentsMagAng())[0::2]
        nc, nt = dss.CktElement.NumConductors(), dss.CktElement.NumTerminals()
        order = dss.CktElement.NodeOrder()
        last = slice((nt - 1) * nc, nt * nc)
        element_amps[f"Transformer.{name}"] = float(max(c for c, n in zip(cur[last], order[last]) if n in PHASES))
    return PowerFlow(bool(dss.Solution.Converged()), voltages, line_amps, element_amps, dss.Solution.Iterations())
