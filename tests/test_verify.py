"""Verification in the background: the same verdicts as one after another, errors not lost."""

from __future__ import annotations

import threading

import pytest

from nfca.engine import read_feeder
from nfca.errors import SolverError
from nfca.model.envelope import EnvelopeOptions
from nfca.opf.problem import EnvelopeProblem
from nfca.studies.envelopes import run_envelopes
from nfca.verify import Verifier, verify


def test_background_verification_gives_the_verdicts_of_verification_in_turn(kron_feeder):
    feeder = read_feeder(kron_feeder)
    options = EnvelopeOptions(audit_points=30)
    problem = EnvelopeProblem(feeder, options)
    groups = [problem.solve("optimal"), problem.solve("fair")]  # a box: both directions each
    verifier = Verifier(feeder, options)
    for group in groups:
        verifier.submit(group)
    got = list(verifier.results())
    assert [g for g, _ in got] == groups  # in the order submitted
    in_turn = [verify(feeder, g, options) for g in groups]
    assert [v for _, v in got] == in_turn
    assert all(v.verified and v.audit_points == 30 for v in in_turn)


def test_an_error_while_verifying_in_the_background_reaches_the_caller(kron_feeder):
    feeder = read_feeder(kron_feeder)
    verifier = Verifier(feeder, EnvelopeOptions())
    verifier.submit([])  # no set: verify cannot build a box
    with pytest.raises(IndexError):
        list(verifier.results())


def test_a_run_stopped_by_an_error_leaves_no_verification_behind(kron_feeder, monkeypatch):
    """The next run in the same process (a notebook) must have the engine to itself: a stopped
    run waits for the group being verified and drops the rest."""
    feeder = read_feeder(kron_feeder)
    options = EnvelopeOptions(audit_points=30)
    solve = EnvelopeProblem.solve

    def fair_fails(self, method, *a, **k):
        if method == "fair":
            raise SolverError("stand-in for a solver failure in the second method")
        return solve(self, method, *a, **k)

    monkeypatch.setattr(EnvelopeProblem, "solve", fair_fails)
    with pytest.raises(SolverError):
        run_envelopes(feeder, ["optimal", "fair"], options=options)
    assert not [t for t in threading.enumerate() if t.name == "nfca-verify"]
    monkeypatch.setattr(EnvelopeProblem, "solve", solve)
    again = run_envelopes(feeder, ["optimal"], options=options)
    assert again.verifications[0] == verify(feeder, list(again.envelopes), options)
