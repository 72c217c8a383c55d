"""A corpus of bad inputs, each run through the real command line.

Every case must end with one line on stderr that names the element (or file, option, row) and
the problem, the exit code documented in the README ("Exit codes"), no traceback, and no
envelope written. `--debug` shows the traceback instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tests.feeder_texts import HEADER, four_wire_kron_text, three_wire_text, write_dss
from tests.helpers import error_lines

runner = CliRunner()
NFCA = Path(sys.executable).parent / "nfca"


def _kron(extra: str = "") -> str:
    """The small four-wire (Kron) feeder with `extra` lines added before its voltage bases."""
    return four_wire_kron_text(n_segments=4).replace("Set VoltageBases", extra + "\nSet VoltageBases")


def _it(extra: str = "") -> str:
    return three_wire_text(n_segments=3).replace("Set VoltageBases", extra + "\nSet VoltageBases")


@dataclass(frozen=True)
class Case:
    """`feeder(tmp)` writes the feeder (returns its path); `extra(tmp, feeder)` the other arguments."""

    feeder: Callable[[Path], Path]
    code: int
    says: tuple[str, ...]  # all must appear in the one-line message
    extra: Callable[[Path, Path], list[str]] = lambda tmp, f: []
    command: str = "envelopes"


def text(body: str, name: str = "Master.dss", encoding: str = "utf-8") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(body.encode(encoding))
        return path

    return make


def csv(name: str, body: str, option: str = "--capacities") -> Callable[[Path, Path], list[str]]:
    def make(tmp: Path, feeder: Path) -> list[str]:
        (tmp / name).write_text(body)
        return [option, str(tmp / name)]

    return make


def redirected(tmp: Path) -> Path:
    """A syntax error in a file the master redirects to: the message names that file and line."""
    (tmp / "Extra.dss").write_text("! more lines\nNew Line.x9 bus1=n4 bus2=x9 linecode=main lenght=10\n")
    return text(_kron("Redirect Extra.dss"))(tmp)


def redirect_in_another_case(tmp: Path) -> Path:
    """An export written on Windows: `Redirect Loadshapes.dss` for a file saved as loadshapes.dss."""
    (tmp / "loadshapes.dss").write_text("! nothing\n")
    return text(_kron("Redirect Loadshapes.dss"))(tmp)


def data_file_in_another_case(tmp: Path) -> Path:
    (tmp / "profile.txt").write_text("1\n0.5\n")
    return text(_kron("New Loadshape.day npts=2 interval=1 mult=(file=Profile.txt)"))(tmp)


def out_is_a_file(tmp: Path, feeder: Path) -> list[str]:
    (tmp / "taken").write_text("not a folder")
    return ["--out", str(tmp / "taken")]


def out_inside_a_file(tmp: Path, feeder: Path) -> list[str]:
    (tmp / "taken").write_text("not a folder")
    return ["--out", str(tmp / "taken" / "results")]


def batch_results_blocked(tmp: Path, feeder: Path) -> list[str]:
    """`nfca batch` whose results folder has a file where the per-feeder folders go."""
    (tmp / "res").mkdir()
    (tmp / "res" / "feeders").write_text("not a folder")
    return ["--out", str(tmp / "res"), "--workers", "1"]


NO_AMPS = "New LineCode.bare nphases=3 R1=0.3 X1=0.07 R0=1 X0=0.1 C1=0 C0=0 units=km"
NOT_UTF8 = (
    "New Line.x1 bus1=n3 bus2=x1 linecode=c16 length=10 units=m\n"
    "New Load.café bus1=x1.1.2 phases=1 conn=delta kV=0.23 XfkVA=5 kW=1"
)

CASES: dict[str, Case] = {
    # --- the .dss text
    "syntax: unknown command": Case(
        text(_kron("Nwe Line.x1 bus1=n4 bus2=x1 linecode=main length=10")),
        2,
        ("Master.dss line", 'Unknown command "Nwe"', "Line.x1"),
    ),
    "syntax: unknown class": Case(
        text(_kron("New Lien.x1 bus1=n4 bus2=x1 linecode=main length=10")),
        2,
        ("Master.dss line", 'Object Type "Lien" not found'),
    ),
    "syntax: unknown property": Case(
        text(_kron("New Line.x1 bsu1=n4 bus2=x1 linecode=main length=10")),
        2,
        ("Master.dss line", "Line.x1", 'Unknown parameter "bsu1"'),
    ),
    "syntax: not a number": Case(
        text(_kron("New Line.x1 bus1=n4 bus2=x1 linecode=main length=abc")), 2, ("Master.dss line", "Line.x1", '"abc"')
    ),
    "syntax: error in a redirected file": Case(redirected, 2, ("Extra.dss line 2", "Line.x9", '"lenght"')),
    "syntax: binary garbage": Case(
        text("\x00\x01PK\x03\x04 binary", encoding="latin-1"), 2, ("Master.dss", "not a text file")
    ),
    "missing line code": Case(
        text(_kron("New Line.x1 bus1=n4 bus2=x1 linecode=nope length=10")),
        2,
        ("Line.x1", 'LineCode object "nope" not found'),
    ),
    "missing file in a Redirect": Case(
        text(_kron("Redirect nothere.dss")), 2, ("Master.dss line", 'Redirect file not found: "nothere.dss"')
    ),
    "Redirect to a file that exists in another case": Case(
        redirect_in_another_case,
        2,
        ('Redirect file not found: "Loadshapes.dss"', 'the folder has "loadshapes.dss": file names are case-sensitive'),
    ),
    "data file that exists in another case": Case(
        data_file_in_another_case, 2, ("Profile.txt not found", 'the folder has "profile.txt"')
    ),
    "missing feeder file": Case(lambda tmp: tmp / "nothere.dss", 2, ("nothere.dss", "no such feeder file")),
    "feeder path is a folder": Case(lambda tmp: tmp, 2, ("is a folder, not a feeder file",)),
    "empty file": Case(text(""), 2, ("Master.dss", "defines no circuit")),
    "elements before the circuit": Case(
        text("New Line.x bus1=a bus2=b length=1\n"), 2, ("Master.dss line 1", "Create a circuit first")
    ),
    "source far from the winding it feeds": Case(
        text(_kron().replace("basekv=11 ", "")), 2, ("Vsource.source", "115 kV", "Transformer.tr", "11 kV")
    ),
    "a path with brackets": Case(lambda tmp: tmp / "[bold]x" / "Master.dss", 2, ("[bold]x/Master.dss", "no such")),
    "non-ASCII name not in UTF-8": Case(
        text(_it(NOT_UTF8), encoding="latin-1"), 2, ("Master.dss line", "is not UTF-8", "Load.caf")
    ),
    # --- topology
    "unknown bus": Case(
        text(_kron("New Load.bad bus1=nowhere.1 phases=1 kV=0.24 XfkVA=5 kW=1")),
        2,
        ("Load.bad", "bus nowhere", "no line or transformer feeds"),
    ),
    "disconnected section": Case(
        text(
            _kron(
                "New Line.x4 bus1=island1 bus2=island2 linecode=main length=10\n"
                "New Load.lost bus1=island2.1 phases=1 kV=0.24 kW=1"
            )
        ),
        2,
        ("Line.x4", "not connected to the source", "lost"),
    ),
    "mesh": Case(
        text(_kron("New Line.loop bus1=n2 bus2=n4 linecode=main length=30 units=m")), 2, ("Line.loop", "closes a loop")
    ),
    "two sources": Case(text(_kron("New Vsource.two bus1=n4 basekv=0.416")), 2, ("Vsource.two", "exactly one Vsource")),
    "unsupported element": Case(
        text(_kron("New Generator.g1 bus1=n3 kV=0.416 kW=10")), 2, ("Generator.g1", "not supported")
    ),
    "voltage regulator": Case(
        text(_kron("New RegControl.reg1 transformer=tr winding=2 vreg=120")), 2, ("RegControl.reg1", "not supported")
    ),
    # --- lines
    "zero length": Case(
        text(_kron("New Line.x1 bus1=n4 bus2=x1 linecode=main length=0")), 2, ("Line.x1", "length must be positive")
    ),
    "negative length": Case(
        text(_kron("New Line.x1 bus1=n4 bus2=x1 linecode=main length=-3 units=m")),
        2,
        ("Line.x1", "length must be positive"),
    ),
    "zero impedance": Case(
        text(
            _kron(
                "New LineCode.z0 nphases=3 R1=0 X1=0 R0=0 X0=0 units=km normamps=100\n"
                "New Line.x1 bus1=n4 bus2=x1 linecode=z0 length=10"
            )
        ),
        2,
        ("Line.x1", "zero impedance"),
    ),
    "negative resistance": Case(
        text(
            _kron(
                "New LineCode.neg nphases=3 R1=-0.3 X1=0.07 R0=1 X0=0.1 C1=0 C0=0 "
                "units=km normamps=100\nNew Line.x1 bus1=n4 bus2=x1 linecode=neg length=10"
            )
        ),
        2,
        ("Line.x1", "resistance must be positive"),
    ),
    "line with zero ampacity": Case(
        text(_kron(f"{NO_AMPS} normamps=0\nNew Line.x1 bus1=n4 bus2=x1 linecode=bare length=10 units=m")),
        2,
        ("Line.x1", "no ampacity"),
    ),
    "line without ampacity": Case(
        text(_kron(f"{NO_AMPS}\nNew Line.x1 bus1=n4 bus2=x1 linecode=bare length=10 units=m")),
        2,
        ("Line.x1", "no ampacity", "400 A"),
    ),
    "line without ampacity or line code": Case(
        text(_kron("New Line.x1 bus1=n4 bus2=x1 r1=0.3 x1=0.07 r0=1 x0=0.1 c1=0 c0=0 length=0.01 units=km")),
        2,
        ("Line.x1", "no ampacity"),
    ),
    # --- loads and capacities
    "load on a phase its bus lacks": Case(
        text(
            _kron(
                "New LineCode.two nphases=2 R1=0.3 X1=0.07 R0=1 X0=0.1 units=km normamps=100\n"
                "New Line.x2 bus1=n4.1.2 bus2=x2.1.2 phases=2 linecode=two length=10 units=m\n"
                "New Load.bad bus1=x2.3 phases=1 kV=0.24 kW=1"
            )
        ),
        2,
        ("Load.bad", "node 3 of bus x2"),
    ),
    "two-phase delta load": Case(
        text(_kron("New Load.bad bus1=n4.1.2.3 phases=2 conn=delta kV=0.416 kW=1")),
        2,
        ("Load.bad", "2-phase delta load"),
    ),
    "negative capacity": Case(
        text(_kron("New Load.bad bus1=n4.1 phases=1 kV=0.24 XfkVA=-5 kW=1")),
        2,
        ("Load.bad", "negative connection capacity"),
    ),
    "missing capacity when XfkVA is compulsory": Case(
        text(_kron("New Load.nocap bus1=n4.2 phases=1 kV=0.24 kW=1")),
        2,
        ("Load.nocap", "XfkVA"),
        extra=lambda tmp, f: ["--default-capacity", "0"],
    ),
    "negative default capacity": Case(
        text(_kron()), 2, ("--default-capacity", "-1"), extra=lambda tmp, f: ["--default-capacity", "-1"]
    ),
    "empty feeder": Case(
        text("\n".join(line for line in _kron().splitlines() if not line.startswith("New Load"))), 2, ("no loads",)
    ),
    # --- CSV overrides and participant lists
    "capacity CSV names an unknown end-user": Case(
        text(_it()),
        2,
        ("caps.csv line 3", "end-user ghost", "not in feeder"),
        extra=csv("caps.csv", "end_user,capacity_kva\na1,5\nghost,7\n"),
    ),
    "capacity CSV with a negative capacity": Case(
        text(_it()),
        2,
        ("caps.csv line 2", "a1", "positive", "-5"),
        extra=csv("caps.csv", "end_user,capacity_kva\na1,-5\n"),
    ),
    "capacity CSV with text for a capacity": Case(
        text(_it()), 2, ("caps.csv line 2", "a1", "'lots'"), extra=csv("caps.csv", "end_user,capacity_kva\na1,lots\n")
    ),
    "capacity CSV with a missing capacity": Case(
        text(_it()),
        2,
        ("caps.csv line 3", "a2", "got nothing"),
        extra=csv("caps.csv", "end_user,capacity_kva\na1,5\na2,\n"),
    ),
    "capacity CSV with two capacities for one end-user": Case(
        text(_it()),
        2,
        ("caps.csv line 3", "a1", "two capacities"),
        extra=csv("caps.csv", "end_user,capacity_kva\na1,5\na1,6\n"),
    ),
    "capacity CSV without its columns": Case(
        text(_it()), 2, ("caps.csv", "end_user and capacity_kva"), extra=csv("caps.csv", "name,kva\na1,5\n")
    ),
    "capacity CSV that is empty": Case(text(_it()), 2, ("caps.csv", "cannot read CSV"), extra=csv("caps.csv", "")),
    "capacity CSV that does not exist": Case(
        text(_it()),
        2,
        ("nothere.csv", "cannot read CSV"),
        extra=lambda tmp, f: ["--capacities", str(tmp / "nothere.csv")],
    ),
    "participant list names an unknown end-user": Case(
        text(_it()), 2, ("p.csv", "end-user ghost"), extra=csv("p.csv", "end_user\na1\nghost\n", "--participants")
    ),
    # --- options
    "voltage limits the wrong way round": Case(
        text(_it()), 2, ("voltage limits", "1.2"), extra=lambda tmp, f: ["--vmin", "1.2"]
    ),
    "malformed Ipopt option": Case(
        text(_it()),
        2,
        ("--ipopt-option", "NAME=VALUE", "max_iter"),
        extra=lambda tmp, f: ["--ipopt-option", "max_iter"],
    ),
    # --- values that are not numbers (NaN, infinity) or not plausible, named with the value
    "NaN capacity in the file": Case(
        text(_kron("New Load.bad bus1=n4.1 phases=1 kV=0.24 XfkVA=NaN kW=1")),
        2,
        ("Master.dss line", "Load.bad", "XfkVA=NaN", "not a number"),
    ),
    "NaN power in the file": Case(
        text(_kron("New Load.bad bus1=n4.1 phases=1 kV=0.24 XfkVA=5 kW=NaN")),
        2,
        ("Master.dss line", "Load.bad", "kW=NaN"),
    ),
    "infinite length in the file": Case(
        text(_kron("New Line.x1 bus1=n4 bus2=x1 linecode=main length=inf")),
        2,
        ("Master.dss line", "Line.x1", "length=inf"),
    ),
    "transformer rated 0 kVA": Case(
        text(
            _kron(
                "New Transformer.t2 phases=3 windings=2 buses=[n4 x2] conns=[wye wye] kVs=[0.416 0.416] "
                "kVAs=[0 0] XHL=4\nNew Load.far bus1=x2.1 phases=1 kV=0.24 kW=1"
            )
        ),
        2,
        ("Transformer.t2", "kVA of winding 1 must be a positive number, got 0"),
    ),
    "--vmax inf": Case(
        text(_it()), 2, ("--vmax must be a finite number", "inf"), extra=lambda tmp, f: ["--vmax", "inf"]
    ),
    "--default-capacity inf": Case(
        text(_it()),
        2,
        ("--default-capacity must be a finite number",),
        extra=lambda tmp, f: ["--default-capacity", "inf"],
    ),
    "--seed -1": Case(
        text(_it()), 2, ("--seed must be 0 or a positive whole number, got -1",), extra=lambda tmp, f: ["--seed", "-1"]
    ),
    "capacity CSV with 1e300 kVA": Case(
        text(_it()),
        2,
        ("caps.csv line 2", "a1", "at most", "'1e300'"),
        extra=csv("caps.csv", "end_user,capacity_kva\na1,1e300\n"),
    ),
    "Ipopt option of the wrong type": Case(
        text(_it()),
        2,
        ("--ipopt-option max_iter=abc", "Integer"),
        extra=lambda tmp, f: ["--ipopt-option", "max_iter=abc"],
    ),
    "Ipopt option out of range": Case(
        text(_it()), 2, ("--ipopt-option tol=-1", "Number"), extra=lambda tmp, f: ["--ipopt-option", "tol=-1"]
    ),
    "unknown Ipopt option": Case(
        text(_it()),
        2,
        ("--ipopt-option nosuch", "not an Ipopt option"),
        extra=lambda tmp, f: ["--ipopt-option", "nosuch=1"],
    ),
    "unknown coordinate reference system": Case(
        text(_it()), 2, ("--crs", "not a coordinate reference system"), extra=lambda tmp, f: ["--crs", "EPSG:99999999"]
    ),
    "profile value of 1e300 kW": Case(
        text(_it()),
        2,
        ("p.csv line 2", "'1e300'"),
        extra=csv("p.csv", "timestamp,a1\n2024-01-01 00:00,1e300\n", "--profiles"),
    ),
    "whole-number timestamps": Case(
        text(_it()),
        2,
        ("p.csv line 2", "'0' is a number, not a date and time"),
        extra=csv("p.csv", "timestamp,a1\n0,1\n900,1\n", "--profiles"),
    ),
    "a duration that is not one": Case(
        text(_it()),
        2,
        ("--max-duration", "'abc'", "not a duration"),
        extra=lambda tmp, f: ["--profiles", "loadshapes", "--max-duration", "abc", "--out", str(tmp / "out")],
        command="activations",
    ),
    # --- output folders
    "output folder is a file": Case(text(_it()), 6, ("taken", "output folder cannot be written"), extra=out_is_a_file),
    "output folder inside a file": Case(
        text(_it()), 6, ("taken", "output folder cannot be written"), extra=out_inside_a_file
    ),
    "batch output folder is a file": Case(
        text(_it()), 6, ("taken", "output folder cannot be written"), extra=out_is_a_file, command="batch"
    ),
    "batch results folder cannot hold feeder results": Case(
        text(_it()), 7, ("1 failed", "results folder cannot be written"), extra=batch_results_blocked, command="batch"
    ),
    "classify a folder without results": Case(lambda tmp: tmp, 2, ("no feeder results",), command="classify"),
    # --- the other commands read feeders the same way
    "powerflow on a broken feeder": Case(
        text(_kron("New Line.x1 bus1=n4 bus2=x1 linecode=nope length=10")),
        2,
        ("Line.x1", 'LineCode object "nope"'),
        command="powerflow",
    ),
}


def _run(case: Case, tmp: Path):
    feeder = case.feeder(tmp)
    extra = case.extra(tmp, feeder)
    if case.command in ("envelopes", "batch") and "--out" not in extra:
        extra += ["--out", str(tmp / "out")]
    if case.command == "envelopes":
        extra += ["--method", "optimal", "--direction", "import", "--format", "csv"]
    return runner.invoke(app, [case.command, str(feeder), *extra])


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path):
    case = CASES[name]
    res = _run(case, tmp_path)
    assert res.exit_code == case.code, res.output
    message = error_lines(res.stderr)
    assert "Traceback" not in res.output
    lines = message.splitlines()
    if case.command != "batch" or case.code != 7:
        assert len(lines) == 1, message  # one line (a batch lists one line per failed feeder)
        assert lines[0].startswith("error: ")
    for part in case.says:
        assert part in message, f"{part!r} not in {message!r}"
    assert not list(tmp_path.rglob("envelopes.csv"))  # nothing published


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads and writes anything")
def test_unreadable_feeder_and_read_only_output_folder(tmp_path):
    feeder = text(_it())(tmp_path)
    feeder.chmod(0)
    res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "cannot be read" in res.stderr and error_lines(res.stderr).count("\n") == 0
    feeder.chmod(0o644)
    (tmp_path / "ro").mkdir(mode=0o555)
    res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(tmp_path / "ro")])
    assert res.exit_code == 6 and "output folder cannot be written" in res.stderr
    assert res.stderr.strip().count("\n") == 0


def test_debug_shows_the_traceback(tmp_path):
    feeder = text(_kron("New Line.x1 bus1=n4 bus2=x1 linecode=nope length=10"))(tmp_path)
    quiet = subprocess.run(
        [str(NFCA), "envelopes", str(feeder), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120
    )
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert error_lines(quiet.stderr).count("\n") == 0 and 'LineCode object "nope"' in quiet.stderr
    loud = subprocess.run(
        [str(NFCA), "--debug", "envelopes", str(feeder), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "FeederError" in loud.stderr


def test_missing_capacity_takes_the_default(tmp_path):
    """Not an error: a load without XfkVA gets --default-capacity (README, "What goes in")."""
    feeder = text(_it("New Load.nocap bus1=cp3.1.2 phases=1 conn=delta kV=0.23 kW=1"))(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["envelopes", str(feeder), "--out", str(out), "--format", "csv", "--default-capacity", "4.6"]
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "envelopes.csv")
    assert set(table.loc[table["end_user"] == "nocap", "capacity_kva"]) == {4.6}


def test_non_ascii_names_in_utf8_work(tmp_path):
    body = _it(NOT_UTF8.replace("x1", "straße"))
    feeder = text(body)(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(out), "--format", "csv"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "envelopes.csv", encoding="utf-8")
    assert {"café"} <= set(table["end_user"]) and "straße" in set(table["bus"])


def large_feeder_text(n_main: int = 500, branch: int = 10) -> str:
    """n_main x branch + 1 buses: a main cable with a `branch`-segment service chain at every joint,
    an end-user at the end of every fifth chain."""
    lines = [
        HEADER.format(name="large", pu=1.03, kv=0.416, kva=800),
        "New LineCode.main nphases=3 R1=0.05 X1=0.02 R0=0.2 X0=0.05 C1=0 C0=0 units=km normamps=800",
        "New LineCode.svc nphases=3 R1=0.5 X1=0.05 R0=0.6 X0=0.05 C1=0 C0=0 units=km normamps=100",
    ]
    prev = "lv"
    for k in range(1, n_main + 1):
        lines.append(f"New Line.m{k} bus1={prev} bus2=n{k} linecode=main length=2 units=m")
        at = f"n{k}"
        for j in range(1, branch):
            lines.append(f"New Line.b{k}_{j} bus1={at} bus2=b{k}_{j} linecode=svc length=1 units=m")
            at = f"b{k}_{j}"
        if k % 5 == 0:
            lines.append(f"New Load.u{k} bus1={at}.{k // 5 % 3 + 1} phases=1 kV=0.24 XfkVA=5 kW=1 model=1")
        prev = f"n{k}"
    lines.append("Set VoltageBases=[11 0.416]\nCalcVoltageBases")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_very_large_feeder_is_handled(tmp_path):
    """5,001 buses, 100 end-users: read, reduced exactly, solved and verified on the full feeder
    (its time is a benchmark's business, not a test's)."""
    feeder = write_dss(tmp_path, large_feeder_text())
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(feeder),
            "--out",
            str(out),
            "--format",
            "json",
            "--method",
            "optimal",
            "--direction",
            "import",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = pd.read_json(out / "summary.json", typ="series")
    assert summary["end_users"] == 100 and summary["verified"]


@pytest.mark.parametrize("command", [["feeders", "sibelga", "--seed", "1"], ["feeders", "ieee-eulv"]])
def test_feeder_builders_name_an_unwritable_output_folder(command, tmp_path):
    """The mounted sub-commands share the CLI's error convention: one line, exit 6, no traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(app, [*command, "--out", str(blocker / "grid")])
    assert res.exit_code == 6, res.output
    assert "Traceback" not in res.output and "output folder cannot be written" in res.output
    assert str(blocker / "grid") in res.output
