"""OpenDSS itself: this module runs inside the engine process (`nfca.engine.worker`) and nowhere
else. It compiles a feeder from the commands `nfca.engine.script` checked, reads it into a
`Feeder` and its load shapes, and solves power flows on the same compiled circuit.

The engine is locked down before anything runs: no editor, no forms, no change of folder, no
DOS commands, and its working folder and data path are a private empty folder, so that
nothing it writes can land outside it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nfca.engine.script import Command, read_script
from nfca.errors import FeederError, InputError, SolverError
from nfca.model.network import (
    DEFAULT_CAPACITY_KVA,
    EARTH,
    PHASES,
    Bus,
    EndUser,
    Feeder,
    Line,
    LinearElement,
    Source,
    check_earthing,
    check_topology,
)
from nfca.model.ratings import AmpacityRules, LineRating, resolve_ampacities
from nfca.model.voltages import leg_rated_v
from nfca.notices import Notice

# OpenDSS length units -> metres (Lines.Units codes). 0 ("none", on the line and its code) is taken as metres.
_UNIT_M = {0: 1.0, 1: 1609.344, 2: 304.8, 3: 1000.0, 4: 1.0, 5: 0.3048, 6: 0.0254, 7: 0.01, 8: 0.001}
# Elements that carry no physics for the envelopes and are ignored.
_IGNORED = {"energymeter", "monitor", "sensor", "fault"}
_SUPPORTED = {"vsource", "line", "transformer", "load", "capacitor", "reactor"}
# OpenDSS's VoltageBases when a file sets none: bases picked from it would be silently wrong.
_OPENDSS_DEFAULT_BASES = [0.208, 0.48, 12.47, 24.9, 34.5, 115.0, 230.0]
SOURCE_KV_TOL = 0.05  # a source further than this from the winding it feeds is refused


def start(workdir: Path):
    """Start OpenDSS locked down, working in `workdir` (private, empty); return opendssdirect."""
    import opendssdirect as dss

    for switch in (dss.Basic.AllowEditor, dss.Basic.AllowForms, dss.Basic.AllowChangeDir, dss.Basic.AllowDOScmd):
        switch(False)
    os.chdir(workdir)
    dss.Basic.DataPath(str(workdir))
    _WORKDIR[:] = [dss.Basic.DataPath()]
    return dss


_WORKDIR: list[str] = []  # the engine's private data path, as OpenDSS reports it


def run_command(dss, text: str) -> None:
    """Run one command; if it moved OpenDSS's data folder (where it writes) out of the private
    one, move it back and refuse (ValueError) before any later command can write there."""
    try:
        dss.Text.Command(text)
    finally:
        if _WORKDIR and dss.Basic.DataPath() != _WORKDIR[0]:
            dss.Basic.DataPath(_WORKDIR[0])
            raise ValueError("the command moves OpenDSS's data folder, where it writes: not allowed")


def vocabulary(dss) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """OpenDSS's commands and `Set` options, lower case, in its own order (for abbreviations)."""
    ex = dss.Executive
    return (
        tuple(ex.Command(i).lower() for i in range(1, ex.NumCommands() + 1)),
        tuple(ex.Option(i).lower() for i in range(1, ex.NumOptions() + 1)),
    )


def compile_feeder(dss, path: Path, shown_as: Path) -> None:
    """Compile the feeder file `path` (absolute) into a fresh circuit, command by command, each
    checked first; messages name it `shown_as`.

    OpenDSS's defaults are restored first (its base frequency survives `Clear`).
    """
    commands = read_script(path, *vocabulary(dss), shown_as=shown_as)
    dss.Text.Command("Clear")
    dss.Text.Command("Set DefaultBaseFrequency=60")  # OpenDSS's default; it survives Clear
    for cmd in commands:
        try:
            run_command(dss, cmd.text)
        except Exception as exc:  # opendssdirect raises DSSException with OpenDSS's message
            raise FeederError(_opendss_error(dss, cmd, exc)) from None
    try:
        circuit = dss.Circuit.Name()
    except Exception:  # an empty file: "There is no active circuit"
        circuit = ""
    if circuit == "":
        raise FeederError(f"{shown_as}: the file defines no circuit (no 'New Circuit' line)")
    if dss.Circuit.NumBuses() == 0:  # neither CalcVoltageBases nor Solve in the file: list the buses
        dss.Text.Command("MakeBusList")


def _clean(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _opendss_error(dss, cmd: Command, exc: Exception) -> str:
    """OpenDSS's message on one line: where (file and line), what, and OpenDSS's error number.

    A command from a file outside the feeder's folder is not quoted (nor is OpenDSS's message,
    which quotes it): its content is not the feeder's to show.
    """
    text = _clean(exc)
    code = re.match(r"\(#(\d+)\)\s*", text)
    number = f" (OpenDSS error {code.group(1)})" if code else ""
    text = text[code.end() :] if code else text
    singular = re.search(r'Matrix Inversion Error for Line "([^"]+)"', text)
    if singular:  # raised while building Y, at whatever line asked for it: name the line instead
        return _singular_line(dss, singular.group(1)) + number
    if not cmd.shown:
        return (
            f"{cmd.where}: OpenDSS refused this command{number} (not quoted: the file is outside the feeder's folder)"
        )
    if "Error Description:" in text:  # "Exception Raised While Processing DSS Command: ... Error Description: ..."
        what = text.split("Error Description:", 1)[1].split("Probable Cause:")[0].strip()
        text = f"{what} in '{cmd.excerpt()}'"
    return f"{cmd.where}: {text}{number}"


def _singular_line(dss, name: str) -> str:
    try:
        dss.Lines.Name(name)
        length = dss.Lines.Length()
    except Exception:
        length = None
    if length is not None and length <= 0:
        return f"Line.{name}: length must be positive, got {length:g}"
    return f"Line.{name}: zero impedance (its R and X, or its line code's, are all zero)"


def _cmatrix(flat: list[float]) -> np.ndarray:
    a = np.asarray(flat, dtype=float)
    n = int(round(math.sqrt(a.size // 2)))
    return (a[0::2] + 1j * a[1::2]).reshape(n, n)


def _cmatrices(flat: np.ndarray) -> np.ndarray:
    """`_cmatrix` of each row of `flat` (OpenDSS's interleaved re, im), as a stack."""
    n = int(round(math.sqrt(flat.shape[1] // 2)))
    return (flat[:, 0::2] + 1j * flat[:, 1::2]).reshape(-1, n, n)


def _split_bus(spec: str) -> str:
    return spec.split(".")[0].lower()


def read_feeder(
    dss,
    path: Path,
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA,
    ampacity: AmpacityRules | None = AmpacityRules(),
) -> Feeder:
    """The compiled radial feeder as a `Feeder`; raise FeederError naming what is wrong.

    Loads without XfkVA get `default_capacity_kva`; 0 makes XfkVA compulsory (a load without it
    is an error). Lines without normamps get their ampacity from `ampacity` (a table, a default);
    `ampacity=None` reads a feeder for a power flow, which needs none (such lines are unrated).
    A file without `Set VoltageBases` gets bases inferred from its source and transformers.
    Elements the file disables (`enabled=no`) are left out, as OpenDSS leaves them out of its
    solution. What was assumed is in `Feeder.notices`.
    """
    if not default_capacity_kva >= 0 or not math.isfinite(default_capacity_kva):
        raise InputError(
            f"--default-capacity must be 0 (XfkVA compulsory) or a positive kVA, got {default_capacity_kva}"
        )
    names, disabled = _enabled_elements(dss)
    notices = (
        [
            Notice(
                "disabled_elements",
                f"{path}: {len(disabled)} disabled element(s) ignored (enabled=no), as "
                f"OpenDSS ignores them: {', '.join(disabled[:5])}{', …' if len(disabled) > 5 else ''}",
                data={"count": len(disabled), "elements": disabled},
            )
        ]
        if disabled
        else []
    )
    _check_supported(dss, names)
    _check_numbers(dss, names)
    terminals = _line_terminals(dss, names)
    _check_source_kv(dss, names, terminals)
    bases = _bus_bases(dss)
    # Bases from OpenDSS's own list (the file sets none) would be silently wrong (0.48 kV
    # for a 0.416 kV grid): infer them as the file would have set them. Bases the file sets
    # bus by bus (SetkVBase) are its own.
    if list(dss.Settings.VoltageBases()) == _OPENDSS_DEFAULT_BASES and all(
        b == 0 or any(abs(b * math.sqrt(3) - d) < 1e-6 * d for d in _OPENDSS_DEFAULT_BASES) for b in bases
    ):
        notices.append(_infer_voltage_bases(dss, names))
    elif all(b == 0 for b in bases):
        dss.Text.Command("CalcVoltageBases")
    buses = _read_buses(dss)
    source = _read_source(dss, names)
    earthing = {n for n, (_, order, nc) in terminals.items() if _is_earthing(order, nc)}
    set_in_file = {cls: _as_set(dss, cls) for cls in ("Line", "LineCode")}
    read = _read_lines(dss, {n: t for n, t in terminals.items() if n not in earthing}, set_in_file)
    amps, said = resolve_ampacities([r for _, r in read], ampacity or AmpacityRules(required=False))
    lines = tuple(replace(line, ampacity_a=amps[line.name]) for line, _ in read)
    notices += list(said) + _length_notices(read)
    elements = tuple(
        _read_element(dss, n)
        for n in names
        if n.split(".")[0].lower() in ("transformer", "capacitor", "reactor") or n in earthing
    )
    loads = [_read_load(dss, n, default_capacity_kva) for n in names if n.lower().startswith("load.")]
    notices += _capacity_notices(loads, default_capacity_kva)
    feeder = Feeder(
        dss.Circuit.Name(),
        str(path),
        buses,
        lines,
        elements,
        source,
        tuple(u for u, _ in loads),
        notices=tuple(notices),
    )
    _check_feeder(feeder)
    return feeder


def _enabled_elements(dss) -> tuple[list[str], list[str]]:
    """The circuit's elements that take part in its solution, and the disabled ones."""
    enabled, disabled = [], []
    for n in dss.Circuit.AllElementNames():
        dss.Circuit.SetActiveElement(n)
        (enabled if dss.CktElement.Enabled() else disabled).append(n)
    return enabled, disabled


def _check_numbers(dss, names: list[str]) -> None:
    """Ratings, voltages and powers that must be finite (and positive where it matters), named
    before any of them feeds a voltage base or a matrix (where they would be misdiagnosed)."""

    def bad(full: str, what: str, value: float, positive: bool = False) -> None:
        if not math.isfinite(value) or (positive and value <= 0):
            need = "a positive number" if positive else "a finite number"
            raise FeederError(f"{full}: {what} must be {need}, got {value:g}")

    for full in names:
        kind, name = full.split(".", 1)
        kind = kind.lower()
        if kind == "transformer":
            dss.Transformers.Name(name)
            for w in range(1, dss.Transformers.NumWindings() + 1):
                dss.Transformers.Wdg(w)
                bad(full, f"kVA of winding {w}", dss.Transformers.kVA(), positive=True)
                bad(full, f"kV of winding {w}", dss.Transformers.kV(), positive=True)
        elif kind == "load":
            dss.Loads.Name(name)
            bad(full, "kW", dss.Loads.kW())
            bad(full, "kvar", dss.Loads.kvar())
            bad(full, "XfkVA", dss.Loads.XfkVA())
        elif kind == "vsource":
            dss.Vsources.Name(name)
            bad(full, "basekv", dss.Vsources.BasekV(), positive=True)
            bad(full, "pu", dss.Vsources.PU(), positive=True)
        elif kind == "line":
            dss.Lines.Name(name)
            bad(full, "length", dss.Lines.Length())
            bad(full, "normamps", dss.Lines.NormAmps())


def _infer_voltage_bases(dss, names: list[str]) -> Notice:
    """Voltage bases for a file that sets none: the source's kV and every transformer winding's
    (line-to-line) kV, as `Set VoltageBases=[...]` and `CalcVoltageBases` with that list."""
    found: dict[float, list[str]] = {}
    source = next(n for n in names if n.lower().startswith("vsource."))
    dss.Vsources.Name(source.split(".", 1)[1])
    found.setdefault(round(dss.Vsources.BasekV(), 6), []).append(source)
    for full in names:
        if not full.lower().startswith("transformer."):
            continue
        dss.Transformers.Name(full.split(".", 1)[1])
        dss.Circuit.SetActiveElement(full)
        one_phase = dss.CktElement.NumPhases() == 1
        for w in range(1, dss.Transformers.NumWindings() + 1):
            dss.Transformers.Wdg(w)
            kv = dss.Transformers.kV()
            if one_phase and not dss.Transformers.IsDelta():  # a single-phase winding to neutral
                kv *= math.sqrt(3)
            found.setdefault(round(kv, 6), []).append(full)
    bases = sorted(found, reverse=True)
    dss.Text.Command(f"Set VoltageBases=[{' '.join(f'{b:g}' for b in bases)}]")
    dss.Text.Command("CalcVoltageBases")
    shown = " ".join(f"{b:g}" for b in bases)
    return Notice(
        "voltage_bases_inferred",
        f"the file sets no voltage bases (Set VoltageBases): inferred [{shown}] kV from {source} and "
        f"the transformers' windings, as OpenDSS's CalcVoltageBases does with that list; limits in pu "
        "are of these bases",
        data={"voltage_bases_kv": bases, "from": {f"{b:g}": sorted(set(found[b])) for b in bases}},
    )


def _line_terminals(dss, names: list[str]) -> dict[str, tuple[list[str], list[int], int]]:
    """Each line's bus names, node order and number of conductors (per end), read once."""
    element, out = dss.CktElement, {}
    for full in names:
        if full.lower().startswith("line."):
            dss.Circuit.SetActiveElement(full)
            out[full] = (element.BusNames(), list(element.NodeOrder()), element.NumConductors())
    return out


def _check_source_kv(dss, names: list[str], terminals: dict[str, tuple[list[str], list[int], int]]) -> None:
    """Refuse a source whose kV differs by more than 5 % from the transformer winding it feeds
    (e.g. OpenDSS's default 115 kV left above a 22 kV winding: every voltage below is wrong);
    `terminals`: `_line_terminals`."""
    src = next(n for n in names if n.lower().startswith("vsource."))
    dss.Vsources.Name(src.split(".", 1)[1])
    src_kv = dss.Vsources.BasekV()
    dss.Circuit.SetActiveElement(src)
    fed = {_split_bus(dss.CktElement.BusNames()[0])}
    links: dict[str, set[str]] = {}
    for bus_names, _, _ in terminals.values():  # galvanic links: lines (a winding is a boundary)
        a, b = (_split_bus(x) for x in bus_names[:2])
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    todo = list(fed)
    while todo:
        for nxt in links.get(todo.pop(), ()):
            if nxt not in fed:
                fed.add(nxt)
                todo.append(nxt)
    for full in names:
        if not full.lower().startswith("transformer."):
            continue
        dss.Circuit.SetActiveElement(full)
        buses = [_split_bus(b) for b in dss.CktElement.BusNames()]
        one_phase = dss.CktElement.NumPhases() == 1
        dss.Transformers.Name(full.split(".", 1)[1])
        for w, bus in enumerate(buses, 1):
            if bus not in fed:
                continue
            dss.Transformers.Wdg(w)
            kv = dss.Transformers.kV() * (math.sqrt(3) if one_phase and not dss.Transformers.IsDelta() else 1.0)
            if abs(src_kv - kv) > SOURCE_KV_TOL * kv:
                raise FeederError(
                    f"{src}: basekv {src_kv:g} kV, but the winding {w} of {full} it feeds at bus {bus} is rated "
                    f"{kv:g} kV ({100 * (src_kv / kv - 1):+.0f} %): set the source's basekv to its network's "
                    f"voltage{' (OpenDSS assumes 115 kV when the circuit gives none)' if src_kv == 115 else ''}"
                )


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
        raise FeederError(
            f"{named}the feeder must have exactly one Vsource, found {len(sources)}"
            f"{' (' + ', '.join(sources) + ')' if sources else ''}"
        )


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
    return Source(full, _split_bus(bus_names[0]), nodes, e, y, pu)


def _read_lines(
    dss, terminals: dict[str, tuple[list[str], list[int], int]], set_in_file: dict[str, dict[str, dict]]
) -> list[tuple[Line, LineRating]]:
    """Each line of `terminals` (`_line_terminals`) with its ampacity left to `resolve_ampacities`,
    and what the file says of its rating (`set_in_file`: `_as_set` of lines and line codes); the
    first line at fault, in file order, raises.

    The matrices are inverted and checked a stack at a time (one numpy call for all the lines of
    one conductor count; the same numbers as one call per line).
    """
    fulls = list(terminals)
    yprims = []
    for full in fulls:
        dss.Circuit.SetActiveElement(full)
        yprims.append(dss.CktElement.YPrim())
    found: list = [None] * len(fulls)  # per line: (y, y_shunt, z, whether its resistance is positive)
    stacks: dict[tuple[int, int], list[int]] = {}  # (conductors, YPrim length) -> the lines of that shape
    for i, (f, y) in enumerate(zip(fulls, yprims)):
        stacks.setdefault((terminals[f][2], len(y)), []).append(i)
    for (n, size), ix in sorted(stacks.items()):
        if size != 8 * n * n:  # not 2n x 2n conductors: read on its own (and refused there)
            continue
        ys = _cmatrices(np.array([yprims[i] for i in ix], dtype=float))
        ok = np.isfinite(ys).all(axis=(1, 2))
        try:
            zs = -np.linalg.inv(ys[ok][:, :n, n:])
            positive = ~(np.diagonal(zs, axis1=1, axis2=2).real <= 0).any(axis=1)
            herm = (zs[positive] + zs[positive].conj().transpose(0, 2, 1)) / 2
            positive[positive] = ~(np.linalg.eigvalsh(herm).min(axis=1) <= 0)  # as `_impedances` (NaN passes)
        except np.linalg.LinAlgError:  # one of them is singular: each line is read on its own
            continue
        shunts = 2 * (ys[:, :n, :n] + ys[:, :n, n:])
        for i, y, shunt in zip(ix, ys, shunts):
            found[i] = (y, shunt, None, None)
        for i, z, pos in zip(np.asarray(ix)[ok], zs, positive):
            found[i] = (found[i][0], found[i][1], z.copy(), bool(pos))
    return [
        _read_line(dss, full, *terminals[full], found[i] or _impedances(yprims[i], terminals[full][2]), set_in_file)
        for i, full in enumerate(fulls)
    ]


def _impedances(yprim, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool | None]:
    """One line's (y, y_shunt, z, whether its resistance is positive), as `_read_lines` finds a
    stack's; z None when y is not finite, raise FeederError when singular."""
    y = _cmatrix(yprim)
    y12 = y[:n, n:]
    if not np.all(np.isfinite(y)):
        return y, 2 * (y[:n, :n] + y12), None, None
    try:
        z = -np.linalg.inv(y12)
    except np.linalg.LinAlgError:
        return y, 2 * (y[:n, :n] + y12), None, False
    positive = not (np.any(np.diag(z).real <= 0) or np.linalg.eigvalsh((z + z.conj().T) / 2).min() <= 0)
    return y, 2 * (y[:n, :n] + y12), z, positive


def _read_line(
    dss,
    full: str,
    bus_names: list[str],
    order: list[int],
    n: int,
    impedances: tuple[np.ndarray, np.ndarray, np.ndarray | None, bool | None],
    set_in_file: dict[str, dict[str, dict]],
) -> tuple[Line, LineRating]:
    """One line of `_read_lines`, its `impedances` computed (`_impedances`)."""
    y, y_shunt, z, positive = impedances
    name = full.split(".", 1)[1]
    dss.Lines.Name(name)
    if dss.Lines.Length() <= 0:
        raise FeederError(f"{full}: length must be positive, got {dss.Lines.Length()}")
    if positive is None:
        raise FeederError(f"{full}: zero impedance (check its line code, R and X)")
    if z is None:
        raise FeederError(f"{full}: zero or singular impedance matrix")
    if not positive:
        raise FeederError(
            f"{full}: resistance must be positive (a zero or negative R, R1 or R0 in the line or its line code)"
        )
    amps = dss.Lines.NormAmps()
    given = amps > 0 and _ampacity_given(dss, full, set_in_file)
    code = dss.Lines.LineCode().lower()
    switch = bool(dss.Lines.IsSwitch())  # switches are not rated
    length, units = dss.Lines.Length(), _length_units(dss, name, code)
    line = Line(
        name=name,
        bus_from=_split_bus(bus_names[0]),
        bus_to=_split_bus(bus_names[1]),
        nodes_from=tuple(order[:n]),
        nodes_to=tuple(order[n:]),
        z_ohm=z,
        y_shunt_s=y_shunt,
        length_m=length * _UNIT_M.get(units, 1.0),
        ampacity_a=math.inf,
        linecode=code,
    )
    return line, LineRating(name, code, amps if given else None, rated=not switch, length_units=units)


def _length_units(dss, name: str, code: str) -> int:
    """The units the line's length is in, as OpenDSS reads it: the line's own, else its line
    code's (a length without units follows the code's), else 0 (none: the impedances are per
    unit of whatever the length is in)."""
    units = dss.Lines.Units()
    if units == 0 and code:
        dss.LineCodes.Name(code)
        units = dss.LineCodes.Units()
        dss.Lines.Name(name)  # the line active again, for the caller
    return units


def _length_notices(read: list[tuple[Line, LineRating]]) -> list[Notice]:
    """Lines whose length has no unit anywhere: taken as metres for lengths and distances."""
    bare = [r.name for _, r in read if r.length_units == 0]
    if not bare:
        return []
    return [
        Notice(
            "length_units_missing",
            f"{len(bare)} line(s) have no length unit, nor a line code with one (e.g. Line.{bare[0]}): their "
            "lengths are taken as metres for length_m and distance_m (the impedances are as OpenDSS reads them)",
            data={"lines": len(bare), "example": bare[0]},
        )
    ]


def _as_set(dss, cls: str) -> dict[str, dict]:
    """Each element of class `cls` by lower-case name: the properties the file set, in the order
    set (`Element.ToJSON` of each, in one call for the class)."""
    import json

    dss.Circuit.SetActiveClass(cls)
    out: dict[str, dict] = {}
    for element in json.loads(dss.ActiveClass.ToJSON()):
        out.setdefault(element["Name"].lower(), element)
    return out


def _ampacity_given(dss, full: str, set_in_file: dict[str, dict[str, dict]]) -> bool:
    """Whether the active line's normamps comes from the feeder file rather than OpenDSS's default.

    OpenDSS gives every line and line code 400 A unless told otherwise. Lines built from a line
    geometry or wire data take their ratings from those, and switches are not rated: both pass.
    """
    if dss.Lines.IsSwitch():
        return True
    line = set_in_file["Line"][full.split(".", 1)[1].lower()]
    keys = list(line)
    if any(k in line for k in ("Geometry", "Spacing", "Wires", "CNCables", "TSCables")):
        return True
    code = line.get("LineCode")
    if not code:
        return "NormAmps" in line
    if "NormAmps" in keys and "EmergAmps" in keys and keys.index("NormAmps") > keys.index("EmergAmps"):
        return True  # set on the line after its line code (the code sets NormAmps, then EmergAmps)
    if "NormAmps" in set_in_file["LineCode"].get(code.lower(), {}):
        return True
    amps = dss.Lines.NormAmps()
    dss.LineCodes.Name(code)
    given = dss.LineCodes.NormAmps() != amps
    dss.Circuit.SetActiveElement(full)  # the line again, for the caller
    dss.Lines.Name(full.split(".", 1)[1])
    return given


def _is_earthing(order: list[int], n: int) -> bool:
    """Whether a line (node `order`, `n` conductors per end) has every conductor of one end on
    node 0: an earth electrode or earthing resistance.

    It is not a branch of the feeder's tree; it is read like a reactor, by its primitive admittance.
    """
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
        desc = {
            "kv": kvs,
            "kva": kvas,
            "conns": conns,
            "vector_group": group,
            "xhl_pct": dss.Transformers.Xhl(),
            "r_pct": rs,
        }
    return LinearElement(full, kind, terminals, y, rating, rated, desc)


def _read_load(dss, full: str, default_capacity_kva: float) -> tuple[EndUser, bool]:
    """The end-user, and whether its capacity is the default (XfkVA not set)."""
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
        raise FeederError(
            f"{full}: no connection capacity (XfkVA is not set) and --default-capacity 0 makes it compulsory"
        )
    user = EndUser(
        name=name,
        bus=bus,
        legs=legs,
        connection="delta" if delta else "wye",
        capacity_kva=cap if cap > 0 else default_capacity_kva,
        p_kw=dss.Loads.kW(),
        q_kvar=dss.Loads.kvar(),
        rated_v=leg_rated_v(dss.Loads.kV(), nph, delta),
    )
    return user, cap == 0


def _capacity_notices(loads: list[tuple[EndUser, bool]], default_kva: float) -> list[Notice]:
    """How many loads got the default capacity, and a warning when some draw more than it."""
    defaulted = [u for u, d in loads if d]
    if not defaulted:
        return []
    out = [
        Notice(
            "capacity_defaulted",
            f"{len(defaulted)} of {len(loads)} load(s) have no XfkVA: each got --default-capacity "
            f"{default_kva:g} kVA as its connection capacity",
            data={"loads": len(defaulted), "capacity_kva": default_kva},
        )
    ]
    over = sorted((u for u in defaulted if abs(u.p_kw) > u.capacity_kva), key=lambda u: -abs(u.p_kw))
    if over:
        u = over[0]
        out.append(
            Notice(
                "capacity_below_load",
                f"{len(over)} load(s) without XfkVA draw more kW than the default capacity {default_kva:g} kVA "
                f"(Load.{u.name}: {abs(u.p_kw):g} kW): set their XfkVA, --capacities or --default-capacity",
                level="warning",
                data={"loads": len(over), "largest_kw": round(abs(u.p_kw), 3), "example": u.name},
            )
        )
    return out


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


class _Row(Mapping):
    """A read-only mapping from names to one row of an array, sharing one index among many rows."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping, values: np.ndarray):
        self._index, self._values = index, values

    def __getitem__(self, key):
        return self._values[self._index[key]]

    def __iter__(self) -> Iterator:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def index(self) -> Mapping:
        """Name -> position in `values`, shared by every power flow of one compiled feeder."""
        return self._index

    @property
    def values(self) -> np.ndarray:
        """The numbers, in `index` order (for vectorised checks)."""
        return self._values


@dataclass(frozen=True)
class PowerFlow:
    """An OpenDSS power flow: node voltages (V, complex) and element currents (A)."""

    converged: bool
    voltages: Mapping[tuple[str, int], complex]
    line_amps: Mapping[str, float]  # max conductor current per line
    element_amps: Mapping[str, float]  # max rated-terminal current per transformer
    iterations: int
    # per transformer, the complex phase currents of its rated (last) winding, in node order
    transformer_currents_a: Mapping[str, np.ndarray] = None  # type: ignore[assignment]


@dataclass(frozen=True)
class FlowLayout:
    """Where a power flow's numbers sit in the engine's arrays; sent once per compiled feeder."""

    loads: tuple[str, ...]  # the order of load powers sent to the engine
    nodes: Mapping[tuple[str, int], int]
    lines: Mapping[str, int]
    transformers: Mapping[str, int]  # into the amps array
    transformer_phases: Mapping[str, slice]  # into the transformer currents array

    def flow(self, converged: bool, iterations: int, v: np.ndarray, amps: np.ndarray, i_tr: np.ndarray) -> PowerFlow:
        return PowerFlow(
            bool(converged),
            _Row(self.nodes, v),
            _Row(self.lines, amps),
            _Row(self.transformers, amps),
            int(iterations),
            {n: i_tr[sl] for n, sl in self.transformer_phases.items()},
        )


class Flows:
    """Power flows on the compiled feeder, one per case of load powers (constant P and Q).

    Loads are forced to the constant-power model over the whole voltage range (vminpu 0.5,
    vmaxpu 1.5) so OpenDSS solves the physics the envelopes promise; the convergence tolerance
    is 1e-10 pu.
    """

    def __init__(self, dss, feeder: Feeder):
        self.dss = dss
        loads = tuple(u.name for u in feeder.end_users)
        for name in loads:
            dss.Loads.Name(name)
            dss.Loads.Model(1)
            dss.Loads.Vminpu(0.5)
            dss.Loads.Vmaxpu(1.5)
        self.load_index = _class_index(dss, "Load", loads)
        dss.Vsources.Name(feeder.source.name.split(".", 1)[1])
        self.source_pu = dss.Vsources.PU()
        dss.Text.Command("Set Tolerance=1e-10")
        dss.Text.Command("Set MaxIterations=200")
        dss.Text.Command("Set Mode=Snap")
        self.pos, self.owner, keys, tr_pos = _current_layout(dss)
        self.tr_pos = np.array(tr_pos, dtype=int)
        self.n_keys = len(keys)
        nodes = {}
        for i, nn in enumerate(dss.Circuit.AllNodeNames()):
            bus, node = nn.rsplit(".", 1)
            nodes[(bus.lower(), int(node))] = i
        phases, k = {}, 0
        for kind, name, n in keys:
            if kind == "transformer":
                phases[name] = slice(k, k + n)
                k += n
        self.layout = FlowLayout(
            loads,
            nodes,
            {name: i for i, (kind, name, _) in enumerate(keys) if kind == "line"},
            {name: i for i, (kind, name, _) in enumerate(keys) if kind == "transformer"},
            phases,
        )

    def solve(self, kw_kvar: np.ndarray, source_pu: float | None) -> tuple[np.ndarray, ...]:
        """Solve each case; `kw_kvar` (cases x loads x 2) in `layout.loads` order. Returns the
        arrays `FlowLayout.flow` takes, one row per case."""
        dss = self.dss
        dss.Vsources.PU(self.source_pu if source_pu is None else source_pu)
        n = len(kw_kvar)
        conv, iters = np.zeros(n, dtype=bool), np.zeros(n, dtype=int)
        v = np.zeros((n, len(self.layout.nodes)), dtype=complex)
        amps = np.zeros((n, self.n_keys))
        i_tr = np.zeros((n, len(self.tr_pos)), dtype=complex)
        circuit = dss.to_dss_python().ActiveCircuit  # DSS-Python: arrays come as numpy, not as lists
        with _Batch(dss, "Load", self.load_index) as batch:
            for c in range(n):
                batch.set("kW", kw_kvar[c, :, 0])
                batch.set("kvar", kw_kvar[c, :, 1])
                try:
                    dss.Solution.Solve()
                except Exception as exc:
                    raise SolverError(f"OpenDSS power flow failed: {_clean(exc)}") from None
                conv[c], iters[c] = dss.Solution.Converged(), dss.Solution.Iterations()
                v[c] = circuit.AllBusVolts.view(complex)
                currents = circuit.PDElements.AllCurrents.view(complex)
                np.maximum.at(amps[c], self.owner, np.abs(currents[self.pos]))
                i_tr[c] = currents[self.tr_pos]
        return conv, iters, v, amps, i_tr


def _class_index(dss, cls: str, names: tuple[str, ...]) -> np.ndarray:
    """Each named element's 1-based position in OpenDSS's list of its class (for `_Batch`)."""
    dss.Circuit.SetActiveClass(cls)
    position = {name.lower(): i for i, name in enumerate(dss.ActiveClass.AllNames(), 1)}
    return np.array([position[name.lower()] for name in names], dtype=np.int32)


class _Batch:
    """Elements of one class as a DSS C-API batch, so that one call sets a property of all of them
    (e.g. every load's kW for one power flow, instead of a Name/kW/kvar call per load).

    Values are set with the `AvoidFullRecalc` flag, which makes them exactly what the classic
    `Loads.kW`/`Loads.kvar` setters do (no rebuild of the admittance matrix), so the power flows
    are the same to the bit. A batch holds pointers into the compiled circuit: it lives for one
    request (`with`), never across a recompile.
    """

    def __init__(self, dss, cls: str, index: np.ndarray):
        self._lib, self._ffi = dss.dss.dss_lib, dss.dss.dss_ffi
        self._cls, self._index = cls.encode(), np.ascontiguousarray(index, dtype=np.int32)

    def __enter__(self) -> _Batch:
        lib, ffi = self._lib, self._ffi
        pointer, dims = ffi.new("void***"), ffi.new("int32_t[4]")
        lib.Batch_CreateByIndexS(pointer, dims, self._cls, ffi.from_buffer("int32_t[]", self._index), len(self._index))
        self._pointer, self._count = pointer[0], dims[0]
        if self._count != len(self._index):
            self.__exit__()
            raise SolverError(f"OpenDSS holds {self._count} of the {len(self._index)} {self._cls.decode()}s solved")
        return self

    def set(self, prop: str, values: np.ndarray) -> None:
        """Set property `prop` of the batch's elements, in batch order."""
        values = np.ascontiguousarray(values, dtype=float)
        if values.shape != (self._count,):  # the C side reads one value per element, unchecked
            raise ValueError(f"{len(values)} values for {self._count} {self._cls.decode()}s")
        lib = self._lib
        lib.Batch_Float64ArrayS(
            self._pointer,
            self._count,
            prop.encode(),
            lib.BatchOperation_Set,
            self._ffi.from_buffer("double[]", values),
            lib.SetterFlags_AvoidFullRecalc,
        )

    def __exit__(self, *exc) -> None:
        if self._pointer != self._ffi.NULL:
            self._lib.Batch_Dispose(self._pointer)
            self._pointer = self._ffi.NULL


def _current_layout(dss) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str, int]], list[int]]:
    """Where each line's and transformer's rated conductor currents sit in OpenDSS's array of all
    PD element currents (lines: every conductor but earth; transformers: the last winding's
    phases), so that one call per power flow reads them all. Computed once per compile."""
    names = dss.PDElements.AllNames()
    ncond = np.asarray(dss.PDElements.AllNumConductors(), dtype=int)
    nterm = np.asarray(dss.PDElements.AllNumTerminals(), dtype=int)
    offsets = np.concatenate([[0], np.cumsum(ncond * nterm)])
    pos: list[int] = []
    owner: list[int] = []
    keys: list[tuple[str, str, int]] = []
    tr_pos: list[int] = []
    for e, full in enumerate(names):
        cls, name = full.split(".", 1)
        if cls.lower() not in ("line", "transformer"):
            continue
        dss.Circuit.SetActiveElement(full)
        if not dss.CktElement.Enabled():
            continue
        order = dss.CktElement.NodeOrder()
        if cls.lower() == "line":
            idx = [i for i, n in enumerate(order) if n != EARTH]
            keys.append(("line", name, len(idx)))
        else:
            nc, nt = ncond[e], nterm[e]
            idx = [i for i in range((nt - 1) * nc, nt * nc) if order[i] in PHASES]
            keys.append(("transformer", f"Transformer.{name}", len(idx)))
            tr_pos += [int(offsets[e]) + i for i in idx]
        pos += [int(offsets[e]) + i for i in idx]
        owner += [len(keys) - 1] * len(idx)
    return np.array(pos, dtype=int), np.array(owner, dtype=int), keys, tr_pos


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


def load_shapes(dss) -> dict[str, LoadShapeSeries]:
    """Every enabled load's `daily` (else `yearly`, else `duty`) load shape times its kW (the
    multipliers are kW when the shape has UseActual=yes). A load without a shape keeps its kW
    (one point)."""
    out = {}
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
        if not np.all(np.isfinite(mult)) or not math.isfinite(step):
            raise FeederError(f"LoadShape.{name}: its multipliers and interval must be finite numbers")
        shapes[name.lower()] = (hours, mult, float(step), bool(dss.LoadShape.UseActual()))
    for name in dss.Loads.AllNames():
        dss.Circuit.SetActiveElement(f"Load.{name}")
        if not dss.CktElement.Enabled():
            continue
        dss.Loads.Name(name)
        shape = next(
            (s.lower() for s in (dss.Loads.Daily(), dss.Loads.Yearly(), dss.Loads.Duty()) if s and s.lower() != "none"),
            "",
        )
        kw = dss.Loads.kW()
        if not shape:
            out[name.lower()] = LoadShapeSeries("", np.zeros(1), np.array([kw]), 24.0)
            continue
        if shape not in shapes:
            raise FeederError(f"Load.{name}: load shape {shape} is not defined")
        hours, mult, step, actual = shapes[shape]
        out[name.lower()] = LoadShapeSeries(shape, hours, mult if actual else mult * kw, step)
    return out
