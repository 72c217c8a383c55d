"""End-to-end studies on the reference feeders (slow): the seed's findings must show."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


@pytest.mark.slow
def test_ieee_eulv_envelopes_show_the_seed_findings(ieee_eulv, tmp_path):
    out = tmp_path / "ieee"  # the seed's definition, to compare with the seed
    res = runner.invoke(app, ["envelopes", str(ieee_eulv), "--out", str(out), "--guarantee", "corner"])
    assert res.exit_code == 0, res.output
    for name in ("envelopes.csv", "summary.json", "envelopes.gpkg", "report.html"):  # the default outputs
        assert (out / name).stat().st_size > 0
    df = pd.read_csv(out / "envelopes.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verified"]
    for d in ("import", "export"):
        opt = df[(df["method"] == "optimal") & (df["direction"] == d)].sort_values("distance_m")
        fair = summary["methods"]["fair"][d]["total_kw"]
        total = summary["methods"]["optimal"][d]["total_kw"]
        assert fair < total <= 55 * 9.2  # fairness costs capacity on this feeder
        # near the transformer: full capacity; the far end: limited
        assert (opt["guaranteed_kw"].head(10) == 9.2).all()
        assert opt["guaranteed_kw"].tail(5).max() < 9.2
        assert set(opt["binding"]) - {"capacity"}  # the limited ones name their limit

    import geopandas as gpd

    users = gpd.read_file(out / "envelopes.gpkg", layer="end_users")
    lines = gpd.read_file(out / "envelopes.gpkg", layer="lines")
    assert len(users) == 55 and len(lines) == 905 and users["participant"].all()
    assert set(users["import_optimal_binding_type"]) <= {"capacity", "current", "voltage", "rating"}
    assert lines["import_optimal_loading_pct"].max() <= 100 + 1e-4


@pytest.mark.slow
def test_sibelga_batch_has_all_three_feeder_types(tmp_path):
    grid, results = tmp_path / "grid", tmp_path / "results"
    assert runner.invoke(app, ["feeders", "sibelga", "--seed", "1", "--out", str(grid)]).exit_code == 0
    res = runner.invoke(
        app, ["batch", str(grid), "--out", str(results), "--crs", "EPSG:31370", "--guarantee", "corner"]
    )
    assert res.exit_code == 0, res.output
    types = pd.read_csv(results / "feeder_types.csv")
    assert len(types) == 49 and set(types["type"]) == {1, 2, 3}
    for d in ("import", "export"):
        assert (types[f"fair_{d}_kw"] <= types[f"optimal_{d}_kw"] + 1e-3).all()
        assert (types[f"optimal_{d}_kw"] <= types["capacity_kw"] + 1e-3).all()
    for summary in results.glob("feeders/*/summary.json"):
        assert json.loads(summary.read_text())["verified"]
    # type 1: short feeders with few end-users, as in the seed
    t1 = types[types["type"] == 1]
    assert t1["length_m"].max() < 250 and t1["end_users"].max() <= 24
