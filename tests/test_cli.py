"""The command line: outputs written, errors as one line with the documented exit code."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from cli import app
from conftest import four_wire_kron_text, write_dss

runner = CliRunner()


def test_envelopes_writes_verified_outputs(it_feeder, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["envelopes", str(it_feeder), "--out", str(out), "--format", "csv",
                              "--format", "json", "--format", "png"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "envelopes.csv")
    required = {"end_user", "connection_point", "bus", "phases", "connection", "capacity_kva", "direction",
                "method", "guaranteed_kw", "binding"}
    assert required <= set(df.columns)
    assert len(df) == 14 * 2 * 2  # end-users x directions x methods
    summary = json.loads((out / "summary.json").read_text())
    for per in summary["methods"].values():
        for s in per.values():
            assert s["verified"] and s["solver_status"] in ("optimal", "acceptable")
            assert {"total_kw", "min_kw", "max_kw", "jain_index", "iterations", "seconds", "v_min_pu",
                    "v_max_pu", "max_loading_pct"} <= set(s)
    assert (out / "fair_vs_optimal.png").stat().st_size > 0
    assert [p.name for p in out.glob(".*")] == [".nfca-run"]  # the run's marker, no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "out"]  # no temporary folder beside it


def test_powerflow_json(kron_feeder):
    res = runner.invoke(app, ["powerflow", str(kron_feeder), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["max_abs_dv_pu"] < 1e-6 and report["solver_status"] == "optimal"
    assert {"buses", "end_users", "seconds"} <= set(report)


def test_malformed_feeder_is_one_line_exit_2(tmp_path):
    bad = write_dss(tmp_path, four_wire_kron_text().replace("linecode=main length=40", "linecode=nope length=40", 1))
    out = tmp_path / "out"
    res = runner.invoke(app, ["envelopes", str(bad), "--out", str(out)])
    assert res.exit_code == 2
    assert "nope" in res.output and "Traceback" not in res.output
    assert not (out / "envelopes.csv").exists()


def test_infeasible_case_exit_3_and_nothing_written(tmp_path):
    text = four_wire_kron_text(n_segments=8, seg_m=150, kw=8)
    path = write_dss(tmp_path, text)
    out = tmp_path / "out"
    res = runner.invoke(app, ["envelopes", str(path), "--out", str(out), "--participants", "0"])
    assert res.exit_code == 3, res.output
    assert "firm connections alone violate" in res.output
    assert not (out / "envelopes.csv").exists()


def test_unknown_participant_file_entry(it_feeder, tmp_path):
    plist = tmp_path / "p.csv"
    plist.write_text("end_user\na1\nghost\n")
    res = runner.invoke(app, ["envelopes", str(it_feeder), "--out", str(tmp_path / "o"), "--participants", str(plist)])
    assert res.exit_code == 2 and "ghost" in res.output
