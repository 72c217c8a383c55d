"""The README's "Running your own feeder" session, on the example export shipped with it
(feeders/examples/gis_export: no normamps, no VoltageBases, no length units, no XfkVA)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cli import app
from tests.feeder_texts import export_text

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "feeders" / "examples" / "gis_export"


def test_the_example_is_the_test_export():
    """The shipped file is tests.feeder_texts.export_text() with a comment on top, so the tests of each gap
    (test_ratings, test_dss, test_voltages) are tests of the README's example."""
    body = export_text()
    assert (EXAMPLE / "Master.dss").read_text().endswith(body)
    assert not any(word in body.lower() for word in ("normamps", "voltagebases", "units=m", "xfkva"))


def test_readme_session(tmp_path):
    feeder = str(EXAMPLE / "Master.dss")
    res = runner.invoke(app, ["powerflow", feeder, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["max_abs_dv_pu"] < 1e-6
    assert "inferred [11 0.416] kV" in res.stderr

    out = tmp_path / "results"
    res = runner.invoke(app, ["envelopes", feeder, "--out", str(out)])
    assert res.exit_code == 2 and "no ampacity (normamps) for 13 of 13 lines, of 3 line code(s)" in res.stderr

    res = runner.invoke(
        app,
        [
            "envelopes",
            feeder,
            "--ampacity",
            str(EXAMPLE / "cables.csv"),
            "--default-capacity",
            "25",
            "--vmin-v",
            "207",
            "--vmax-v",
            "253",
            "--out",
            str(out),
            "--format",
            "csv",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "voltage limits 207-253 V phase-to-neutral" in " ".join(res.stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verified"]
    assert [n["kind"] for n in summary["notices"]] == [
        "voltage_bases_inferred",
        "ampacity_from_table",
        "length_units_missing",
        "capacity_defaulted",
    ]
    table = pd.read_csv(out / "envelopes.csv")
    imp = table[(table["direction"] == "import") & (table["method"] == "optimal")]
    # the service cables bind, or in the box (import and export together) the 253 V limit, in volts
    allowed = {f"ampacity line s{k}" for k in range(1, 7)} | {f"voltage bus shop phase {p} 253.00 V" for p in "abc"}
    got = set(imp.loc[imp["end_user"] != "shop", "binding"])
    assert got <= allowed and any(b.startswith("ampacity line s") for b in got), got
    assert table["distance_m"].max() == 6 * 35 + 15  # lengths in metres, as the line codes' km say


def test_python_api_bridges_the_same_gaps():
    import nfca

    study = nfca.compute_envelopes(
        EXAMPLE / "Master.dss",
        methods=["fair"],
        directions=["export"],
        default_ampacity_a=90,
        default_capacity_kva=25,
        vmin_v=207,
        vmax_v=253,
    )
    assert study.options.limits.vmax_v == 253
    assert {n.kind for n in study.feeder.notices} >= {"voltage_bases_inferred", "ampacity_defaulted"}
