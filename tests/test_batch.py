"""Batch envelopes: parallel, resumable, one bad feeder does not stop the others; classification."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nfca.studies.batch import discover, run_batch
from nfca.studies.classify import classify, feeder_type
from tests.feeder_texts import four_wire_kron_text, three_wire_text, write_dss


@pytest.fixture
def grid(tmp_path):
    root = tmp_path / "grid"
    for name, text in {
        # oversized cables: type 1
        "short": three_wire_text(n_segments=3, seg_m=15)
        .replace("normamps=90", "normamps=400")
        .replace("normamps=200", "normamps=600"),
        "long": three_wire_text(n_segments=8, seg_m=40),
        "broken": four_wire_kron_text().replace("linecode=main", "linecode=nope", 1),
    }.items():
        (root / name).mkdir(parents=True)
        write_dss(root / name, text)
    return root


def test_batch_resumes_and_reports_failures(grid, tmp_path):
    out = tmp_path / "results"
    jobs = discover([grid])
    assert sorted(j.name for j in jobs) == ["broken", "long", "short"]
    report = run_batch(jobs, out, workers=2)
    assert sorted(report.done) == ["long", "short"]
    assert "nope" in report.failed["broken"]
    failures = pd.read_csv(out / "failures.csv")
    assert failures["feeder"].tolist() == ["broken"]
    for name in ("long", "short"):
        summary = json.loads((out / "feeders" / name / "summary.json").read_text())
        assert summary["verified"]
    # a second run recomputes nothing that finished
    again = run_batch(jobs, out, workers=2)
    assert sorted(again.skipped) == ["long", "short"] and not again.done
    types = classify(out).set_index("feeder")
    assert types.loc["short", "type"] == 1
    for _, r in types.iterrows():
        for d in ("import", "export"):
            assert r[f"fair_{d}_kw"] <= r[f"optimal_{d}_kw"] + 0.01 <= r["capacity_kw"] + 0.02


def test_feeder_type_rules():
    assert feeder_type(100, 100, 100) == 1
    assert feeder_type(80, 79, 100) == 2
    assert feeder_type(80, 60, 100) == 3


@pytest.mark.slow
def test_batch_on_a_local_dask_cluster(grid, tmp_path):
    distributed = pytest.importorskip("distributed")
    jobs = [j for j in discover([grid]) if j.name != "broken"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = run_batch(jobs, tmp_path / "dask", dask_address=cluster.scheduler_address)
    assert sorted(report.done) == ["long", "short"]


def test_batch_cli_shares_the_study_options_and_writes_a_report(grid, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    out = tmp_path / "results"
    res = CliRunner().invoke(
        app,
        [
            "batch",
            str(grid),
            "--out",
            str(out),
            "--workers",
            "2",
            "--method",
            "fair",
            "--method",
            "optimal",
            "--direction",
            "import",
            "--direction",
            "export",
            "--participants",
            "0.5",
            "--firm-diversity",
            "0.4",
            "--json",
        ],
    )
    assert res.exit_code == 7, res.output  # "broken" fails, the others are written
    summary = json.loads((out / "feeders" / "long" / "summary.json").read_text())
    assert summary["participants"] == round(0.5 * summary["end_users"]) and "0.4 x" in summary["options"]["firm"]
    assert summary["provenance"]["participants"]["spec"] == "0.5"
    report = (out / "report.html").read_text()
    assert "href='feeders/long/report.html'" in report and "href='feeders/short/report.html'" in report
    assert "broken" in report and (out / "feeders" / "long" / "report.html").stat().st_size > 0
    assert {r["feeder"] for r in json.loads(res.stdout)["feeders"]} == {"long", "short"}
    # the charts are data the page draws (no PNG, no matplotlib unless --format png): per feeder
    # the aggregated capacity, optimal and fair import as feeder_types.csv has them
    data = json.loads(report.split('id="nfca-data">', 1)[1].split("</script>", 1)[0])
    bars = next(c for c in data["charts"] if c["id"] == "feeders-import")
    types = pd.read_csv(out / "feeder_types.csv").sort_values(["type", "feeder"])
    assert bars["categories"] == [f"{f} (T{t})" for f, t in zip(types["feeder"], types["type"])]
    assert bars["series"][1]["values"] == pytest.approx(types["fair_import_kw"].tolist(), abs=1e-3)
    assert not list(out.rglob("*.png"))
    (out / "report.html").unlink()
    res = CliRunner().invoke(app, ["classify", str(out), "--fair-tol", "0.5", "--png"])
    assert res.exit_code == 0, res.output
    assert (
        "long" in res.stdout and "short" in res.stdout and (out / "report.html").exists()
    )  # classify prints its table
    assert {p.name for p in out.glob("*.png")} >= {"feeder_types_import.png", "feeder_types_export.png"}


def test_the_largest_feeders_start_first(grid, tmp_path, monkeypatch):
    """A pool's tail is then a small feeder, not a large one started last (the file's size is the
    estimate of a feeder's cost before it is read)."""
    import nfca.studies.batch as batch

    (grid / "a_tiny").mkdir()
    write_dss(grid / "a_tiny", three_wire_text(n_segments=1))  # found first, smallest
    started = []
    monkeypatch.setattr(batch, "_run_local", lambda todo, *a: started.extend(j.name for j in todo))
    jobs = discover([grid])
    assert jobs[0].name == "a_tiny"
    run_batch(jobs, tmp_path / "results", workers=2)
    sizes = {j.name: j.path.stat().st_size for j in jobs}
    assert started == sorted(sizes, key=lambda n: -sizes[n])
    assert len(set(sizes.values())) == len(sizes)  # the order is decided by size, not by ties
