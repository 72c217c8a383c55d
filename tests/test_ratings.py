"""Line ampacities where the feeder file has none: one error naming the line codes, or an explicit
table / default, each said in a notice (nfca.model.ratings, read by nfca.engine)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from cli import app
from nfca.engine import read_feeder
from nfca.errors import FeederError, InputError
from nfca.model.ratings import AmpacityRules, LineRating, read_ampacity_table, resolve_ampacities
from nfca.studies.validation import compare_powerflow
from tests.feeder_texts import export_text, write_dss
from tests.helpers import error_lines

runner = CliRunner()
CODES = {"al150": 275.0, "al50": 140.0, "cu16": 90.0}  # the export's cable types


@pytest.fixture
def export(tmp_path):
    """The GIS export: no normamps anywhere (but voltage bases, to test one thing at a time)."""
    return write_dss(tmp_path, export_text(voltage_bases=True))


def test_one_error_lists_the_line_codes_without_ampacity(export):
    with pytest.raises(FeederError) as err:
        read_feeder(export)
    message = str(err.value)
    assert message.startswith("no ampacity (normamps) for 13 of 13 lines, of 3 line code(s)")
    assert "cu16: 6 lines, al150: 3 lines, al50: 3 lines, 1 line without a line code" in message
    assert "--ampacity CSV" in message and "--default-ampacity" in message and "400 A" in message


def test_default_ampacity_is_an_explicit_opt_in_and_said(export):
    f = read_feeder(export, ampacity=AmpacityRules(default_a=200))
    assert {line.ampacity_a for line in f.lines} == {200}
    (notice,) = [n for n in f.notices if n.kind == "ampacity_defaulted"]
    assert notice.level == "warning" and notice.data["lines"] == 13 and notice.data["ampacity_a"] == 200
    assert notice.data["linecodes"] == {"": 1, "al150": 3, "al50": 3, "cu16": 6}


def test_ampacity_table_by_line_code_and_by_line(export, tmp_path):
    table = tmp_path / "cables.csv"
    rows = [f"{code},,{amps}" for code, amps in CODES.items()] + ["nya2x,,35", ",bare,90", ",m1,250"]
    table.write_text("linecode,line,amps\n" + "\n".join(rows) + "\n")
    f = read_feeder(export, ampacity=read_ampacity_table(table))
    amps = {line.name: line.ampacity_a for line in f.lines}
    assert amps["m1"] == 250 and amps["m2"] == 275 and amps["m6"] == 140 and amps["s3"] == 90 and amps["bare"] == 90
    (notice,) = [n for n in f.notices if n.kind == "ampacity_from_table"]
    assert notice.data["lines"] == 13 and str(table) in notice.message
    assert not [n for n in f.notices if n.kind == "ampacity_defaulted"]


def test_the_table_wins_over_the_file_and_the_default_fills_the_rest(tmp_path):
    path = write_dss(tmp_path, export_text(voltage_bases=True, normamps=True))
    (tmp_path / "t.csv").write_text("linecode,amps\nal150,300\n")
    f = read_feeder(path, ampacity=read_ampacity_table(tmp_path / "t.csv", default_a=50))
    amps = {line.name: line.ampacity_a for line in f.lines}
    assert amps["m1"] == 300 and amps["m5"] == 140 and amps["s1"] == 90  # the file's normamps elsewhere
    assert [n.data["over_file"] for n in f.notices if n.kind == "ampacity_from_table"] == [3]
    assert not [n for n in f.notices if n.kind == "ampacity_defaulted"]  # no line lacked one


@pytest.mark.parametrize(
    "body, says",
    [
        ("linecode,amps\nal150,lots\n", "line 2: amps of linecode al150 must be a positive number, got 'lots'"),
        ("linecode,amps\nal150,-5\n", "line 2: amps of linecode al150"),
        ("linecode,amps\nal150,200\nAL150,250\n", "line 3: linecode al150 is given two ampacities"),
        ("code,amps\nal150,200\n", "needs columns linecode,amps or line,amps"),
        ("linecode,line,amps\nal150,m1,200\n", "line 2: give either a linecode or a line, got linecode and line"),
    ],
)
def test_bad_ampacity_tables_name_the_row(tmp_path, body, says):
    (tmp_path / "t.csv").write_text(body)
    with pytest.raises(InputError, match="t.csv"):
        read_ampacity_table(tmp_path / "t.csv")
    with pytest.raises(InputError) as err:
        read_ampacity_table(tmp_path / "t.csv")
    assert says in str(err.value)


def test_a_line_the_feeder_does_not_have_is_refused(export, tmp_path):
    (tmp_path / "t.csv").write_text("line,amps\nghost,100\n")
    with pytest.raises(InputError, match="line ghost is not in the feeder"):
        read_feeder(export, ampacity=read_ampacity_table(tmp_path / "t.csv", default_a=100))


def test_switches_and_unrated_power_flow_lines():
    lines = [LineRating("a", "c1", None), LineRating("sw", "", None, rated=False)]
    amps, notices = resolve_ampacities(lines, AmpacityRules(required=False))
    assert amps == {"a": math.inf, "sw": math.inf} and notices == ()
    with pytest.raises(FeederError, match=r"^Line\.a: no ampacity: set normamps on the line or its line code c1"):
        resolve_ampacities(lines, AmpacityRules())
    with pytest.raises(InputError, match="--default-ampacity must be a positive"):
        AmpacityRules(default_a=0)


def test_powerflow_needs_no_ampacity(export):
    report = compare_powerflow(export)
    assert report["max_abs_dv_pu"] < 1e-6 and report["opendss_converged"]
    res = runner.invoke(app, ["powerflow", str(export), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["max_abs_dv_pu"] < 1e-6


def test_cli_ampacity_options(export, tmp_path):
    out = tmp_path / "out"
    args = [
        "envelopes",
        str(export),
        "--out",
        str(out),
        "--method",
        "fair",
        "--direction",
        "import",
        "--format",
        "json",
    ]
    res = runner.invoke(app, args)
    message = error_lines(res.stderr)
    assert res.exit_code == 2 and message.count("\n") == 0 and "13 of 13 lines" in message
    res = runner.invoke(app, args + ["--default-ampacity", "120"])
    assert res.exit_code == 0, res.output
    assert "warning: --default-ampacity 120 A given to 13 line(s)" in res.stderr
    notices = json.loads((out / "summary.json").read_text())["notices"]
    assert [n["data"]["lines"] for n in notices if n["kind"] == "ampacity_defaulted"] == [13]
