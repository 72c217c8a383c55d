"""report.html in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium; no browser download): it loads from the file alone, logs no console error, draws one
marker per end-user, and clicking an end-user shows its envelopes as envelopes.csv has them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from nfca.io.schema import read_envelopes
from tests.feeder_texts import feeder_with_coordinates

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "test-artefacts"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,1000",
)


@pytest.fixture
def browser():
    assert Path(CHROMIUM).exists() and Path(DRIVER).exists(), "chromium and chromium-driver missing: run `make setup`"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def test_report_opens_offline_and_shows_each_end_user(tmp_path, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    out = tmp_path / "out"
    feeder = feeder_with_coordinates(tmp_path)
    res = CliRunner().invoke(
        app,
        [
            "envelopes",
            str(feeder),
            "--out",
            str(out),
            "--participants",
            "0.7",
            "--firm-diversity",
            "0.5",
            "--seed",
            "2",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    df = read_envelopes(out / "envelopes.csv")
    browser.get((out / "report.html").as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert not fetched  # everything is in the file: nothing fetched, from the network or elsewhere
    markers = browser.find_elements(By.CSS_SELECTOR, "#map .end-user")
    users = sorted(df["end_user"].unique())
    assert sorted(m.get_attribute("data-user") for m in markers) == users
    # the five contracts of the building on cp4 are spread, not stacked on one point
    spots = {
        (m.get_attribute("cx") or m.get_attribute("x"), m.get_attribute("cy") or m.get_attribute("y")) for m in markers
    }
    assert len(spots) == len(users)
    for name in ("b2", df[~df["participant"]]["end_user"].iloc[0]):
        marker = next(m for m in markers if m.get_attribute("data-user") == name)
        ActionChains(browser).move_to_element(marker).click().perform()
        assert browser.find_element(By.ID, "user-name").text == name
        shown = browser.find_element(By.ID, "user-values").text
        for r in df[df["end_user"] == name].itertuples():
            assert f"{r.method} {r.direction} {r.guaranteed_kw:.2f}" in shown  # same values as envelopes.csv
            if r.participant and r.binding_type != "capacity":
                assert r.binding_element in shown
    # the charts are drawn by the page itself: bars per direction (one bar per participant and
    # method, non-participants hatched at their firm value) and the methods compared
    kinds = [f.get_attribute("data-kind") for f in browser.find_elements(By.CSS_SELECTOR, "#charts figure")]
    assert kinds == ["bars", "bars", "boxes"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars-import rect.chart-bar")
    ok = df[(df["direction"] == "import") & df["participant"]]
    assert len(bars) == len(ok)
    tall = max(bars, key=lambda b: float(b.get_attribute("height")))
    top = ok.loc[ok["guaranteed_kw"].idxmax()]
    assert tall.get_attribute("data-category") == top.end_user
    assert f"{top.guaranteed_kw:.2f}" in tall.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    # the set chooser recolours the map: hover texts now name the chosen set
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "set")).select_by_visible_text("fair export")
    title = browser.execute_script("return document.querySelector('#map .end-user title').textContent")
    assert "fair export" in title
    ARTEFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTEFACTS / "report.png"))
    shutil.copy(out / "report.html", ARTEFACTS / "report.html")
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_chart_caption_names_the_feeder_participation_limits_and_guarantee():
    from nfca.io.report import chart_caption

    summary = {
        "feeder": "f1",
        "participants": 3,
        "end_users": 5,
        "options": {"vmin_pu": 0.9, "vmax_pu": 1.1, "vmin_v": None, "vmax_v": 253.0, "source_pu": 1.05},
        "methods": {"fair": {"import": {"guarantee": "corner"}, "export": {"guarantee": "corner"}}},
    }
    assert chart_caption(summary) == (
        "f1: 3 of 5 end-users with an NFCA, limits 0.90 pu to 253 V, source 1.05 pu; guarantee: corner"
    )


def test_sweep_and_activation_charts_are_drawn(tmp_path, browser):
    """The pages of `sweep-participation` and `activations` draw their charts from the data they
    embed: a bar per point with an envelope, an x (hover: why) where none exists, and the
    activations' panels with each activation shaded; no console error."""
    import pandas as pd
    from selenium.webdriver.common.by import By

    from nfca.io import charts
    from nfca.io.report import write_page

    points = pd.DataFrame(
        {
            "participants": [5, 5, 10, 10] * 2,
            "direction": ["import"] * 4 + ["export"] * 4,
            "method": ["optimal", "fair"] * 4,
            "status": ["infeasible", "infeasible", "optimal", "optimal"] * 2,
            "total_kw": [None, None, 60.0, 41.0] * 2,
            "mean_kw": [None, None, 6.0, 4.1] * 2,
            "min_kw": [None, None, 5.0, 4.1] * 2,
            "verified": [False, False, True, True] * 2,
            "reason": ["firm connections alone overload line l3", "firm connections alone overload line l3", "", ""]
            * 2,
        }
    )
    stamps = pd.date_range("2024-05-15", periods=8, freq="15min").astype(str)
    intervals = pd.DataFrame(
        {
            "timestamp": stamps,
            "consumption_kw": [5.0, 6, 7, 8, 9, 8, 7, 6],
            "generation_kw": [0.0, 10, 30, 40, 30, 10, 0, 0],
            "firm_v_min_pu": [1.0] * 8,
            "firm_v_max_pu": [1.05, 1.08, 1.12, 1.13, 1.11, 1.07, 1.05, 1.04],
            "firm_max_loading_pct": [20.0, 30, 60, 70, 60, 30, 20, 20],
            "curtailed_dynamic_fair_kw": [0.0, 0, 4, 6, 3, 0, 0, 0],
            "curtailed_static_fair_kw": [0.0, 0, 5, 7, 4, 0, 0, 0],
        }
    )
    events = pd.DataFrame({"start": [stamps[2]], "end": [stamps[5]]})
    summary = {
        "feeder": "f1",
        "participants": 3,
        "curtailed_kwh": {"fair": {"dynamic": 3.25, "static": 4.0}},
        "policy": {"max_count": 10, "max_duration_min": 60.0, "activations": 1, "longest_min": 45.0, "satisfied": True},
    }
    page = write_page(
        tmp_path / "report.html",
        "both",
        "the sweep's and the activations' charts",
        [],
        [*charts.participation_charts(points), charts.activation_timeline(intervals, events, summary, 0.9, 1.1)],
    )
    browser.get(page.as_uri())
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    for d in ("import", "export"):
        bars = browser.find_elements(By.CSS_SELECTOR, f"#participation-{d} rect.chart-bar")
        assert sorted((b.get_attribute("data-category"), b.get_attribute("data-series")) for b in bars) == [
            ("10", "fair (kW per participant)"),
            ("10", "optimal (kW per participant)"),
        ]
        gaps = browser.find_elements(By.CSS_SELECTOR, f"#participation-{d} text.gap")
        assert [g.get_attribute("data-category") for g in gaps] == ["5", "5"]
        assert "overload line l3" in gaps[0].find_element(By.TAG_NAME, "title").get_attribute("textContent")
    panels = browser.find_elements(By.CSS_SELECTOR, "#activations g.panel")
    assert len(panels) == 4
    for p in panels:  # the one activation shaded in every panel, 30 of the 120 minutes wide
        (span,) = p.find_elements(By.CSS_SELECTOR, "rect.span")
        frame = float(p.find_elements(By.TAG_NAME, "rect")[-1].get_attribute("width"))
        assert float(span.get_attribute("width")) == pytest.approx(frame * 45 / 120, rel=1e-6)
    ARTEFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTEFACTS / "sweep_activations.png"))
