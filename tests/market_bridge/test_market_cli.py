"""``nfca market`` command line: outputs, exit codes and one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from market_bridge.cases import case_file
from market_bridge.cli import app
from market_bridge.kpis import KPI_COLUMNS

runner = CliRunner()


def test_run_writes_kpis(tmp_path: Path):
    res = runner.invoke(app, ["run", "--case", "A", "--scheme", "ml01", "--scheme", "bid_aggregation",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "kpis.csv")
    assert list(df.columns) == KPI_COLUMNS
    assert list(df["scheme"]) == ["multilevel_01", "bid_aggregation"]
    data = json.loads((tmp_path / "kpis.json").read_text())
    assert data[0]["scheme"] == "multilevel_01" and data[1]["unqualified_up_pct"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def test_unknown_case(tmp_path: Path):
    assert "unknown case 'Z'" in _one_line_error(runner.invoke(app, ["run", "--case", "Z", "--out", str(tmp_path)]))


def test_unknown_scheme(tmp_path: Path):
    msg = _one_line_error(runner.invoke(app, ["run", "--scheme", "ml09", "--out", str(tmp_path)]))
    assert "unknown scheme 'ml09'" in msg


def test_malformed_case_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(case_file("A").read_text().replace("imbalance_mw = 30.0", "imbalance_mw = 'lots'"))
    assert "imbalance_mw" in _one_line_error(runner.invoke(app, ["run", "--case-file", str(bad), "--out", str(tmp_path)]))
    bad.write_text("name = [")
    assert "cannot read case file" in _one_line_error(
        runner.invoke(app, ["run", "--case-file", str(bad), "--out", str(tmp_path)]))


def test_infeasible_clearing(tmp_path: Path):
    edited = tmp_path / "huge.toml"
    edited.write_text(case_file("A").read_text().replace("imbalance_mw = 30.0", "imbalance_mw = 500.0"))
    res = runner.invoke(app, ["run", "--case-file", str(edited), "--scheme", "common", "--out", str(tmp_path)])
    assert "infeasible" in _one_line_error_last(res)


def _one_line_error_last(res) -> str:
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output
    return errors[0]


def test_run_with_envelopes(tmp_path: Path):
    from test_nfca_bridge import write_envelopes

    env = write_envelopes(tmp_path / "envelopes.csv")
    res = runner.invoke(app, ["run", "--case", "B", "--scheme", "ml03@nfca", "--scheme", "ml01",
                              "--envelopes", str(env), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "out" / "kpis.csv")
    assert df.loc[df["scheme"] == "multilevel_03", "prequalification"].iloc[0] == "nfca"
    assert df.loc[df["scheme"] == "multilevel_03", "lv_envelope_exceedances"].iloc[0] == 0


def test_table_layout_from_kpis():
    from market_bridge.cases import load_case
    from market_bridge.kpis import evaluate
    from market_bridge.tables import TITLES, kpi_tables, table_47

    df, _ = evaluate(load_case("D"), ["ml03", "ml06", "common"])
    tables = kpi_tables(df)
    assert list(tables) == list(TITLES.values())
    t42 = tables["Table 4-2 Market inefficiency [%]"]
    assert list(t42.columns) == ["Market scheme", "Case A", "Case B", "Case C", "Case D"]
    assert t42.loc[t42["Market scheme"] == "Common market", "Case D"].iloc[0] == "0 (0)"
    assert t42.loc[t42["Market scheme"] == "Multilevel 01", "Case D"].iloc[0] == "- (157.20)"
    assert table_47(df).shape == (2, 9)


@pytest.mark.slow
def test_tables_command(tmp_path: Path):
    res = runner.invoke(app, ["tables", "--out", str(tmp_path), "--steps", "1,0.5"])
    assert res.exit_code == 0, res.output
    for name in ("tables.md", "kpis_all_cases.csv", "prequalification_methods.csv",
                 "aggregation_tradeoff.csv", "aggregation_tradeoff.png"):
        assert (tmp_path / name).stat().st_size > 0
    sweep = pd.read_csv(tmp_path / "aggregation_tradeoff.csv")
    assert sweep["inefficiency_pct"].iloc[-1] <= sweep["inefficiency_pct"].iloc[0] + 1e-9
    assert "Table 4-8" in (tmp_path / "tables.md").read_text()
