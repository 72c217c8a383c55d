"""Synthetic Sibelga-style grid (feeders.sibelga): published totals, distributions, determinism,
and every feeder loads and solves in OpenDSS."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pytest

from feeders import sibelga
from tests.helpers import opendss_redirect


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sibelga.generate(1, tmp_path_factory.mktemp("sibelga_seed1"))


@pytest.fixture(scope="module")
def rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def stats(manifest: Path) -> dict:
    return sibelga.grid_stats(manifest)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ll_voltages_pu() -> np.ndarray:
    """Phase-to-phase voltage magnitudes (pu of 230 V) at every LV bus."""
    out = []
    for bus in dss.Circuit.AllBusNames():
        if bus == "mv":
            continue
        dss.Circuit.SetActiveBus(bus)
        v = np.array(dss.Bus.Voltages())
        v = v[0::2] + 1j * v[1::2]
        out.append(np.abs(v - np.roll(v, -1)) / sibelga.V_LL)
    return np.concatenate(out)


def test_totals_hit_the_published_figures(stats: dict, rows: list[dict[str, str]]) -> None:
    assert stats["mv_feeders"] == 3
    assert stats["lv_feeders"] == 49
    assert stats["connection_points"] == 712
    assert stats["end_users"] == 2267
    assert sum(int(r["connection_points"]) for r in rows) == 712
    assert sum(int(r["end_users"]) for r in rows) == 2267
    assert stats["single_phase"] + stats["three_phase"] == 2267
    assert stats["single_phase"] > 0 and stats["three_phase"] > 0


def test_capacities_are_fuse_ratings_between_3_7_and_25_1_kva(manifest: Path, rows) -> None:
    allowed = {(ph, sibelga.capacity_kva(ph, a)) for ph in (1, 3) for a in sibelga.FUSES_A}
    assert min(kva for _, kva in allowed) == 3.7 and max(kva for _, kva in allowed) == 25.1
    for row in rows:
        loads = sibelga.read_master(manifest.parent / row["master"])["load"]
        for load in loads:
            assert (int(load["phases"]), float(load["xfkva"])) in allowed
            assert load["conn"] == "delta"
        assert sum(float(ld["xfkva"]) for ld in loads) == pytest.approx(float(row["capacity_kva"]), abs=0.05)


def test_distributions_match_the_study(stats: dict) -> None:
    assert 15 <= stats["end_users_per_cp"]["max"] <= 25
    assert 10.0 <= stats["cp_spacing_mean_m"] <= 16.0
    assert stats["short_feeders"] >= 5  # shorter than 230 m with at most 24 end-users (type 1)
    assert stats["feeder_length_m"]["min"] < 100 < 400 < stats["feeder_length_m"]["max"]
    assert stats["end_users_per_feeder"]["min"] <= 24 < 60 < stats["end_users_per_feeder"]["max"]
    assert all(0.2 < share < 0.5 for share in stats["phase_pair_share"].values())
    assert "end_users: 2267" in sibelga.format_stats(stats)


def test_same_seed_same_bytes_other_seed_other_grid(manifest: Path, tmp_path: Path) -> None:
    again = sibelga.generate(1, tmp_path / "again")
    other = sibelga.generate(2, tmp_path / "other")
    first = _files(manifest.parent)
    assert _files(again.parent) == first
    assert "grid.gpkg" in first and "lv01/Master.dss" in first
    assert _files(other.parent) != first
    assert sibelga.grid_stats(other)["end_users"] == 2267


def test_every_feeder_solves_in_opendss_within_voltage_limits(manifest: Path, rows) -> None:
    for row in rows:
        opendss_redirect(manifest.parent / row["master"])
        assert dss.Circuit.Name() == row["feeder"]
        assert dss.Loads.Count() == int(row["end_users"])
        buses = [b for b in dss.Circuit.AllBusNames() if b != "mv"]
        assert dss.Lines.Count() == len(buses) - 1  # radial
        assert len([b for b in buses if b.startswith("cp")]) == int(row["connection_points"])
        dss.Solution.Solve()
        assert dss.Solution.Converged(), row["feeder"]
        v = _ll_voltages_pu()
        assert 0.9 <= v.min() and v.max() <= 1.1, (row["feeder"], v.min(), v.max())


def test_short_feeders_carry_full_connection_capacity(manifest: Path, rows) -> None:
    """The type-1 design: all end-users of a 'short' feeder at full capacity stay within limits."""
    short = [r for r in rows if r["archetype"] == "short"]
    assert len(short) == 15
    for row in short:
        assert float(row["length_m"]) <= 227.0 and int(row["end_users"]) <= 24
        opendss_redirect(manifest.parent / row["master"])
        for name in dss.Loads.AllNames():
            dss.Loads.Name(name)
            dss.Loads.kW(dss.Loads.XfkVA() * sibelga.PF)
        dss.Solution.Solve()
        assert dss.Solution.Converged()
        assert _ll_voltages_pu().min() >= 0.9, row["feeder"]
        for name in dss.Lines.AllNames():
            dss.Circuit.SetActiveElement(f"Line.{name}")
            amps = max(dss.CktElement.CurrentsMagAng()[0:6:2])
            assert amps <= dss.CktElement.NormalAmps() * 1.001, (row["feeder"], name, amps)


def test_geopackage_layers(manifest: Path, stats: dict) -> None:
    import geopandas as gpd
    import pyogrio

    path = manifest.parent / "grid.gpkg"
    assert {name for name, _ in pyogrio.list_layers(path)} == {"lines", "connection_points", "substations"}
    lines = gpd.read_file(path, layer="lines")
    cps = gpd.read_file(path, layer="connection_points")
    subs = gpd.read_file(path, layer="substations")
    assert lines.crs.to_epsg() == 31370
    assert len(cps) == 712 and cps["end_users"].sum() == 2267
    assert len(subs) == stats["substations"]
    assert {"feeder", "name", "cable", "length_m", "ampacity_a"} <= set(lines.columns)
    assert (lines.geometry.length - lines["length_m"]).abs().max() < 0.2  # geometry matches lengths
    assert not any(p.name.endswith(".tmp") or ".tmp." in p.name for p in manifest.parent.iterdir())


def test_cli_sibelga_writes_and_prints_stats(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from feeders.cli import app

    result = CliRunner().invoke(app, ["sibelga", "--seed", "3", "--out", str(tmp_path / "g"), "--stats"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g" / "manifest.csv").is_file()
    assert "2267" in result.stdout
    help_text = CliRunner().invoke(app, ["--help"]).stdout
    assert "sibelga" in help_text and "ieee-eulv" in help_text
