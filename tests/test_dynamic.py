"""Dynamic and static envelopes over a horizon, profiles, and the NFCA activation analysis."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from nfca.engine import read, read_feeder
from nfca.errors import InputError, NfcaError
from nfca.model.envelope import EnvelopeOptions
from nfca.opf.problem import EnvelopeProblem
from nfca.studies.activations import ActivationPolicy, analyse
from nfca.studies.dynamic import STATIC, run_dynamic, write_dynamic
from nfca.studies.profiles import Profiles, load_profiles, read_csv
from tests.feeder_texts import IEEE_EULV, four_wire_kron_text, write_dss
from tests.helpers import plotting_modules_after, report_data

NON = ("u2", "u6", "t4")  # non-participants: held at their forecast
LEVELS = [0.3, 1.5, -6.0, -6.0, 1.5, 8.5]  # kW per single-phase user (x3 for three-phase ones)
START = pd.Timestamp("2024-01-01 00:00")


def _profile(feeder, levels=LEVELS) -> pd.DataFrame:
    """Wide table: every end-user at the interval's level (three-phase users at three times it)."""
    stamps = pd.date_range(START, periods=len(levels), freq="15min")
    return pd.DataFrame(
        {u.name: [x * (3 if u.n_phases == 3 else 1) for x in levels] for u in feeder.end_users}, index=stamps
    )


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dyn")
    path = write_dss(folder, four_wire_kron_text(seg_m=70))
    feeder = read_feeder(path)
    wide = _profile(feeder)
    csv = folder / "profiles.csv"
    wide.rename_axis("timestamp").reset_index().to_csv(csv, index=False)
    profiles = load_profiles(csv, feeder)
    part = frozenset(u.name for u in feeder.end_users if u.name not in NON)
    study = run_dynamic(feeder, profiles, options=EnvelopeOptions(), participants=part, workers=1)
    return {"path": path, "feeder": feeder, "csv": csv, "profiles": profiles, "part": part, "study": study}


# ----------------------------------------------------------------------------- profiles


def test_long_and_wide_csv_agree_and_resample_to_mean(case, tmp_path):
    wide = case["profiles"].kw
    long = wide.rename_axis("timestamp").reset_index().melt(id_vars="timestamp", var_name="end_user", value_name="p_kw")
    path = tmp_path / "long.csv"
    long.sample(frac=1, random_state=1).to_csv(path, index=False)  # any row order
    again = load_profiles(path, case["feeder"])
    pd.testing.assert_frame_equal(again.kw, wide, check_names=False, check_freq=False)
    assert again.interval == pd.Timedelta(minutes=15) and len(again) == 6
    half_hour = case["profiles"].resample("30min")
    assert len(half_hour) == 3 and half_hour.interval == pd.Timedelta(minutes=30)
    np.testing.assert_allclose(half_hour.kw["u1"], [(0.3 + 1.5) / 2, -6.0, (1.5 + 8.5) / 2])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda df: df.drop(columns=["u3"]), "no profile for end-user u3"),
        (lambda df: df.assign(nobody=1.0), "nobody is not in feeder"),
        (lambda df: df.drop(index=df.index[2]), "evenly spaced"),
        (lambda df: df.assign(u1=["x", 1, 1, 1, 1, 1]), "line 2: the power of u1 must be a finite number, got 'x'"),
    ],
)
def test_bad_profiles_name_the_problem(case, tmp_path, edit, message):
    df = edit(case["profiles"].kw.rename_axis("timestamp").reset_index())
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(InputError, match=message):
        load_profiles(path, case["feeder"])


def test_resolution_must_be_a_multiple(case):
    with pytest.raises(InputError, match="whole multiple"):
        case["profiles"].resample("5min")
    with pytest.raises(InputError, match="not a duration"):
        case["profiles"].resample("soon")


def test_opendss_load_shapes(tmp_path):
    text = (
        four_wire_kron_text()
        + "\n".join(
            [
                "New LoadShape.res npts=4 minterval=15 mult=(0.5 1 1.5 -0.5)",
                "New LoadShape.pv npts=2 interval=0.5 mult=(-2 -3) useactual=yes",
                "Edit Load.u1 daily=res",
                "Edit Load.u2 yearly=pv",
            ]
        )
        + "\n"
    )
    feeder, shapes = read(write_dss(tmp_path, text))
    prof = load_profiles("loadshapes", feeder)
    assert prof.kw["u1"].max() == shapes["u1"].kw.max()  # the shapes read with the feeder
    assert prof.interval == pd.Timedelta(minutes=15) and len(prof) == 4
    np.testing.assert_allclose(prof.kw["u1"], [2.0, 4.0, 6.0, -2.0])  # multiplier x kW=4
    np.testing.assert_allclose(prof.kw["u2"], [-2.0, -2.0, -3.0, -3.0])  # kW as given (UseActual)
    np.testing.assert_allclose(prof.kw["u3"], 4.0)  # no shape: constant at its kW


# ----------------------------------------------------------------------------- envelopes


def test_every_interval_verified_dynamic_and_static(case):
    study = case["study"]  # run_dynamic raised unless every interval's sets verified
    for c in study.chains:
        assert len(c.dynamic) == len(c.verifications) == len(c.static_verifications) == 6
        for env, level in zip(c.dynamic, LEVELS):  # non-participants held at their forecast
            assert env.firm_kw["u2"] == level and env.firm_kw["t4"] == 3 * level


def _measure(method: str, imp, exp) -> float:
    """What a box guarantee maximises: (1 - w) log(import) + w log(export) of the method's measure
    (the total for optimal, the common level for fair), w = 0.5."""
    part = [u for u, p in imp.participant.items() if p]
    if method == "fair":
        i, e = (max(s.guaranteed_kw[u] for u in part) for s in (imp, exp))
    else:
        i, e = imp.total_kw, exp.total_kw
    return 0.5 * np.log(i) + 0.5 * np.log(e)


def test_dynamic_never_below_static_where_it_must_not_be(case):
    """The static set holds in every interval, so each interval's optimum of the box objective is
    at least the static set's value; and the static set is no better than the worst interval."""
    study = case["study"]
    for method in ("fair", "optimal"):
        imp, exp = study.chain(method, "import"), study.chain(method, "export")
        static = _measure(method, imp.static, exp.static)
        dynamic = [_measure(method, i, e) for i, e in zip(imp.dynamic, exp.dynamic)]
        assert min(dynamic) >= static - 1e-4, method


def test_dynamic_envelopes_follow_the_forecast(case):
    # export: non-participants' generation (intervals 2, 3) leaves the others less room than their
    # consumption (interval 0); import boxes and export boxes apart, so the directions do not trade
    study = run_dynamic(
        case["feeder"],
        case["profiles"],
        ["fair"],
        ["export"],
        EnvelopeOptions(guarantee="direction"),
        participants=case["part"],
        workers=1,
    )
    fair = study.chain("fair", "export")
    out = [e.total_kw for e in fair.dynamic]
    assert out[2] < out[0] - 1 and out[2] == pytest.approx(out[3], abs=1e-6)
    assert fair.unique == 4  # intervals 1 and 4, and 2 and 3, have the same forecast: solved once each
    # in a box the directions share the room: the same generation leaves less export there too
    box = case["study"].chain("fair", "export")
    assert box.dynamic[2].total_kw < box.dynamic[0].total_kw


def test_persistent_chain_matches_a_fresh_solve_per_interval(case):
    """The persistent, warm-started model of a chain gives a fresh EnvelopeProblem.solve(firm_kw=...)'s
    envelopes in every interval."""
    feeder, part, prof, study = case["feeder"], case["part"], case["profiles"], case["study"]
    for method in ("optimal", "fair"):
        for k in range(len(prof)):
            fresh = {
                e.direction: e for e in EnvelopeProblem(feeder, EnvelopeOptions(), part).solve(method, None, prof.at(k))
            }
            for d, ref in fresh.items():
                got = study.chain(method, d).dynamic[k]
                for u in part:
                    assert got.guaranteed_kw[u] == pytest.approx(ref.guaranteed_kw[u], abs=3e-3), (method, d, k, u)


def test_the_chains_do_not_depend_on_the_number_of_processes(case):
    """With 2 processes this one computes chains too, taking the next as it frees up: every
    envelope, binding limit and verification is the one computed in a single process."""
    prof = Profiles(case["profiles"].kw.iloc[1:4], pd.Timedelta("15min"), "three intervals")
    opts = EnvelopeOptions(guarantee="corner")
    one, two = (run_dynamic(case["feeder"], prof, options=opts, participants=case["part"], workers=w) for w in (1, 2))
    assert two.workers == 2 and len(two.chains) == 4
    pd.testing.assert_frame_equal(one.to_dataframe(), two.to_dataframe())


def test_a_failed_chain_is_reported_as_in_one_process(case):
    """Of several failed chains, the first in the order of work is raised, whichever process
    finished first (non-participants far beyond the limits: no envelope in either direction)."""
    heavy = case["profiles"].kw.iloc[:2].copy()
    heavy[list(NON)] = 60.0
    prof = Profiles(heavy, pd.Timedelta("15min"), "heavy")
    opts = EnvelopeOptions(guarantee="corner")
    messages = []
    for w in (1, 2):
        with pytest.raises(NfcaError) as err:
            run_dynamic(case["feeder"], prof, ["fair"], options=opts, participants=case["part"], workers=w)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_everyone_participating_means_dynamic_equals_static(case):
    study = run_dynamic(case["feeder"], case["profiles"], ["fair"], participants=None, workers=1)
    c = study.chain("fair", "export")
    assert c.unique == 1
    assert all(e.guaranteed_kw == c.static.guaranteed_kw for e in c.dynamic)


def test_intervals_at_capacity_are_not_optimised(case):
    few = frozenset({"u1"})  # one participant next to the transformer: capacity fits in every interval
    mild = Profiles(_profile(case["feeder"], [0.3, 1.5, 2.5]), pd.Timedelta("15min"), "mild")
    study = run_dynamic(
        case["feeder"],
        mild,
        ["optimal"],
        ["import"],
        EnvelopeOptions(guarantee="direction"),
        participants=few,
        workers=1,
    )
    c = study.chain("optimal", "import")
    assert c.skipped == c.unique and c.solves == 0
    assert all(e.guaranteed_kw["u1"] == 9.2 for e in c.dynamic) and c.static.guaranteed_kw["u1"] == 9.2


def test_table_has_timestamps_and_static_rows(case, tmp_path):
    study = case["study"]
    table = study.to_dataframe()
    n_users = len(case["feeder"].end_users)
    assert list(table.columns[:2]) == ["timestamp", "end_user"] and "forecast_kw" in table.columns
    assert len(table) == n_users * 4 * 7
    assert (table["timestamp"] == STATIC).sum() == n_users * 4
    files = write_dynamic(study, tmp_path / "default")
    assert {p.name for p in files} == {"envelopes.csv", "summary.json", "report.html"}  # no matplotlib
    page = (tmp_path / "default" / "report.html").read_text()
    assert page.count('"kind":"steps"') == 2  # the time charts of both directions, drawn by the page
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert len(summary["dynamic"]["fair"]["export"]["total_kw"]) == 6 and summary["verified"]
    files = write_dynamic(study, tmp_path / "png", ("csv", "json", "png"))
    assert {p.name for p in files} == {
        "envelopes.csv",
        "summary.json",
        "envelopes_time_import.png",
        "envelopes_time_export.png",
    }


# ----------------------------------------------------------------------------- activations


def test_activations_counted_and_policy_checked(case):
    result = analyse(case["study"], ActivationPolicy(max_count=1, max_duration=pd.Timedelta("1h")))
    # firm operation: overvoltage at noon (intervals 2, 3), an overloaded cable in the evening (5)
    assert result.needed.tolist() == [False, False, True, True, False, True]
    assert result.events == [(2, 4), (5, 6)]
    check = result.policy_check()
    assert check["activations"] == 2 and check["longest_min"] == 30 and not check["satisfied"]
    assert not check["count_ok"] and check["duration_ok"]
    ok = analyse(case["study"], ActivationPolicy(max_count=2, max_duration=pd.Timedelta("30min")))
    assert ok.policy_check()["satisfied"]
    short = analyse(case["study"], ActivationPolicy(max_count=2, max_duration=pd.Timedelta("15min")))
    assert short.policy_check()["too_long"] == 1 and not short.policy_check()["satisfied"]


def test_curtailment_is_the_excess_over_the_envelope_when_activated(case):
    study, part = case["study"], case["part"]
    result = analyse(study)
    names = list(study.profiles.kw.columns)
    kw = study.profiles.kw.to_numpy()
    for lim in ("static", "dynamic"):
        for m in ("optimal", "fair"):
            c = result.curtailed_kw[(lim, m)]
            assert np.all(c[~result.needed] == 0)  # temporary activation: nothing outside activations
            imp, exp = study.chain(m, "import"), study.chain(m, "export")
            for k in np.flatnonzero(result.needed):
                for j, u in enumerate(names):
                    gi = (imp.static if lim == "static" else imp.dynamic[k]).guaranteed_kw[u]
                    ge = (exp.static if lim == "static" else exp.dynamic[k]).guaranteed_kw[u]
                    expected = max(0.0, kw[k, j] - gi) + max(0.0, -kw[k, j] - ge) if u in part else 0.0
                    assert c[k, j] == pytest.approx(expected, abs=1e-9)
    s = result.summary
    # dynamic limits curtail no more than static ones here (fair: a common level, higher when dynamic)
    assert s["curtailed_kwh"]["fair"]["dynamic"] <= s["curtailed_kwh"]["fair"]["static"] + 1e-6
    assert s["curtailed_kwh"]["fair"]["permanent_static"] >= s["curtailed_kwh"]["fair"]["static"]
    events = result.events_table()
    assert len(events) == 2 and events["duration_min"].tolist() == [30.0, 15.0]


# ----------------------------------------------------------------------------- command line


def test_cli_dynamic_envelopes_and_activations(case, tmp_path):
    runner = CliRunner()
    args = ["--profiles", str(case["csv"]), "--participants", _participants_csv(case, tmp_path)]
    out = tmp_path / "env"
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(case["path"]),
            *args,
            "--resolution",
            "30min",
            "--workers",
            "1",
            "--method",
            "fair",
            "--direction",
            "export",
            "--guarantee",
            "direction",
            "--out",
            str(out),
            "--format",
            "csv",
        ],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "envelopes.csv")
    assert set(df["timestamp"]) == {STATIC, "2024-01-01 00:00:00", "2024-01-01 00:30:00", "2024-01-01 01:00:00"}
    out = tmp_path / "act"
    res = runner.invoke(
        app, ["activations", str(case["path"]), *args, "--workers", "1", "--max-activations", "1", "--out", str(out)]
    )
    assert res.exit_code == 8, res.output  # the policy is not met: documented exit code
    assert "policy NOT satisfied" in " ".join(res.stdout.split()) and "policy not met" in res.stderr
    events = pd.read_csv(out / "activations.csv")
    assert len(events) == 2
    assert "policy NOT met" in (out / "report.html").read_text()
    for name in ("curtailment.csv", "intervals.csv", "activations.json", "report.html"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob("*.png"))  # the PNG only with --format png: report.html draws the chart
    # the page's chart holds intervals.csv's numbers, the activations of activations.csv shaded
    (chart,) = report_data(out / "report.html")["charts"]
    intervals = pd.read_csv(out / "intervals.csv")
    hours = (pd.to_datetime(intervals["timestamp"]) - START) / pd.Timedelta(hours=1)
    assert chart["x"] == pytest.approx(hours.tolist()) and chart["end"] == pytest.approx(1.5)
    lines = {ln["label"].split(":")[0]: ln["values"] for p in chart["panels"] for ln in p["lines"]}
    for column, label in [
        ("consumption_kw", "consumption (kW)"),
        ("firm_v_max_pu", "highest end-user voltage (pu)"),
        ("firm_v_min_pu", "lowest end-user voltage (pu)"),
        ("firm_max_loading_pct", "max loading (%)"),
        ("curtailed_static_fair_kw", "static fair (kW)"),
        ("curtailed_dynamic_optimal_kw", "dynamic optimal (kW)"),
    ]:
        assert lines[label] == pytest.approx(intervals[column].tolist(), abs=1e-3), column
    assert lines["generation (kW, negative)"] == pytest.approx((-intervals["generation_kw"]).tolist(), abs=1e-3)
    spans = [
        [(pd.Timestamp(a) - START) / pd.Timedelta(hours=1), (pd.Timestamp(b) - START) / pd.Timedelta(hours=1)]
        for a, b in zip(events["start"], events["end"])
    ]
    assert chart["spans"] == spans == [[0.5, 1.0], [1.25, 1.5]]  # quarter hours: exact
    res = runner.invoke(app, ["envelopes", str(case["path"]), *args, "--resolution", "7min", "--out", str(out)])
    assert res.exit_code == 2 and "whole multiple" in res.output


def test_activations_load_matplotlib_only_for_png(case, tmp_path):
    """The default outputs (csv, json, html) never import matplotlib; --format png writes
    activations.png (and only the files asked for)."""
    args = ["activations", str(case["path"]), "--profiles", str(case["csv"]), "--method", "fair", "--workers", "1"]
    args += ["--participants", _participants_csv(case, tmp_path), "--quiet"]
    assert plotting_modules_after([*args, "--out", str(tmp_path / "lean")]) == "[]"
    assert (tmp_path / "lean" / "report.html").exists() and not list((tmp_path / "lean").glob("*.png"))
    assert plotting_modules_after([*args, "--out", str(tmp_path / "png"), "--format", "png"]) == "['matplotlib']"
    assert sorted(p.name for p in (tmp_path / "png").iterdir() if not p.name.startswith(".")) == ["activations.png"]


def test_activations_reuse_an_earlier_run(case, tmp_path):
    runner = CliRunner()
    args = ["--profiles", str(case["csv"]), "--participants", _participants_csv(case, tmp_path), "--method", "fair"]
    env = tmp_path / "env"
    res = runner.invoke(
        app,
        [
            "envelopes",
            str(case["path"]),
            *args,
            "--workers",
            "1",
            "--out",
            str(env),
            "--format",
            "csv",
            "--format",
            "json",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    policy = ["--max-activations", "2", "--max-duration", "30min", "--json"]
    fresh = runner.invoke(
        app, ["activations", str(case["path"]), *args, *policy, "--workers", "1", "--out", str(tmp_path / "a1")]
    )
    reused = runner.invoke(
        app, ["activations", str(case["path"]), *args, *policy, "--envelopes", str(env), "--out", str(tmp_path / "a2")]
    )
    assert fresh.exit_code == reused.exit_code and fresh.exit_code in (0, 8), fresh.output
    a, b = json.loads(fresh.stdout), json.loads(reused.stdout)
    assert a["curtailed_kwh"] == b["curtailed_kwh"] and a["policy"] == b["policy"] and a["policy"]["satisfied"]
    res = runner.invoke(
        app,
        [
            "activations",
            str(case["path"]),
            *args,
            "--envelopes",
            str(env),
            "--resolution",
            "30min",
            "--out",
            str(tmp_path / "a3"),
        ],
    )
    assert res.exit_code == 2 and "intervals are not those of the profiles" in res.stderr


def test_static_and_dynamic_results_share_one_schema(case):
    from nfca.io import schema
    from nfca.studies.envelopes import run_envelopes

    dyn = case["study"]
    assert list(dyn.to_dataframe().columns) == ["timestamp", *schema.names(schema.ENVELOPES), "forecast_kw"]
    static = run_envelopes(case["feeder"], ["fair"], ["import"], dyn.options, case["part"])
    assert list(static.to_dataframe().columns) == schema.names(schema.ENVELOPES)
    assert set(static.summary["options"]) == set(dyn.summary["options"])  # kron, v_neutral_max_v... in both
    keys = set(schema.names(schema.SET_SUMMARY))
    assert set(static.summary["methods"]["fair"]["import"]) == keys == set(dyn.summary["static"]["fair"]["import"])


def _participants_csv(case, tmp_path) -> str:
    path = tmp_path / "participants.csv"
    pd.DataFrame({"end_user": sorted(case["part"])}).to_csv(path, index=False)
    return str(path)


# ----------------------------------------------------------------------------- the IEEE day


@pytest.mark.slow
def test_ieee_eulv_day(tmp_path):
    from feeders.ieee_eulv_profiles import OUT, generate

    feeder = read_feeder(IEEE_EULV)
    committed = read_csv(OUT)
    regenerated = generate().set_index("timestamp")
    np.testing.assert_allclose(committed.kw.to_numpy(), regenerated.to_numpy(), atol=1e-4)
    profiles = load_profiles(OUT, feeder, "15min")
    assert len(profiles) == 96
    from nfca.studies.envelopes import select_participants

    study = run_dynamic(feeder, profiles, participants=select_participants(feeder, "0.5", 0))
    assert all(len(c.dynamic) == 96 for c in study.chains)
    result = analyse(study)
    assert result.needed.sum() > 0 and result.policy_check()["activations"] >= 1
