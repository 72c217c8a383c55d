"""A guarantee holds for any use within it: robust envelopes against the exhaustive ground truth.

On small unbalanced feeders every vertex of the promised box (2^n for n end-users) is solved by
OpenDSS: the robust sets hold at all of them, the seed's corner sets demonstrably do not, and the
limit each set names as binding is reached at one of the points nfca checked (so a set of zeros
could not pass).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nfca.engine import powerflows, read_feeder
from nfca.model.box import Box, Guarantee
from nfca.model.envelope import EnvelopeOptions
from nfca.model.network import EARTH, leg_label, leg_nominal_pu
from nfca.studies.envelopes import run_envelopes
from nfca.verify import check, promised_box, promised_points
from tests.feeder_texts import four_wire_text, three_wire_text, write_dss

FEEDERS = {
    "three-wire": lambda: three_wire_text(n_segments=5),  # 10 end-users, delta and phase-to-phase
    "four-wire": lambda: four_wire_text(n_segments=6),  # 7 end-users, explicit neutral
}


@pytest.fixture(scope="module", params=list(FEEDERS))
def feeder(request, tmp_path_factory):
    return read_feeder(write_dss(tmp_path_factory.mktemp(request.param), FEEDERS[request.param]()))


def _vertices(box: Box) -> list[np.ndarray]:
    free = np.flatnonzero(box.hi_kw > box.lo_kw)
    out = []
    for bits in itertools.product([0.0, 1.0], repeat=len(free)):
        t = np.ones(len(box.users))
        t[free] = bits
        out.append(t)
    return out


def _broken(feeder, box: Box, options: EnvelopeOptions) -> int:
    """How many vertices of the box break a limit in OpenDSS."""
    flows = powerflows(feeder, [box.loads(t) for t in _vertices(box)], options.source_pu)
    return sum(not check(feeder, pf, options).verified for pf in flows)


def test_corner_sets_break_limits_inside_their_box(feeder):
    options = EnvelopeOptions(guarantee=Guarantee.corner, audit_points=0)
    # run_envelopes verifies the sets at the corner itself, as the seed defines it (or raises)
    study = run_envelopes(feeder, ["optimal", "fair"], ["import", "export"], options)
    for method in ("optimal", "fair"):
        sets = [e for e in study.envelopes if e.method.value == method]
        box = promised_box(feeder, sets, options)  # each user between its export and import envelope
        assert _broken(feeder, box, options) > 0, method


@pytest.mark.parametrize("guarantee", [Guarantee.box, Guarantee.direction])
def test_robust_sets_hold_at_every_vertex_of_their_box(feeder, guarantee):
    options = EnvelopeOptions(guarantee=guarantee, audit_points=20)
    study = run_envelopes(feeder, ["optimal", "fair"], ["import", "export"], options)
    groups = {}
    for e in study.envelopes:
        key = e.method if guarantee is Guarantee.box else (e.method, e.direction)
        groups.setdefault(key, []).append(e)
    for key, sets in groups.items():
        box = promised_box(feeder, sets, options)
        assert _broken(feeder, box, options) == 0, key
        assert sum(e.total_kw for e in sets) > 1.0, key  # not a set of zeros


def _binding_reached(feeder, sets, options) -> dict[str, float]:
    """For each binding limit named in `sets`: how close (pu, or % for currents) the checked
    points come to it in OpenDSS."""
    box = promised_box(feeder, sets, options)
    points = promised_points(box, sets)
    flows = powerflows(feeder, [box.loads(p) for p in points], options.source_pu)
    gaps = {}
    for e in sets:
        for b in e.binding.values():
            if b.kind == "voltage":
                legs = [(u, leg) for u in feeder.end_users if u.bus == b.element for leg in u.legs
                        if leg_label(leg) == b.phase]
                base = feeder.buses[b.element].kv_base_ln * 1e3
                mags = [abs(pf.voltages.get((b.element, leg[0]), 0) - (pf.voltages.get((b.element, leg[1]), 0)
                            if leg[1] != EARTH else 0)) / (base * leg_nominal_pu(leg))
                        for pf in flows for _, leg in legs]
                gaps[b.text] = min(abs(m - b.value) for m in mags)
            elif b.kind == "current":
                line = next(x for x in feeder.lines if x.name == b.element)
                gaps[b.text] = min(abs(100 * pf.line_amps[line.name] / line.ampacity_a - 100) for pf in flows)
            elif b.kind == "rating":
                el = next(x for x in feeder.elements if x.name == b.element)
                gaps[b.text] = min(abs(100 * pf.element_amps[el.name] / el.rating_a - 100) for pf in flows)
    return gaps


@pytest.mark.parametrize("guarantee", [Guarantee.box, Guarantee.direction])
def test_the_binding_limit_is_reached_at_a_checked_point(feeder, guarantee):
    options = EnvelopeOptions(guarantee=guarantee, audit_points=0)
    study = run_envelopes(feeder, ["optimal", "fair"], ["import", "export"], options)
    groups = {}
    for e in study.envelopes:
        groups.setdefault(e.method if guarantee is Guarantee.box else (e.method, e.direction), []).append(e)
    named = 0
    for sets in groups.values():
        for text, gap in _binding_reached(feeder, sets, options).items():
            named += 1
            tol = 0.5 if text.startswith(("ampacity", "rating")) else 1e-3
            assert gap <= tol, (text, gap)
    assert named > 0  # these feeders are congested: some limit binds


def test_every_method_is_robust(tmp_path):
    f = read_feeder(write_dss(tmp_path, four_wire_text(n_segments=6)))
    options = EnvelopeOptions(guarantee=Guarantee.box, audit_points=50)
    methods = ["optimal", "fair", "proportional", "propfair", "maxmin"]
    study = run_envelopes(f, methods, ["import", "export"], options)
    assert {e.method.value for e in study.envelopes} == set(methods)
    for e, v in zip(study.envelopes, study.verifications):
        assert v.audit_violations == 0 and v.points_checked >= 2
        assert e.total_kw > 1.0
