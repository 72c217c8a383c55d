"""``nfca market`` command line: outputs, exit codes and one-line errors, checked before computing."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from market_bridge import kpis, tables
from market_bridge.cases import case_file
from market_bridge.cli import app
from market_bridge.kpis import BID_COLUMNS, INTERFACE_COLUMNS, KPI_COLUMNS, VIOLATION_COLUMNS

runner = CliRunner()
OUTPUTS = ("kpis.csv", "kpis.json", "bids.csv", "interfaces.csv", "violations.csv")


def _error(res, code: int) -> str:
    """The one error line of a failed run (exit ``code``, no traceback)."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    return errors[0]


@pytest.fixture(scope="module")
def run_b(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("b")
    res = runner.invoke(
        app,
        [
            "run",
            "--case",
            "B",
            "--scheme",
            "ml01",
            "--scheme",
            "ml05",
            "--scheme",
            "ml06_seed",
            "--scheme",
            "common",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_run_writes_every_table(run_b: Path):
    df = pd.read_csv(run_b / "kpis.csv")
    assert list(df.columns) == KPI_COLUMNS
    assert list(df["scheme"]) == ["multilevel_01", "multilevel_05", "multilevel_06_seed", "common"]
    assert json.loads((run_b / "kpis.json").read_text())[0]["unqualified_up_pct"] is None
    assert list(pd.read_csv(run_b / "bids.csv").columns) == BID_COLUMNS
    assert list(pd.read_csv(run_b / "interfaces.csv").columns) == INTERFACE_COLUMNS
    assert list(pd.read_csv(run_b / "violations.csv").columns) == VIOLATION_COLUMNS
    assert not [p for p in run_b.iterdir() if p.name.startswith(".")]


def test_output_files_are_readable_by_everyone(run_b: Path):
    for name in OUTPUTS:
        assert stat.S_IMODE((run_b / name).stat().st_mode) == 0o644, name


def test_tables_agree_with_the_kpis(run_b: Path):
    """bids.csv sums to the KPIs' activated volumes, interfaces.csv ends at the base import minus
    the net distribution activation, violations.csv lists what the KPIs count."""
    k = pd.read_csv(run_b / "kpis.csv").set_index("scheme")
    bids = pd.read_csv(run_b / "bids.csv")
    bids = bids[bids["kind"] != "voll"]
    for scheme, row in k.iterrows():
        mine = bids[bids["scheme"] == scheme]
        for d in ("up", "down"):
            assert mine.loc[mine["direction"] == d, "activated_mw"].sum() == pytest.approx(row[f"{d}_mw"], abs=1e-5)
        dist = mine[mine["area"] != "T"]
        net = (dist["activated_mw"] * dist["direction"].map({"up": 1, "down": -1})).sum()
        iface = pd.read_csv(run_b / "interfaces.csv")
        iface = iface[iface["scheme"] == scheme]
        base = iface[iface["layer"] == "base"]["interface_import_mw"].sum()
        last = iface.groupby("network").tail(1)["interface_import_mw"].sum()
        assert base - last == pytest.approx(net, abs=1e-5)
    viol = pd.read_csv(run_b / "violations.csv")
    for scheme, row in k.iterrows():
        mine = viol[viol["scheme"] == scheme]
        assert (mine["quantity"] == "flow_mva").sum() == row["n_line_violations"]
        assert (mine["quantity"] == "voltage_pu").sum() == row["n_voltage_violations"]
    assert (viol["excess_pct"] > 0).all()


def test_kpi_tables_carry_no_solver_noise(run_b: Path):
    """Values are rounded to their column's precision: no 2e-14 left from the solver."""
    for name in ("kpis.csv", "bids.csv", "interfaces.csv"):
        text = (run_b / name).read_text()
        assert not re.search(r"\de-\d", text), name
        df = pd.read_csv(run_b / name)
        for col in df.select_dtypes("number"):
            tiny = df[col][(df[col] != 0) & (df[col].abs() < 1e-6)]
            assert tiny.empty, (name, col)


def test_out_on_a_file_fails_before_computing(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(kpis, "evaluate", lambda *a, **k: pytest.fail("computed before checking --out"))
    target = tmp_path / "results.csv"
    target.write_text("x")
    msg = _error(runner.invoke(app, ["run", "--case", "A", "--out", str(target)]), 6)
    assert "results.csv is a file" in msg


def test_tables_checks_the_sweep_case_before_running(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tables, "build_tables", lambda *a, **k: pytest.fail("ran before checking --sweep-case"))
    assert "--sweep-case" in _error(runner.invoke(app, ["tables", "--out", str(tmp_path), "--sweep-case", "Z"]), 2)
    assert "--steps" in _error(runner.invoke(app, ["tables", "--out", str(tmp_path), "--steps", "1,x"]), 2)


def test_unknown_case_and_scheme(tmp_path: Path):
    assert "unknown case 'Z'" in _error(runner.invoke(app, ["run", "--case", "Z", "--out", str(tmp_path)]), 2)
    assert "unknown scheme 'ml09'" in _error(runner.invoke(app, ["run", "--scheme", "ml09", "--out", str(tmp_path)]), 2)
    msg = _error(runner.invoke(app, ["run", "--scheme", "ml01@uniform_oe", "--out", str(tmp_path)]), 2)
    assert "no prequalification step" in msg


def test_malformed_case_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(re.sub(r"imbalance_mw = [0-9.]+", "imbalance_mw = 'lots'", case_file("A").read_text()))
    assert "imbalance_mw" in _error(runner.invoke(app, ["run", "--case-file", str(bad), "--out", str(tmp_path)]), 2)
    bad.write_text("name = [")
    assert "cannot read case file" in _error(
        runner.invoke(app, ["run", "--case-file", str(bad), "--out", str(tmp_path)]), 2
    )


def test_a_clearing_without_solution_exits_3_after_writing(tmp_path: Path):
    """A DSO whose own bids cannot relieve its transformer: the common market has no solution."""
    edited = tmp_path / "tight.toml"
    edited.write_text(re.sub(r'"1-2" = 11\.[0-9]+', '"1-2" = 8.0', case_file("A").read_text()))
    res = runner.invoke(app, ["run", "--case-file", str(edited), "--scheme", "common", "--out", str(tmp_path / "o")])
    assert "infeasible" in _error(res, 3)
    assert (tmp_path / "o" / "kpis.csv").exists()


def test_envelopes_need_a_scheme_that_uses_them(tmp_path: Path):
    from tests.market_bridge.test_nfca_bridge import write_envelopes

    env = write_envelopes(tmp_path / "envelopes.csv")
    msg = _error(
        runner.invoke(
            app, ["run", "--case", "B", "--scheme", "ml03", "--envelopes", str(env), "--out", str(tmp_path / "o")]
        ),
        2,
    )
    assert "multilevel_03@nfca" in msg and "multilevel_06_seed@nfca" in msg and "none of ml03" in msg


def test_undecodable_envelopes_file_is_named(tmp_path: Path):
    bad = tmp_path / "env-latin1.csv"
    bad.write_bytes("end_user,capacity_kva\nCaf\xe9,9\n".encode("latin-1"))
    msg = _error(
        runner.invoke(app, ["run", "--scheme", "ml03@nfca", "--envelopes", str(bad), "--out", str(tmp_path / "o")]), 2
    )
    assert "env-latin1.csv" in msg


def test_run_with_envelopes(tmp_path: Path):
    from tests.market_bridge.test_nfca_bridge import write_envelopes

    env = write_envelopes(tmp_path / "envelopes.csv")
    res = runner.invoke(
        app,
        [
            "run",
            "--case",
            "B",
            "--scheme",
            "ml03@nfca",
            "--scheme",
            "ml01",
            "--envelopes",
            str(env),
            "--out",
            str(tmp_path / "out"),
            "--seed",
            "4889",
        ],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "out" / "kpis.csv")
    assert set(df["seed"]) == {4889}
    capped = df[df["prequalification"] == "nfca"]
    assert set(capped["scheme"]) == {"multilevel_03", "common"}
    assert (capped["lv_envelope_exceedances"] == 0).all()


@pytest.mark.slow
def test_tables_command(tmp_path: Path):
    res = runner.invoke(app, ["tables", "--out", str(tmp_path), "--steps", "1,0.5", "--seed", "2406"])
    assert res.exit_code == 0, res.output
    for name in (
        "tables.md",
        "kpis_all_cases.csv",
        "prequalification_methods.csv",
        "agreement.csv",
        "aggregation_tradeoff.csv",
        "aggregation_tradeoff.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    sweep = pd.read_csv(tmp_path / "aggregation_tradeoff.csv")
    assert sweep["inefficiency_pct"].iloc[-1] <= sweep["inefficiency_pct"].iloc[0] + 1e-9
    text = (tmp_path / "tables.md").read_text()
    assert "Table 4-8" in text and "inefficiency cells in the seed's sign class" in text
