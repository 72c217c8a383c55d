"""OpenDSS at arm's length: the one reader that turns a feeder file into a `Feeder`, and the
independent power flow that verifies envelopes. Nothing else in nfca imports opendssdirect.

OpenDSS keeps global state (active circuit, working directory), so every call here compiles
the feeder afresh and restores the working directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfca.errors import FeederError, InputError, SolverError
from nfca.model.network import (
    EARTH, PHASES, Bus, EndUser, Feeder, Line, LinearElement, Source, check_earthing, check_topology,
)

# OpenDSS length units -> metres (Lines.Units codes). 0 ("none") is taken as metres.
_UNIT_M = {0: 1.0, 1: 1609.344, 2: 304.8, 3: 1000.0, 4: 1.0, 5: 0.3048, 6: 0.0254, 7: 0.01, 8: 0.001}
# Elements that carry no physics for the envelopes and are ignored.
_IGNORED = {"energymeter", "monitor", "sensor", "fault"}
_SUPPORTED = {"vsource", "line", "transformer", "load", "capacitor", "reactor"}
DEFAULT_CAPACITY_KVA = 9.2  # single-phase 40 A at 230 V, the ALEXANDER D3.3 study's value
# OpenDSS's VoltageBases when a file sets none: bases picked from it would be silently wrong.
_OPENDSS_DEFAULT_BASES = [0.208, 0.48, 12.47, 24.9, 34.5, 115.0, 230.0]


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
    if path.is_dir():
        raise FeederError(f"{path}: is a folder, not a feeder file (give the path of its Master.dss)")
    if not path.is_file():
        raise FeederError(f"{path}: no such feeder file")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise FeederError(f"{path}: the feeder file cannot be read ({exc.strerror or exc})") from None
    cwd = os.getcwd()
    try:
        dss.Text.Command("Clear")
        dss.Text.Command("Set DefaultBaseFrequency=60")  # OpenDSS's default; it survives Clear
        try:
            dss.Text.Command(f'Redirect "{path.resolve()}"')
        except UnicodeDecodeError:  # OpenDSS's message quotes a name that is not UTF-8
            raise FeederError(_not_utf8(path)) from None
        except Exception as exc:  # opendssdirect raises DSSException with OpenDSS's message
            raise FeederError(_opendss_error(dss, path, exc)) from None
    finally:
        os.chdir(cwd)
    try:
        circuit = dss.Circuit.Name()
    except Exception:  # an empty file: "There is no active circuit"
        circuit = ""
    if circuit == "":
        raise FeederError(f"{path}: the file defines no circuit (no 'New Circuit' line)")
    if dss.Circuit.NumBuses() == 0:  # neither CalcVoltageBases nor Solve in the file: list the buses
        dss.Text.Command("MakeBusList")
    try:
        dss.Circuit.AllElementNames(), dss.Circuit.AllBusNames()
    except UnicodeDecodeError:
        raise FeederError(_not_utf8(path)) from None
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


_DSS_WHERE = re.compile(r'\[file: "(?P<file>[^"]*)", line: (?P<line>\d+)\]')


def _opendss_error(dss, path: Path, exc: Exception) -> str:
    """OpenDSS's message on one line: where (file and line), what, and OpenDSS's error number."""
    text = _clean(exc)
    where = str(path)
    locs = list(_DSS_WHERE.finditer(text))  # innermost first: the redirected file, then its callers
    if locs:
        text, where = text[: locs[0].start()].strip(), f"{locs[0]['file']} line {locs[0]['line']}"
        if len(locs) > 1:
            where += f" (redirected from {Path(locs[-1]['file']).name} line {locs[-1]['line']})"
    code = re.match(r"\(#(\d+)\)\s*", text)
    number = f" (OpenDSS error {code.group(1)})" if code else ""
    text = text[code.end():] if code else text
    singular = re.search(r'Matrix Inversion Error for Line "([^"]+)"', text)
    if singular:  # raised while building Y, at whatever line asked for it: name the line instead
        return _singular_line(dss, singular.group(1)) + number
    if "Error Description:" in text:  # "Exception Raised While Processing DSS Command: ... Error Description: ..."
        what = text.split("Error Description:", 1)[1].split("Probable Cause:")[0].strip()
        command = text.split("Processing DSS Command:", 1)[1].split("Error Description:")[0].strip() \
            if "Processing DSS Command:" in text else ""
        text = f"{what} in '{command}'" if command else what
    return f"{where}: {text}{number}"


def _singular_line(dss, name: str) -> str:
    try:
        dss.Lines.Name(name)
        length = dss.Lines.Length()
    except Exception:
        length = None
    if length is not None and length <= 0:
        return f"Line.{name}: length must be positive, got {length:g}"
    return f"Line.{name}: zero impedance (its R and X, or its line code's, are all zero)"


def _not_utf8(path: Path) -> str:
    """Name the first line of the feeder's files that is not UTF-8 (OpenDSS names come back as UTF-8)."""
    files = [path, *sorted(f for f in path.parent.glob("*") if f.suffix.lower() == ".dss" and f != path)]
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            continue
        for k, raw in enumerate(data.splitlines(), 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                shown = raw.decode("utf-8", "replace").strip()[:80]
                return f"{f} line {k} is not UTF-8 text ('{shown}'): save the feeder's files as UTF-8"
    return f"{path}: the feeder's names are not UTF-8 text: save its files as UTF-8"


def _cmatrix(flat: list[float]) -> np.ndarray:
    a = np.asarray(flat, dtype=float)
    n = int(round(math.sqrt(a.size // 2)))
    return (a[0::2] + 1j * a[1::2]).reshape(n, n)


def _split_bus(spec: str) -> str:
    return spec.split(".")[0].lower()


def read_feeder(path: Path | str, default_capacity_kva: float = DEFAULT_CAPACITY_KVA) -> Feeder:
    """Read any radial OpenDSS feeder into a `Feeder`; raise FeederError naming what is wrong.

    Loads without XfkVA get `default_capacity_kva`; 0 makes XfkVA compulsory (a load without it
    is an error).
    """
    path = Path(path)
    if not default_capacity_kva >= 0:
        raise InputError(f"--default-capacity must be 0 (XfkVA compulsory) or a positive kVA, got {default_capacity_kva}")
    with _compiled(path) as dss:
        bases = _bus_bases(dss)
        # Bases from OpenDSS's own list (the file sets none) would be silently wrong (0.48 kV
        # for a 0.416 kV grid); bases the file sets bus by bus (SetkVBase) are its own.
        if list(dss.Settings.VoltageBases()) == _OPENDSS_DEFAULT_BASES and all(
                b == 0 or any(abs(b * math.sqrt(3) - d) < 1e-6 * d for d in _OPENDSS_DEFAULT_BASES) for b in bases):
            raise FeederError(f"{path}: no voltage bases: add 'Set VoltageBases=[...]' (line-to-line kV of "
                              "every level, e.g. [11 0.416]) and 'CalcVoltageBases' after the elements")
        if all(b == 0 for b in bases):
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
        named = f"{sources[-1]}: " if sources else ""
        raise FeederError(f"{named}the feeder must have exactly one Vsource, found {len(sources)}"
                          f"{' (' + ', '.join(sources) + ')' if sources else ''}")


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
    if np.any(np.diag(z).real <= 0) or np.linalg.eigvalsh((z + z.conj().T) / 2).min() <= 0:
        raise FeederError(f"{full}: resistance must be positive (a zero or negative R, R1 or R0 in the line "
                          "or its line code)")
    amps = dss.Lines.NormAmps()
    if amps <= 0 or not _ampacity_given(dss, full):
        raise FeederError(f"{full}: no ampacity (set normamps on the line or its line code"
                          f"{'' if amps <= 0 else f'; OpenDSS would assume {amps:g} A'})")
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


def _ampacity_given(dss, full: str) -> bool:
    """Whether the active line's normamps comes from the feeder file rather than OpenDSS's default.

    OpenDSS gives every line and line code 400 A unless told otherwise. Lines built from a line
    geometry or wire data take their ratings from those, and switches are not rated: both pass.
    """
    import json

    if dss.Lines.IsSwitch():
        return True
    line = json.loads(dss.Element.ToJSON())
    keys = list(line)
    if any(k in line for k in ("Geometry", "Spacing", "Wires", "CNCables", "TSCables")):
        return True
    code = line.get("LineCode")
    if not code:
        return "NormAmps" in line
    if "NormAmps" in keys and "EmergAmps" in keys and keys.index("NormAmps") > keys.index("EmergAmps"):
        return True  # set on the line after its line code (the code sets NormAmps, then EmergAmps)
    amps = dss.Lines.NormAmps()
    dss.LineCodes.Name(code)
    given = "NormAmps" in json.loads(dss.Element.ToJSON()) or dss.LineCodes.NormAmps() != amps
    dss.Circuit.SetActiveElement(full)  # the line again, for the caller
    dss.Lines.Name(full.split(".", 1)[1])
    return given


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
    if cap == 0 and default_capacity_kva == 0:
        raise FeederError(f"{full}: no connection capacity (XfkVA is not set) and --default-capacity 0 "
                          "makes it compulsory")
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
        layout = _current_layout(dss)
        for loads in scenarios:
            for name, (p, q) in loads.items():
                if name.lower() not in known:
                    raise FeederError(f"Load.{name} is not in {path}")
                dss.Loads.Name(name)
                dss.Loads.kW(p)
                dss.Loads.kvar(q)
            out.append(_solve_snapshot(dss, layout))
    return out


def _current_layout(dss) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Where each line's and transformer's rated conductor currents sit in OpenDSS's array of all
    PD element currents (lines: every conductor but earth; transformers: the last winding's
    phases), so that one call per power flow reads them all. Computed once per compile."""
    names = dss.PDElements.AllNames()
    ncond = np.asarray(dss.PDElements.AllNumConductors(), dtype=int)
    nterm = np.asarray(dss.PDElements.AllNumTerminals(), dtype=int)
    offsets = np.concatenate([[0], np.cumsum(ncond * nterm)])
    pos: list[int] = []
    owner: list[int] = []
    keys: list[tuple[str, str]] = []
    for e, full in enumerate(names):
        cls, name = full.split(".", 1)
        if cls.lower() not in ("line", "transformer"):
            continue
        dss.Circuit.SetActiveElement(full)
        order = dss.CktElement.NodeOrder()
        if cls.lower() == "line":
            idx = [i for i, n in enumerate(order) if n != EARTH]
            keys.append(("line", name))
        else:
            nc, nt = ncond[e], nterm[e]
            idx = [i for i in range((nt - 1) * nc, nt * nc) if order[i] in PHASES]
            keys.append(("transformer", f"Transformer.{name}"))
        pos += [int(offsets[e]) + i for i in idx]
        owner += [len(keys) - 1] * len(idx)
    return np.array(pos, dtype=int), np.array(owner, dtype=int), keys


def _solve_snapshot(dss, layout: tuple | None = None) -> PowerFlow:
    try:
        dss.Solution.Solve()
    except Exception as exc:
        raise SolverError(f"OpenDSS power flow failed: {_clean(exc)}") from None
    volts = np.asarray(dss.Circuit.AllBusVolts())
    voltages = {}
    for i, nn in enumerate(dss.Circuit.AllNodeNames()):
        bus, node = nn.rsplit(".", 1)
        voltages[(bus.lower(), int(node))] = complex(volts[2 * i], volts[2 * i + 1])
    if layout is not None:
        pos, owner, keys = layout
        amps = np.zeros(len(keys))
        np.maximum.at(amps, owner, np.asarray(dss.PDElements.AllCurrentsMagAng())[0::2][pos])
        line_amps = {n: float(a) for (kind, n), a in zip(keys, amps) if kind == "line"}
        element_amps = {n: float(a) for (kind, n), a in zip(keys, amps) if kind == "transformer"}
        return PowerFlow(bool(dss.Solution.Converged()), voltages, line_amps, element_amps, dss.Solution.Iterations())
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


# ----------------------------------------------------------------------------- load shapes


@dataclass(frozen=True)
class LoadShapeSeries:
    """A load's active power over time from its OpenDSS load shape (kW, consumption positive).

    Point k holds from `hours[k]` to the next point (to `hours[k] + interval_h` for the last).
    """

    shape: str  # load shape name, "" for a load without one (constant at its kW)
    hours: np.ndarray
    kw: np.ndarray
    interval_h: float


def load_shapes(path: Path | str) -> dict[str, LoadShapeSeries]:
    """Every load's `daily` (else `yearly`, else `duty`) load shape times its kW (the multipliers
    are kW when the shape has UseActual=yes). A load without a shape keeps its kW (one point)."""
    out = {}
    with _compiled(Path(path)) as dss:
        shapes = {}
        for name in dss.LoadShape.AllNames():
            dss.LoadShape.Name(name)
            mult = np.asarray(dss.LoadShape.PMult(), dtype=float)
            step = dss.LoadShape.HrInterval()
            if step > 0:
                hours = step * np.arange(mult.size)
            else:
                hours = np.asarray(dss.LoadShape.TimeArray(), dtype=float)[: mult.size]
                if hours.size != mult.size or np.any(np.diff(hours) <= 0):
                    raise FeederError(f"LoadShape.{name}: its hour array must rise and match its multipliers")
                step = float(hours[-1] - hours[-2]) if hours.size > 1 else 1.0
            shapes[name.lower()] = (hours, mult, float(step), bool(dss.LoadShape.UseActual()))
        for name in dss.Loads.AllNames():
            dss.Loads.Name(name)
            shape = next((s.lower() for s in (dss.Loads.Daily(), dss.Loads.Yearly(), dss.Loads.Duty())
                          if s and s.lower() != "none"), "")
            kw = dss.Loads.kW()
            if not shape:
                out[name.lower()] = LoadShapeSeries("", np.zeros(1), np.array([kw]), 24.0)
                continue
            if shape not in shapes:
                raise FeederError(f"Load.{name}: load shape {shape} is not defined")
            hours, mult, step, actual = shapes[shape]
            out[name.lower()] = LoadShapeSeries(shape, hours, mult if actual else mult * kw, step)
    return out
