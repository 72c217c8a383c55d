"""Solver faults: each is reported with Ipopt's status and what was tried, and nothing unverified
is written.

The iteration and time limits are forced through `--ipopt-option` (EnvelopeOptions.ipopt_options);
a numerical failure by making the model's objective evaluate to NaN inside Ipopt (Ipopt then stops
with Invalid_Number_Detected).
"""

from __future__ import annotations

import dataclasses
import importlib
import json

import pandas as pd
import pytest
from pyomo.contrib.pynumero.interfaces import cyipopt_interface
from typer.testing import CliRunner

from cli import app
from nfca.engine import read_feeder
from nfca.errors import SolverError
from nfca.model.envelope import EnvelopeOptions
from nfca.opf.problem import EnvelopeProblem
from nfca.solver import Result as SolveResult
from nfca.solver.ipopt import IpoptSession
from tests.feeder_texts import four_wire_kron_text, three_wire_text, write_dss
from tests.helpers import error_lines

runner = CliRunner()
ONE = [
    "--method",
    "optimal",
    "--direction",
    "import",
    "--guarantee",
    "direction",
    "--format",
    "csv",
    "--format",
    "json",
]


@pytest.fixture
def small(tmp_path):
    return write_dss(tmp_path, three_wire_text(n_segments=3))


def _envelopes(feeder, out, *extra):
    return runner.invoke(app, ["envelopes", str(feeder), "--out", str(out), *ONE, *extra])


def _nothing_written(out):
    return not (out / "envelopes.csv").exists() and not (out / "summary.json").exists()


def _one_line(res) -> str:
    message = error_lines(res.stderr)
    assert message.count("\n") == 0 and "Traceback" not in res.output and "WARNING" not in res.output, message
    return message


def test_iteration_limit_names_the_status_and_the_retry(small, tmp_path):
    out = tmp_path / "out"
    res = _envelopes(small, out, "--ipopt-option", "max_iter=1")
    assert res.exit_code == 4, res.output
    message = _one_line(res)
    for part in (
        "optimal import",
        "after 2 attempt(s)",
        "1) warm start, adaptive barrier",
        "2) the same warm start again, monotone barrier",
        "iteration_limit (Maximum_Iterations_Exceeded)",
        "max_iter 1",
        "nothing was written",
    ):
        assert part in message, (part, message)
    assert _nothing_written(out)


def test_time_limit(small, tmp_path):
    out = tmp_path / "out"
    res = _envelopes(small, out, "--ipopt-option", "max_cpu_time=1e-9")
    assert res.exit_code == 4, res.output
    message = _one_line(res)
    assert "time_limit (Maximum_CpuTime_Exceeded)" in message and "after 2 attempt(s)" in message
    assert _nothing_written(out)


def test_numerical_failure(small, tmp_path, monkeypatch):
    monkeypatch.setattr(cyipopt_interface.CyIpoptNLP, "objective", lambda self, x: float("nan"))
    out = tmp_path / "out"
    res = _envelopes(small, out)
    assert res.exit_code == 4, res.output
    message = _one_line(res)
    assert message.count("numerical_failure (Invalid_Number_Detected)") == 2, message
    assert "after 2 attempt(s)" in message and "monotone barrier" in message
    assert _nothing_written(out)


def test_infeasible_names_the_limit_and_is_not_retried(tmp_path):
    feeder = write_dss(tmp_path, four_wire_kron_text(n_segments=8, seg_m=100, kw=8))
    out = tmp_path / "out"
    res = _envelopes(feeder, out, "--participants", "0")
    assert res.exit_code == 3, res.output
    message = _one_line(res)
    for part in (
        "no import envelope exists",
        "firm connections alone violate",
        "voltage bus",
        "pu",
        "Ipopt: Infeasible_Problem_Detected",
        "not retried",
    ):
        assert part in message, (part, message)
    assert _nothing_written(out)


def _failing_first(monkeypatch, first: SolveResult | dict):
    """Make the first Ipopt attempt fail (a result, or options passed to it); later ones run normally."""
    real = IpoptSession.solve
    calls = []

    def solve(self, x0, options, lb=None, ub=None, warm=None):
        calls.append(options)
        if len(calls) == 1:
            if isinstance(first, SolveResult):
                return first, None
            return real(self, x0, {**options, **first}, lb, ub, warm)
        return real(self, x0, options, lb, ub, warm)

    monkeypatch.setattr(IpoptSession, "solve", solve)
    return calls


def test_the_retry_rescues_a_failed_first_attempt(small, tmp_path, monkeypatch):
    clean = _envelopes(small, tmp_path / "clean")
    assert clean.exit_code == 0, clean.output
    calls = _failing_first(monkeypatch, {"max_iter": 2})
    out = tmp_path / "out"
    res = _envelopes(small, out)
    assert res.exit_code == 0, res.output
    assert calls[1]["mu_strategy"] == "monotone"  # the retry
    summary = json.loads((out / "summary.json").read_text())["methods"]["optimal"]["import"]
    assert summary["verified"] and summary["solver_status"] in ("optimal", "acceptable")
    # the same optimum as without the failure (the tie-break makes it unique)
    got, want = (
        pd.read_csv(d / "envelopes.csv").set_index("end_user")["guaranteed_kw"] for d in (out, tmp_path / "clean")
    )
    assert got.sum() == pytest.approx(want.sum(), abs=0.002 * len(want))
    assert (got - want).abs().max() <= 0.02


def test_an_infeasible_verdict_the_zero_envelope_contradicts_is_retried(small, tmp_path, monkeypatch):
    calls = _failing_first(monkeypatch, SolveResult("infeasible", "Infeasible_Problem_Detected: x", 7, 0.0))
    res = _envelopes(small, tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert calls[1]["mu_strategy"] == "monotone"


def test_an_infeasible_verdict_that_persists_is_a_solver_failure(small, tmp_path, monkeypatch):
    verdict = SolveResult(
        "infeasible", "Infeasible_Problem_Detected: Converged to a point of local infeasibility", 9, 0.0
    )
    monkeypatch.setattr(IpoptSession, "solve", lambda self, *a, **k: (verdict, None))
    out = tmp_path / "out"
    res = _envelopes(small, out)
    assert res.exit_code == 4, res.output
    message = _one_line(res)
    assert message.count("infeasible (Infeasible_Problem_Detected) after 9 iterations") == 2, message
    assert _nothing_written(out)


def test_an_envelope_that_fails_verification_is_not_written(small, tmp_path, monkeypatch):
    checks = importlib.import_module("nfca.verify.check")  # the module: nfca.verify.check names the function
    real = checks._solve

    def inflated(feeder, groups, options, *args):  # publish twice what the model proved: OpenDSS must object
        twice = [
            [dataclasses.replace(e, guaranteed_kw={k: 2 * v for k, v in e.guaranteed_kw.items()}) for e in g]
            for g in groups
        ]
        return real(feeder, twice, options, *args)

    monkeypatch.setattr(checks, "_solve", inflated)  # what run_envelopes' Verifier calls for each set's power flows
    out = tmp_path / "out"
    res = _envelopes(small, out)
    assert res.exit_code == 5, res.output
    message = _one_line(res)
    assert "optimal import envelopes failed OpenDSS verification" in message and "nothing was written" in message
    assert _nothing_written(out)


def test_ipopt_options_in_the_library(small):
    options = EnvelopeOptions(ipopt_options={"max_iter": 1})
    assert options.ipopt_options == (("max_iter", 1),)
    hash(options)  # still a value
    problem = EnvelopeProblem(read_feeder(small), options)
    with pytest.raises(SolverError, match="iteration_limit") as err:
        problem.solve("fair", "export", guarantee="direction")
    assert err.value.exit_code == 4
    assert str(err.value).count("iteration_limit (Maximum_Iterations_Exceeded)") == 2
