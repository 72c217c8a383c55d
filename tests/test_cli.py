"""The command line: outputs written, errors as one line with the documented exit code."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import nfca
from cli import app
from nfca.io import schema
from tests.feeder_texts import four_wire_kron_text, write_dss
from tests.helpers import error_lines, plotting_modules_after, report_data

runner = CliRunner()


@pytest.mark.parametrize(
    "command, pngs",
    [
        (
            ["envelopes", "--participants", "0.5", "--seed", "3", "--firm-diversity", "0.5", "--method", "fair"],
            ["envelopes_export.png", "envelopes_import.png"],
        ),
        (["sweep-participation", "--step", "7", "--method", "fair"], ["participation.png"]),
    ],
)
def test_default_outputs_load_no_plotting_library(it_feeder, tmp_path, command, pngs):
    """The default path (csv, json, gpkg, html) never imports matplotlib, nor geopandas when no
    GeoPackage is written (no coordinates); --format png brings the figures and matplotlib."""
    base = [command[0], str(it_feeder), *command[1:], "--quiet"]
    assert plotting_modules_after([*base, "--out", str(tmp_path / "lean")]) == "[]"
    assert (tmp_path / "lean" / "report.html").exists() and not list((tmp_path / "lean").glob("*.png"))
    png = [*base, "--out", str(tmp_path / "png"), "--format", "csv", "--format", "png"]
    assert plotting_modules_after(png) == "['matplotlib']"
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == pngs
    assert not (tmp_path / "png" / "report.html").exists()


def test_the_solve_path_does_not_load_pandas():
    """What `nfca envelopes` imports before it solves (the command, the study, the writers'
    module) leaves pandas to be loaded while OpenDSS verifies (0.15 s of every run)."""
    import subprocess
    import sys

    code = "import sys, cli, nfca.io.outputs, nfca.studies.envelopes; print('pandas' in sys.modules)"
    run = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_envelopes_writes_verified_outputs(it_feeder, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(it_feeder),
            "--out",
            str(out),
            "--participants",
            "0.5",
            "--seed",
            "3",
            "--firm-diversity",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    df = schema.read_envelopes(out / "envelopes.csv")
    assert list(df.columns) == schema.names(schema.ENVELOPES)
    assert len(df) == 14 * 2 * 2  # end-users x directions x methods
    summary = json.loads((out / "summary.json").read_text())
    for per in summary["methods"].values():
        for s in per.values():
            assert s["verified"] and s["solver_status"] in ("optimal", "acceptable")
            assert {c.name for c in schema.SET_SUMMARY} == set(s)
    assert (out / "report.html").stat().st_size > 0
    assert not list(out.glob("*.png"))  # PNG figures only with --format png: report.html draws its charts
    assert [p.name for p in out.glob(".*")] == [".nfca-run"]  # the run's marker, no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "out"]  # no temporary folder beside it
    assert {f.stat().st_mode & 0o777 for f in out.iterdir()} == {0o644}
    # the results table is on stdout, the note on stderr
    assert "optimal" in res.stdout and "Jain" in res.stdout and "wrote" in res.stderr
    # provenance: version, options, input hashes, participants, the source voltage actually used
    p = summary["provenance"]
    assert p["nfca_version"] == nfca.__version__ and p["participants"]["seed"] == 3
    assert p["inputs"][str(it_feeder)] == hashlib.sha256(it_feeder.read_bytes()).hexdigest()
    assert summary["options"]["source_pu"] == 1.0 and summary["participants"] == 7
    # the binding limit as data, and non-participants marked as firm
    part = df[df["participant"]]
    assert (part["binding_type"] != "firm").all() and (df[~df["participant"]]["binding_type"] == "firm").all()
    limited = part[part["binding_type"] != "capacity"]
    assert len(limited) and limited["binding_element"].str.len().gt(0).all() and limited["binding_value"].gt(0).all()


def test_json_quiet_and_version(it_feeder, tmp_path):
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(it_feeder),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--quiet",
            "--method",
            "fair",
            "--direction",
            "import",
            "--format",
            "csv",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stderr == ""  # --quiet: no progress, no note
    summary = json.loads(res.stdout)
    assert summary["methods"]["fair"]["import"]["total_kw"] > 0
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"nfca {nfca.__version__}"


def test_progress_lines_in_a_log(it_feeder, tmp_path):
    res = runner.invoke(
        app, ["envelopes", str(it_feeder), "--out", str(tmp_path / "o"), "--format", "csv", "--method", "fair"]
    )
    steps = [line for line in res.stderr.splitlines() if line.startswith("nfca:")]
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(it_feeder),
            "--out",
            str(tmp_path / "o"),
            "--format",
            "csv",
            "--method",
            "fair",
            "--direction",
            "import",
            "--verbose",
        ],
    )
    assert "(previous step" in res.stderr and "envelopes.csv" in res.stderr  # each step's time, the files written
    assert [s.split(maxsplit=3)[-1] for s in steps] == [
        "reading feeder",
        "solving fair import and export",
        "verifying fair import and export with OpenDSS",
        "writing outputs",
    ]


def test_firm_diversity_and_firm_kw_raise_the_envelopes(it_feeder, tmp_path):
    """Non-participants that use less leave more room: a planner's after-diversity demand."""

    def fair_total(*extra):
        res = runner.invoke(
            app,
            [
                "envelopes",
                str(it_feeder),
                "--out",
                str(tmp_path / "o"),
                "--format",
                "json",
                "--participants",
                "0.5",
                "--json",
                "--method",
                "fair",
                "--direction",
                "import",
                *extra,
            ],
        )
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    full, diverse = fair_total("--firm-diversity", "0.5"), fair_total("--firm-diversity", "0.3")
    assert "0.5 x" in full["options"]["firm"] and "0.3 x" in diverse["options"]["firm"]
    assert diverse["methods"]["fair"]["import"]["total_kw"] > full["methods"]["fair"]["import"]["total_kw"] + 1
    caps = tmp_path / "caps.csv"
    caps.write_text(
        "end_user,firm_kw\n"
        + "".join(
            f"{n},2.76\n" for n in ("a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "d3", "d6", "b0", "b1", "b2", "b3")
        )
    )
    own = fair_total("--capacities", str(caps), "--firm-diversity", "0.5")
    assert "14 end-user(s) with their own firm_kw" in own["options"]["firm"]
    assert own["methods"]["fair"]["import"]["total_kw"] > full["methods"]["fair"]["import"]["total_kw"] + 1


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


def test_one_direction_without_envelope_writes_the_other_and_exits_3(tmp_path):
    """A low source voltage leaves no import envelope (the firm users alone pull a customer below
    0.90 pu) while export has one: the export sets are published and verified, the import rows are
    marked infeasible with the reason, and the exit code says the run is partial."""
    path = write_dss(tmp_path, four_wire_kron_text(n_segments=8, seg_m=150, kw=8))
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(path),
            "--out",
            str(out),
            "--participants",
            "0.5",
            "--seed",
            "1",
            "--guarantee",
            "direction",
            "--source-pu",
            "0.95",
            "--firm-kw",
            "3",
            "--format",
            "csv",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 3, res.output
    assert "infeasible: optimal import: no import envelope exists" in res.output
    table = pd.read_csv(out / "envelopes.csv")
    status = table.groupby(["method", "direction"])["status"].unique().to_dict()
    assert {k: list(v) for k, v in status.items()} == {
        ("fair", "export"): ["ok"],
        ("fair", "import"): ["infeasible"],
        ("optimal", "export"): ["ok"],
        ("optimal", "import"): ["infeasible"],
    }
    exported = table[table.status == "ok"]
    assert (exported.guaranteed_kw > 0).any() and (exported.v_min_verified_pu >= 0.9 - 1e-6).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["optimal"]["import"]["status"] == "infeasible"
    assert "0.90 pu" in summary["methods"]["optimal"]["import"]["reason"]
    assert summary["methods"]["optimal"]["export"]["status"] == "ok"
    assert summary["methods"]["optimal"]["export"]["verified"] is True


def test_unknown_participant_file_entry(it_feeder, tmp_path):
    plist = tmp_path / "p.csv"
    plist.write_text("end_user\na1\nghost\n")
    res = runner.invoke(app, ["envelopes", str(it_feeder), "--out", str(tmp_path / "o"), "--participants", str(plist)])
    assert res.exit_code == 2 and "ghost" in res.output


def test_sweep_marks_points_without_envelope_as_gaps(it_feeder, tmp_path):
    out = tmp_path / "sweep"
    res = runner.invoke(
        app, ["sweep-participation", str(it_feeder), "--out", str(out), "--step", "7", "--method", "fair", "--json"]
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "participation.csv")
    bad = df[df["status"] == "infeasible"]
    assert len(bad) and bad["mean_kw"].isna().all() and bad["reason"].str.contains("firm connections alone").all()
    good = df[df["status"] != "infeasible"]
    assert (good["participants"] == 14).all() and (good["mean_kw"] > 0).all()
    assert json.loads(res.stdout)["points"][0]["participants"] == 7
    assert not list(out.glob("*.png"))  # the PNG only with --format png: report.html draws the charts
    # the page's chart per direction holds participation.csv's points: the mean per participant
    # where an envelope exists, a gap with the reason where none does (never a zero)
    charts = {c["id"]: c for c in report_data(out / "report.html")["charts"]}
    assert set(charts) == {"participation-import", "participation-export"}
    for d in ("import", "export"):
        rows = df[(df["direction"] == d) & (df["method"] == "fair")].sort_values("participants")
        chart = charts[f"participation-{d}"]
        assert chart["categories"] == [str(k) for k in rows["participants"]] == ["7", "14"]
        (series,) = chart["series"]
        assert series["values"] == pytest.approx([None if pd.isna(v) else v for v in rows["mean_kw"]], abs=1e-3)
        assert [bool(g) for g in series["gaps"]] == (rows["status"] == "infeasible").tolist()
        assert all(r in g for r, g in zip(rows["reason"].fillna(""), series["gaps"]))
    res = runner.invoke(
        app, ["sweep-participation", str(it_feeder), "--out", str(tmp_path / "s2"), "--participants", "0.5"]
    )
    assert res.exit_code == 2 and "leave out --participants" in res.stderr
    res = runner.invoke(app, ["sweep-participation", str(it_feeder), "--out", str(tmp_path / "s3"), "--step", "0"])
    assert res.exit_code == 2 and error_lines(res.stderr) == "error: --step must be at least 1, got 0"
    report = (out / "report.html").read_text()
    assert "infeasible" in report and "nfca version" in report and "firm connections alone" in report


def test_an_interrupted_market_run_says_so_without_a_traceback(tmp_path, monkeypatch):
    """Mounted sub-commands share the CLI's signal convention: Ctrl-C is exit 130 and one line
    that does not claim nothing was written (they write file by file)."""
    import market_bridge.kpis

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(market_bridge.kpis, "evaluate", interrupted)
    res = runner.invoke(app, ["market", "run", "--case", "A", "--scheme", "cm", "--out", str(tmp_path / "m")])
    assert res.exit_code == 130, res.output
    assert error_lines(res.output).strip().startswith("interrupted; --out may hold part of this run's files")
    assert "Traceback" not in res.output
