"""Writing a study: partial results, the GeoPackage's layers and CRS, permissions."""

from __future__ import annotations

import dataclasses
import json

import geopandas as gpd
import pyogrio
import pytest

from nfca.errors import InputError
from nfca.io import schema
from nfca.io.outputs import write_study
from nfca.studies.envelopes import prepare_feeder, run_envelopes
from tests.feeder_texts import feeder_with_coordinates


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xy")
    feeder, part = prepare_feeder(feeder_with_coordinates(folder), "0.7", seed=2)
    from nfca.model.envelope import EnvelopeOptions

    return run_envelopes(feeder, ["optimal", "fair"], ["import"], EnvelopeOptions(firm_diversity=0.5), part)


def test_a_set_without_envelope_is_written_as_infeasible(study, tmp_path):
    reason = "no export envelope exists: with NFCA users at zero the firm connections alone violate 1 limit(s)"
    partial = dataclasses.replace(study, infeasible={("fair", "export"): reason})
    write_study(partial, tmp_path, ("csv", "json", "html"))
    df = schema.read_envelopes(tmp_path / "envelopes.csv")  # the reader drops the infeasible rows
    assert set(zip(df["method"], df["direction"])) == {("optimal", "import"), ("fair", "import")}
    raw = (tmp_path / "envelopes.csv").read_text().splitlines()
    bad = [line for line in raw if ",infeasible," in line]
    assert len(bad) == len(study.feeder.end_users) and all(reason in line for line in bad)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["methods"]["fair"]["export"]["status"] == "infeasible" and not summary["complete"]
    assert summary["methods"]["fair"]["export"]["reason"] == reason and summary["verified"]
    report = (tmp_path / "report.html").read_text()
    assert "infeasible" in report and "firm connections alone violate" in report


def test_geopackage_layers_crs_and_spread_points(study, tmp_path):
    write_study(study, tmp_path, ("csv", "gpkg"))
    gpkg = tmp_path / "envelopes.gpkg"
    assert set(pyogrio.list_layers(gpkg)[:, 0]) == {"end_users", "lines", "transformers", "limits"}
    limits = gpd.read_file(gpkg, layer="limits")
    top = limits[(limits["set"] == "import_fair") & (limits["rank"] == 1)].iloc[0]
    table = study.to_dataframe()
    fair = table[(table["method"] == "fair") & table["participant"]]
    assert top["end_users"] == (fair["binding_element"] == top["binding_element"]).sum() > 0
    users = gpd.read_file(gpkg, layer="end_users")
    assert users.crs is not None and users.crs.axis_info[0].unit_name == "metre"  # 'local': metres, defined
    assert {
        "participant",
        "firm_kw",
        "import_fair_kw",
        "import_fair_binding_type",
        "import_fair_binding_element",
        "import_optimal_binding_value",
    } <= set(users.columns)
    assert users["participant"].sum() == len(study.participant_names)
    assert len({(p.x, p.y) for p in users.geometry}) == len(users)  # the five contracts on cp4 are spread
    on_cp4 = users[users["connection_point"] == "cp4"]
    from shapely.geometry import Point

    assert len(on_cp4) == 5 and on_cp4.geometry.distance(Point(100, -8)).max() < 5  # within 5 m of cp4
    lines = gpd.read_file(gpkg, layer="lines")
    assert lines["import_optimal_loading_pct"].max() <= 100 + 1e-3
    tr = gpd.read_file(gpkg, layer="transformers")
    assert tr["name"].tolist() == ["Transformer.tr"] and tr["rating_a"].iloc[0] > 600


def test_coordinates_without_a_crs_are_refused(study, tmp_path):
    (tmp_path / "Master.dss").write_text("")
    moved = dataclasses.replace(study, feeder=dataclasses.replace(study.feeder, path=str(tmp_path / "Master.dss")))
    with pytest.raises(InputError, match="no coordinate reference system: give --crs"):
        write_study(moved, tmp_path / "out", ("csv", "gpkg"))
    assert not (tmp_path / "out").exists()  # checked before anything is written
    with pytest.raises(InputError, match="not a coordinate reference system"):
        write_study(moved, tmp_path / "out", ("gpkg",), crs="EPSG:nonsense")
    write_study(moved, tmp_path / "out", ("gpkg",), crs="EPSG:31370")
    assert gpd.read_file(tmp_path / "out" / "envelopes.gpkg", layer="lines").crs.to_epsg() == 31370
