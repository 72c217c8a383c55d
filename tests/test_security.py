"""A feeder file never runs programs or writes files, and every fault ends in a clear state.

Feeder files are untrusted (GIS exports, contractors' studies): nfca reads them itself and hands
OpenDSS only allow-listed commands, in an engine process of its own; a run's outputs are replaced
as a whole; signals stop the work cleanly.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app, one_line
from nfca.engine import powerflows, read, read_feeder
from nfca.engine.script import parameters, read_script
from nfca.errors import FeederError
from tests.feeder_texts import four_wire_kron_text, three_wire_text, write_dss

runner = CliRunner()
NFCA = Path(sys.executable).parent / "nfca"


@pytest.fixture(scope="module")
def vocabulary():
    """OpenDSS's own command and option lists (the engine's, in its order)."""
    import opendssdirect

    from nfca.engine.opendss import vocabulary

    return vocabulary(opendssdirect)


def _kron(extra: str = "", n: int = 3) -> str:
    return four_wire_kron_text(n_segments=n).replace("Set VoltageBases", extra + "\nSet VoltageBases")


# ----------------------------------------------------------------------------- refused commands

REFUSED = {  # command -> what the message says it would do
    "Show Voltages": "shows or plots",
    "sh voltages": "shows or plots",
    '"Show" voltages': "shows or plots",
    "(show) voltages": "shows or plots",
    "Plot circuit": "shows or plots",
    "Visualize currents Line.m1": "shows",
    "Summary": "shows",
    "Export Voltages /tmp/nfca-x.csv": "writes files",
    "exp voltages": "writes files",
    "Save Circuit Dir=/tmp/nfca-x": "writes files",
    "Dump Line.m1": "writes files",
    "ExportOverloads": "writes",
    "CloseDI": "writes files",
    "Obfuscate": "writes files",
    "FileEdit x.txt": "runs a program",
    "DOScmd touch x": "runs a program",
    "dos touch x": "runs a program",
    "CD /tmp": "changes the working folder",
    "Set Editor=/bin/sh": "runs a program",
    "set ed=/bin/sh": "runs a program",
    "Set DataPath=/tmp": "changes the working folder",
    "Set ShowExport=yes": "writes files",
    "Set DemandInterval=true": "writes files",
    "Set Recorder=yes": "writes files",
    "Set Log=yes": "writes files",
    "Set OverloadReport=yes": "writes files",
    "Set mode=snap editor=/bin/sh": "runs a program",
    "Get editor": "not allowed",
    "ClearAll": "not allowed",
    "Clear all": "not allowed",
    "var @x=show": "not allowed",
    "Help": "shows",
    "Reduce": "not allowed",
    "Set DefaultEditor=/bin/sh": "unknown option",
}


@pytest.mark.parametrize("command", list(REFUSED))
def test_every_command_that_shows_writes_or_runs_is_refused(command, tmp_path, vocabulary):
    feeder = write_dss(tmp_path, _kron(command))
    line = _kron(command).splitlines().index(command) + 1
    with pytest.raises(FeederError) as err:
        read_script(feeder, *vocabulary)
    message = str(err.value)
    assert message.startswith(f"{feeder} line {line}: "), message
    assert REFUSED[command] in message


def test_every_opendss_command_off_the_allow_list_is_refused(tmp_path, vocabulary):
    """Not a list of known-bad commands: every verb of the engine's own list that is not allowed."""
    from nfca.engine.script import ALLOWED_COMMANDS

    commands, _ = vocabulary
    refused = [c for c in commands if c not in ALLOWED_COMMANDS | {"redirect", "compile"}]
    assert {"show", "export", "save", "plot", "doscmd", "fileedit", "cd", "visualize"} <= set(refused)
    for verb in refused:
        feeder = write_dss(tmp_path, _kron(f"{verb} x"))
        with pytest.raises(FeederError, match=r"line \d+: command .* is not allowed in a feeder file"):
            read_script(feeder, *vocabulary)


def test_harmless_solution_commands_stay_allowed(tmp_path, vocabulary):
    extra = "Set Mode=Snap\nSet maxiter=50 tolerance=1e-6\nCalcVoltageBases\nSolve\nSet Mode=Snap\nSolve"
    commands = read_script(write_dss(tmp_path, _kron(extra)), *vocabulary)
    assert {"solve", "calcvoltagebases", "set", "new"} <= {c.verb for c in commands}


def test_a_refused_feeder_runs_nothing_and_writes_nothing(tmp_path):
    """The issue's exploit: an editor set to a script, then a command that opens the editor."""
    marker = tmp_path / "ran"
    script = tmp_path / "x.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    for evil in (
        f"Set Editor={script}\nShow Voltages",
        f"Export Voltages {tmp_path / 'exported.csv'}",
        f"Save Circuit Dir={tmp_path / 'saved'}",
    ):
        feeder = write_dss(tmp_path, _kron(evil))
        res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(tmp_path / "out"), "--format", "csv"])
        assert res.exit_code == 2 and "is not allowed in a feeder file" in res.stderr, res.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "x.sh"]  # nothing ran, nothing written


def test_the_engine_itself_runs_no_editor_and_writes_only_in_its_own_folder(tmp_path):
    """Defence in depth: even a command that got past the allow-list cannot start a program or
    write beside the feeder (the engine's switches and its private working folder)."""
    feeder = write_dss(tmp_path, _kron())
    marker = tmp_path / "ran"
    script = tmp_path / "x.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    code = textwrap.dedent(f"""
        from pathlib import Path
        from nfca.engine import opendss
        dss = opendss.start(Path({str(work)!r}))
        opendss.compile_feeder(dss, Path({str(feeder)!r}), Path("Master.dss"))
        for command in ("Set Editor={script}", "Show Voltages", "FileEdit {feeder}", "Export Voltages",
                        "DOScmd touch {marker}", "CD {tmp_path}", "Export Currents"):
            try:
                opendss.run_command(dss, command)
            except Exception:
                pass
    """)
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "work", "x.sh"]
    assert all(p.parent == work for p in work.rglob("*"))


# ----------------------------------------------------------------------------- how lines are read


def test_parameters_split_as_opendss_does():
    assert parameters("New Line.a bus1=x length=5 !c") == [("", "New"), ("", "Line.a"), ("bus1", "x"), ("length", "5")]
    assert parameters("New LoadShape.s mult=(file=a b.csv) //c") == [
        ("", "New"),
        ("", "LoadShape.s"),
        ("mult", "file=a b.csv"),
    ]
    assert parameters("~ rmatrix=[0.3 | 0 0.3]") == [("", "~"), ("rmatrix", "0.3 | 0 0.3")]
    assert parameters("bus1 = x , y") == [("bus1", "x"), ("", "y")]
    assert parameters("Show!x") == [("", "Show")]
    assert parameters("! all comment") == parameters("// all comment") == []


def test_comments_continuations_and_quotes(tmp_path):
    """The same feeder written with every comment form, `~`/`More` continuations and quotes reads
    the same as the plain one; a command inside a comment does not run."""
    plain = four_wire_kron_text(n_segments=3)
    dressed = plain.replace(
        "New LineCode.main nphases=3 R1=0.32 X1=0.075",
        "/* a block comment\nShow Voltages\n*/\n"
        "New LineCode.main nphases=3 ! the main cable\n~ R1=0.32 X1=0.075 // ohm/km\nMore",
    )
    dressed = dressed.replace("New Line.m1 bus1=lv bus2=n1", 'New "Line.m1" bus1="lv" bus2=(n1)')
    assert dressed != plain and "Show Voltages" in dressed
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    f1, f2 = read_feeder(write_dss(a, plain)), read_feeder(write_dss(b, dressed))
    assert [ln.name for ln in f1.lines] == [ln.name for ln in f2.lines]
    for l1, l2 in zip(f1.lines, f2.lines):
        np.testing.assert_allclose(l1.z_ohm, l2.z_ohm)


def test_data_files_are_read_from_the_feeder_folder(tmp_path):
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "res.csv").write_text("0.5\n1\n1.5\n-0.5\n")
    (tmp_path / "Shapes.dss").write_text("New LoadShape.res npts=4 minterval=15 mult=(file=shapes/res.csv)\n")
    text = four_wire_kron_text(n_segments=3) + "Redirect Shapes.dss\nEdit Load.u1 daily=res\n"
    feeder, shapes = read(write_dss(tmp_path, text))
    np.testing.assert_allclose(shapes["u1"].kw, [2.0, 4.0, 6.0, -2.0])
    (tmp_path / "shapes" / "res.csv").unlink()
    with pytest.raises(
        FeederError,
        match=r"Shapes.dss line 1 \(redirected from Master.dss line \d+\): data file shapes/res.csv not found",
    ):
        read(tmp_path / "Master.dss")


# ----------------------------------------------------------------------------- Redirect loops, crashes


def test_redirect_loops_are_named_with_file_and_line(tmp_path):
    (tmp_path / "B.dss").write_text("! b\nRedirect Master.dss\n")
    feeder = write_dss(tmp_path, _kron("Redirect B.dss"))
    res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "B.dss line 2 (redirected from Master.dss line" in res.stderr
    assert "Redirect loop: Master.dss -> B.dss -> Master.dss" in res.stderr
    (tmp_path / "Self.dss").write_text("Redirect Self.dss\n")
    with pytest.raises(FeederError, match=r"Self.dss line 1 .*Redirect loop: Self.dss -> Self.dss"):
        read(write_dss(tmp_path, _kron("Redirect Self.dss")))


def test_files_outside_the_feeder_folder_are_never_quoted(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:hunter2:0:0\n")
    (tmp_path / "feeder").mkdir()
    feeder = write_dss(tmp_path / "feeder", _kron(f"Redirect {secret}"))
    res = runner.invoke(app, ["powerflow", str(feeder)])
    assert res.exit_code == 2 and "secret.txt line 1" in res.stderr, res.output
    assert "hunter2" not in res.output and "0:0" not in res.output


def test_an_engine_crash_is_one_line_naming_the_feeder(tmp_path, monkeypatch):
    """OpenDSS dying (here killed by SIGSEGV as a malformed file would kill it) ends its engine
    process only: one line, exit 2, naming the feeder; the next read starts a new engine."""
    from nfca.engine import session

    feeder = write_dss(tmp_path, _kron())
    start = session.Engine.read

    def crash(self, path, *args):
        self.process.send_signal(signal.SIGSEGV)
        self.process.wait()
        return start(self, path, *args)

    monkeypatch.setattr(session.Engine, "read", crash)
    res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {feeder}: the OpenDSS engine crashed while reading the feeder (killed by SIGSEGV); the feeder file "
        "is not usable as it is"
    )
    monkeypatch.undo()
    f = read_feeder(feeder)
    engine = session._engines[session._key(feeder)]
    engine.process.kill()
    engine.process.wait()
    assert powerflows(f, [{}])[0].converged  # a dead engine is replaced, the feeder compiled again


def test_the_engine_runs_no_code_from_the_current_folder(tmp_path, monkeypatch):
    """Run from a folder that holds an `nfca` package (an unpacked archive, say), the engine still
    runs the installed nfca: the current folder is not put first on its sys.path (`python -P`)."""
    from nfca.engine import close_all

    marker = tmp_path / "ran"
    for sub in ("nfca", "nfca/engine"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "__init__.py").write_text("")
    (tmp_path / "nfca" / "engine" / "worker.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    feeder = write_dss(tmp_path, _kron(n=2))
    close_all()  # engines started elsewhere would not show it
    monkeypatch.chdir(tmp_path)
    try:
        assert powerflows(read_feeder(feeder), [{}])[0].converged
    finally:
        close_all()
    assert not marker.exists()


def test_a_closed_engine_leaves_no_working_folder(tmp_path, monkeypatch):
    """An engine asked to stop removes its private working folder (it used to be killed, and
    every run left an nfca-engine-* folder in the temporary directory)."""
    from nfca.engine import close_all

    temp = tmp_path / "tmp"
    temp.mkdir()
    close_all()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the engines started from now make their folder
    feeder = read_feeder(write_dss(tmp_path, _kron(n=2)))
    assert powerflows(feeder, [{}])[0].converged
    assert [p.name.startswith("nfca-engine-") for p in temp.iterdir()] == [True]
    close_all()
    assert list(temp.iterdir()) == []


def test_a_process_keeps_few_engines(tmp_path):
    """Reading many feeders (and failing on some) keeps at most MAX_ENGINES engines and one spare."""
    from nfca.engine import prestart, session

    for k in range(5):
        folder = tmp_path / f"f{k}"
        folder.mkdir()
        prestart()
        read(write_dss(folder, _kron(n=2)))
        with pytest.raises(FeederError):
            read(write_dss(folder, _kron("Show voltages", n=2), "Bad.dss"))
    alive = [e for e in [*session._engines.values(), *session._spare] if e.alive()]
    assert len(alive) <= session.MAX_ENGINES + 1


def test_a_read_started_early_is_the_read_asked_for(tmp_path):
    """`prestart(path)` starts reading while the caller imports; `read` takes that reply only when
    it asks for the same file and options, and a started read of another file, or of a file that
    cannot be read, changes nothing in what `read` returns or raises."""
    from nfca.engine import close_all, prestart, session

    def _same(a, b) -> bool:
        return pickle.dumps(a) == pickle.dumps(b)

    good = write_dss(tmp_path, _kron(n=2))
    other = write_dss(tmp_path, _kron(n=3), "Other.dss")
    bad = write_dss(tmp_path, _kron("Show voltages", n=2), "Bad.dss")
    close_all()
    fresh = read_feeder(good)
    close_all()
    prestart(good)
    started = session._spare[-1]
    assert _same(read_feeder(good), fresh)
    assert session._engines[session._key(good)] is started  # the engine that began it, no other
    close_all()
    prestart(other)  # not what read asks for: its reply is dropped
    assert _same(read_feeder(good), fresh)
    assert len(read_feeder(other).lines) != len(fresh.lines)  # the other file's own feeder
    close_all()
    prestart(bad)
    with pytest.raises(FeederError, match="shows or plots"):
        read_feeder(bad)
    assert _same(read_feeder(good), fresh)  # the engine that refused the file reads the next one
    close_all()


def test_power_flows_use_the_feeder_given_not_the_file(tmp_path):
    from dataclasses import replace

    feeder = read_feeder(write_dss(tmp_path, _kron()))
    doubled = replace(feeder, end_users=tuple(replace(u, p_kw=2 * u.p_kw) for u in feeder.end_users))
    explicit = {u.name: (2 * u.p_kw, u.q_kvar) for u in feeder.end_users}
    a, b, c = powerflows(doubled, [{}, explicit]) + powerflows(feeder, [{}])
    assert a.voltages == pytest.approx(b.voltages) and a.voltages != pytest.approx(c.voltages)


# ----------------------------------------------------------------------------- feeder values


def test_disabled_elements_are_ignored_with_a_notice(tmp_path):
    extra = (
        "New Line.dead bus1=n3 bus2=dd linecode=svc length=3 units=m enabled=no\n"
        "New Load.off bus1=dd.1 phases=1 kV=0.24 kW=1 enabled=no"
    )
    feeder = write_dss(tmp_path, _kron(extra))
    res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(tmp_path / "out"), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "notice: " in res.stderr and "2 disabled element(s) ignored" in res.stderr
    table = pd.read_csv(tmp_path / "out" / "envelopes.csv")
    assert "off" not in set(table["end_user"])


def test_names_that_look_missing_are_names(tmp_path):
    names = ["na", "null", "none", "nan", "n/a"]
    loads = "\n".join(
        f"New Load.{n} bus1=cp{k % 3 + 1}.{k % 3 + 1} phases=1 kV=0.24 XfkVA=5 kW=1 model=1"
        for k, n in enumerate(names)
    )
    feeder = write_dss(tmp_path, _kron(loads))
    (tmp_path / "p.csv").write_text("end_user\nNA\nnull\nNone\nnan\nN/A\n")
    (tmp_path / "caps.csv").write_text("end_user,capacity_kva\nNA,4\nnull,4\nNone,4\nnan,4\nN/A,4\n")
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(feeder),
            "--out",
            str(out),
            "--participants",
            str(tmp_path / "p.csv"),
            "--capacities",
            str(tmp_path / "caps.csv"),
            "--format",
            "csv",
            "--format",
            "json",
            "--method",
            "fair",
            "--direction",
            "import",
        ],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "envelopes.csv", keep_default_na=False)
    mine = table[table["end_user"].isin(names)]
    assert len(mine) == 5 and mine["participant"].all() and set(mine["capacity_kva"]) == {4.0}
    assert json.loads((out / "summary.json").read_text())["participants"] == 5


def test_timestamps_across_a_daylight_saving_change(tmp_path):
    """Offsets that change at the clock change are read as UTC: regular, no pandas warning."""
    from nfca.studies.profiles import read_csv

    stamps = [
        "2024-03-31T01:30:00+01:00",
        "2024-03-31T01:45:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:15:00+02:00",
    ]
    (tmp_path / "p.csv").write_text("timestamp,u1\n" + "".join(f"{t},1.5\n" for t in stamps))
    prof = read_csv(tmp_path / "p.csv")
    assert prof.interval == pd.Timedelta(minutes=15) and str(prof.timestamps.tz) == "UTC"


# ----------------------------------------------------------------------------- messages


def test_messages_are_printed_as_they_are(tmp_path):
    feeder = write_dss(tmp_path, _kron("Nwe Line.[bold]x:x: bus1=n1 bus2=\x1b[31mred"))
    res = runner.invoke(app, ["powerflow", str(feeder)])
    assert res.exit_code == 2
    assert "[bold]x:x:" in res.stderr and "❌" not in res.stderr and "\x1b" not in res.stderr


def test_a_huge_bad_line_gives_a_short_message_keeping_file_and_line(tmp_path):
    feeder = write_dss(tmp_path, _kron("New Line.x1 bus1=n1 bus2=x1 linecode=main length=" + "9" * 5_000_000 + "x"))
    res = runner.invoke(app, ["powerflow", str(feeder)])
    assert res.exit_code == 2
    line = res.stderr.strip()
    assert len(line) <= 500 and line.startswith(f"error: {feeder} line ") and "\n" not in line


def test_one_line_keeps_the_location_and_the_end():
    text = "/some/where/Master.dss line 12: " + "x" * 1000 + " (OpenDSS error 110)"
    short = one_line(text)
    assert len(short) <= 250 and short.startswith("/some/where/Master.dss line 12: ")
    assert short.endswith("(OpenDSS error 110)")
    many = "/some/where/Master.dss line 12: " + "word " * 1000 + "the end"
    assert len(one_line(many)) <= 500 and one_line(many).startswith("/some/where/Master.dss line 12: word")
    assert one_line(many).endswith("the end")
    assert one_line("a\nb\tc\x1b[0m") == "a b c\\x1b[0m"


# ----------------------------------------------------------------------------- outputs


def test_a_run_replaces_the_previous_run_as_a_whole(tmp_path):
    feeder = write_dss(tmp_path, three_wire_text(n_segments=3))
    out = tmp_path / "out"
    base = ["envelopes", str(feeder), "--out", str(out), "--method", "fair", "--direction", "import"]
    assert runner.invoke(app, [*base, "--format", "csv", "--format", "json"]).exit_code == 0
    assert runner.invoke(app, [*base, "--format", "csv"]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [".nfca-run", "envelopes.csv"]  # no summary.json of run 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "out"]


def test_a_run_folder_is_swapped_in_whole_or_not_at_all(tmp_path):
    from nfca.io.outputs import run_folder

    real = tmp_path / "real"
    with run_folder(real) as folder:
        (folder / "a.txt").write_text("run 1")
    (tmp_path / "link").symlink_to(real)
    with run_folder(tmp_path / "link") as folder:  # a link: the folder it points to is replaced
        (folder / "b.txt").write_text("run 2")
    assert (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in real.iterdir()) == [".nfca-run", "b.txt"]
    with pytest.raises(RuntimeError), run_folder(real) as folder:
        (folder / "c.txt").write_text("run 3, failing")
        raise RuntimeError("failed half-way")
    assert sorted(p.name for p in real.iterdir()) == [".nfca-run", "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_folder_that_is_not_a_run_is_not_replaced(tmp_path):
    feeder = write_dss(tmp_path, three_wire_text(n_segments=3))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    res = runner.invoke(app, ["envelopes", str(feeder), "--out", str(tmp_path / "mine")])
    assert res.exit_code == 6 and "not an nfca run" in res.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_a_full_disk_is_exit_6_with_the_reason(tmp_path):
    """A file-size limit (as `ulimit -f`) makes writing fail with EFBIG: exit 6, never a solver failure."""
    import resource

    feeder = write_dss(tmp_path, three_wire_text(n_segments=3))

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    res = subprocess.run(
        [
            str(NFCA),
            "envelopes",
            str(feeder),
            "--out",
            str(tmp_path / "out"),
            "--method",
            "fair",
            "--direction",
            "import",
            "--format",
            "png",
        ],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 6, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "cannot be written (File too large); nothing was written" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss"]


# ----------------------------------------------------------------------------- signals


def _slow_feeder(tmp_path: Path) -> Path:
    return write_dss(tmp_path, three_wire_text(n_segments=200))  # seconds of solving


def _wait_for(predicate, proc, timeout=120.0):
    t0 = time.monotonic()
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_writes_nothing(tmp_path, sig, code):
    feeder = _slow_feeder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".nfca-run").write_text("{}\n")
    (out / "envelopes.csv").write_text("the previous run\n")
    proc = subprocess.Popen(
        [str(NFCA), "envelopes", str(feeder), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: any(p.name.startswith(".out.nfca-") for p in tmp_path.iterdir()), proc)
        time.sleep(0.5)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted; nothing was written"
    assert (out / "envelopes.csv").read_text() == "the previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "out"]
    _assert_group_gone(proc.pid)


@pytest.mark.slow
def test_a_killed_run_leaves_nothing_after_the_next_run(tmp_path):
    feeder = _slow_feeder(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [str(NFCA), "envelopes", str(feeder), "--out", str(out), "--format", "csv"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for(lambda: any(p.name.startswith(".out.nfca-") for p in tmp_path.iterdir()), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    _assert_group_gone(proc.pid)
    small = write_dss(tmp_path, three_wire_text(n_segments=3), "Small.dss")
    res = runner.invoke(app, ["envelopes", str(small), "--out", str(out), "--format", "csv", "--method", "fair"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "Small.dss", "out"]


def _assert_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """No process of the run's group is left (no orphaned worker or engine)."""
    t0 = time.monotonic()
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() - t0 < timeout, "processes of the run are still alive"
        time.sleep(0.1)


@pytest.fixture
def grid(tmp_path):
    root = tmp_path / "grid"
    for k in range(6):
        write_dss(_mkdir(root / f"f{k}"), three_wire_text(n_segments=3 + k % 3, seg_m=15 + 3 * k))
    return root


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


@pytest.mark.slow
def test_sigterm_stops_a_batch_and_its_workers(grid, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [str(NFCA), "batch", str(grid), "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: any((out / "feeders").glob("*/.nfca-complete")), proc, timeout=180)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted; ") and last.endswith("feeder(s) finished, rerun to resume"), last
    assert stopped_s < 20  # pending feeders cancelled, workers stopped, not computed to the end
    _assert_group_gone(proc.pid)
    assert not (out / ".nfca-work").exists() or not any((out / ".nfca-work").iterdir())
    rerun = subprocess.run(
        [str(NFCA), "batch", str(grid), "--out", str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in (out / "feeders").iterdir()) == [f"f{k}" for k in range(6)]


_KILLED_WORKER = """
import os, signal, sys
import multiprocessing as mp

def worker():
    lock = mp.get_context("spawn").Lock()  # as Pyomo makes one at import
    os.kill(os.getpid(), signal.SIGKILL)  # a worker that had to be killed

if __name__ == "__main__":
    if sys.argv[1] == "quiet":
        from nfca.studies.batch import quiet_resource_tracker

        quiet_resource_tracker()
    ctx = mp.get_context("spawn")
    queue_lock = ctx.Lock()  # the pool's queues start the tracker
    p = ctx.Process(target=worker)
    p.start()
    p.join()
    print("interrupted")
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_a_killed_worker_leaves_no_warning_after_the_last_line(tmp_path, quiet):
    script = tmp_path / "batch_like.py"
    script.write_text(_KILLED_WORKER)
    run = subprocess.run(
        [sys.executable, str(script), "quiet" if quiet else "plain"], capture_output=True, text=True, timeout=60
    )
    assert run.stdout.strip() == "interrupted"
    assert ("leaked semaphore" in run.stderr) is not quiet, run.stderr  # plain: the case is real


@pytest.mark.slow
def test_damaged_results_are_recomputed_and_names_are_never_temporary(tmp_path):
    root = tmp_path / "grid"
    for name in ("a", ".hidden-1", "b"):
        write_dss(_mkdir(root / name), three_wire_text(n_segments=3))
    out = tmp_path / "results"
    first = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1"])
    assert first.exit_code == 0, first.output
    feeders = out / "feeders"
    assert sorted(p.name for p in feeders.iterdir()) == [".hidden-1", "a", "b"]
    summary = (feeders / "a" / "summary.json").read_text()
    (feeders / "a" / "summary.json").write_text(summary[: len(summary) // 2])  # truncated
    (feeders / "b" / "envelopes.csv").unlink()  # missing
    kept = (feeders / ".hidden-1" / "summary.json").stat().st_mtime_ns
    rerun = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1"])
    assert rerun.exit_code == 0, rerun.output
    assert "2 computed, 1 already done, 0 failed" in " ".join(rerun.stderr.split())
    assert json.loads((feeders / "a" / "summary.json").read_text())["verified"]
    assert (feeders / "b" / "envelopes.csv").is_file()
    assert (feeders / ".hidden-1" / "summary.json").stat().st_mtime_ns == kept
    assert sorted(pd.read_csv(out / "feeder_types.csv")["feeder"]) == [".hidden-1", "a", "b"]


@pytest.mark.slow
def test_in_a_batch_only_the_guilty_feeder_fails(tmp_path):
    root = tmp_path / "grid"
    write_dss(_mkdir(root / "good"), three_wire_text(n_segments=3))
    loop = _mkdir(root / "loop")
    (loop / "B.dss").write_text("Redirect Master.dss\n")
    write_dss(loop, _kron("Redirect B.dss"))
    out = tmp_path / "results"
    res = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 7, res.output
    assert "1 computed, 0 already done, 1 failed" in " ".join(res.stderr.split())
    assert "failed loop: " in res.stderr and "Redirect loop: Master.dss -> B.dss -> Master.dss" in res.stderr
    assert sorted(p.name for p in (out / "feeders").iterdir()) == ["good"]
