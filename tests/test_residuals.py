"""Physics residuals of envelope solutions: Kirchhoff's current law and the power balance.

Two solutions are checked against the network data of the `Feeder` (impedances in ohms, the
source's Norton equivalent, the end-users' legs), recomputed here in volts and amps:

- the published operating points (each box corner and each limit's worst vertex), solved by an
  independent OpenDSS power flow: every conductor's currents sum to zero (but the source bus's:
  see `balance`), the line currents OpenDSS reports are those its voltages drive through the
  cables, and the power leaving the source bus less the end-users' powers is the power lost in
  lines and transformers (positive);
- the optimisation model's own solution (every scenario of a solved run): KCL holds at every
  conductor to Ipopt's tolerance, and the model's leg currents carry the end-users' powers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from nfca.engine import powerflows, read_feeder
from nfca.model.box import Guarantee
from nfca.model.envelope import Direction, EnvelopeOptions, Method
from nfca.model.network import EARTH, Feeder
from nfca.opf.formulation import user_powers, voltages
from nfca.opf.problem import EnvelopeProblem, _Run
from nfca.studies.envelopes import run_envelopes
from nfca.verify import promised_box, promised_points
from tests.feeder_texts import IEEE_EULV, four_wire_text, three_wire_text, write_dss

KCL_TOL = 1e-6  # of the largest current meeting at the conductor ...
KCL_TOL_A = 1e-5  # ... plus this
BALANCE_TOL = 1e-6  # of the source's power ...
BALANCE_TOL_W = 0.1  # ... plus this


@dataclass
class Balance:
    """Currents (A) leaving every conductor into the network, and the powers (W) that meet."""

    residual_a: dict[tuple[str, int], complex]  # sum of the currents leaving the conductor (where observable)
    scale_a: dict[tuple[str, int], float]  # the largest of them
    line_amps: dict[str, float]  # highest conductor current per line, at either end
    source_w: float  # delivered by the source
    users_w: float  # taken by the end-users (consumption +)
    losses_w: float  # dissipated in lines, transformers and shunts


def balance(
    feeder: Feeder,
    v: dict[tuple[str, int], complex],
    loads_kw_kvar: dict[str, tuple[float, float]],
    e_v: np.ndarray | None = None,
) -> Balance:
    """KCL and power balance at node voltages `v` (V) with the end-users at `loads_kw_kvar`, from the
    feeder's impedances alone.

    With the source's open-circuit voltages `e_v`, its current Y (E - V) is part of KCL at the
    source bus. Without them the source bus is not observable (an OpenDSS flow: a stiff source's
    current is a huge admittance times the difference of two voltages known to 1e-10 pu): KCL is
    checked everywhere else, and the source's power is what leaves its bus into the network."""
    out: dict[tuple[str, int], complex] = {bn: 0j for bn in v}
    scale: dict[tuple[str, int], float] = {bn: 0.0 for bn in v}

    def volts(terminals) -> np.ndarray:
        return np.array([0j if node == EARTH else v[(bus, node)] for bus, node in terminals])

    def leave(terminals, currents) -> None:
        for (bus, node), i in zip(terminals, currents):
            if node != EARTH:
                out[(bus, node)] += i
                scale[(bus, node)] = max(scale[(bus, node)], abs(i))

    losses, line_amps = 0.0, {}
    for line in feeder.lines:
        tf, tt = [(line.bus_from, n) for n in line.nodes_from], [(line.bus_to, n) for n in line.nodes_to]
        vf, vt = volts(tf), volts(tt)
        series = np.linalg.solve(line.z_ohm, vf - vt)
        i_from, i_to = series + line.y_shunt_s / 2 @ vf, -series + line.y_shunt_s / 2 @ vt
        leave(tf, i_from)
        leave(tt, i_to)
        line_amps[line.name] = float(max(np.abs(i_from).max(), np.abs(i_to).max()))
        losses += float(np.real(vf @ np.conj(i_from) + vt @ np.conj(i_to)))
    for el in feeder.elements:
        ve = volts(el.terminals)
        i = el.y_s @ ve
        leave(el.terminals, i)
        losses += float(np.real(ve @ np.conj(i)))
    users_w = 0.0
    for u in feeder.end_users:
        p, q = loads_kw_kvar.get(u.name, (u.p_kw, u.q_kvar))
        users_w += p * 1e3
        for plus, minus in u.legs:
            dv = volts([(u.bus, plus)])[0] - volts([(u.bus, minus)])[0]
            i = np.conj(complex(p, q) * 1e3 / len(u.legs) / dv)  # plus -> the user -> minus
            leave([(u.bus, plus), (u.bus, minus)], [i, -i])
    src = feeder.source
    ts = [(src.bus, n) for n in src.nodes]
    vs = volts(ts)
    if e_v is None:
        source_w = float(np.real(vs @ np.conj(np.array([out[bn] for bn in ts]))))
        for bn in ts:
            del out[bn], scale[bn]
    else:
        i_src = src.y_s @ (e_v - vs)  # into the network
        leave(ts, -i_src)
        source_w = float(np.real(vs @ np.conj(i_src)))
    return Balance(out, scale, line_amps, source_w, users_w, losses)


def assert_kirchhoff(b: Balance, where: str) -> None:
    excess = {bn: abs(r) - (KCL_TOL * b.scale_a[bn] + KCL_TOL_A) for bn, r in b.residual_a.items()}
    worst = max(excess, key=excess.get)
    assert excess[worst] <= 0, (
        f"{where}: KCL residual {abs(b.residual_a[worst]):.3g} A at {worst} where {b.scale_a[worst]:.3g} A meet"
    )
    assert b.losses_w > 0, where  # a passive network dissipates
    gap = b.source_w - b.users_w - b.losses_w
    assert abs(gap) <= BALANCE_TOL * abs(b.source_w) + BALANCE_TOL_W, f"{where}: source - users - losses = {gap:.3g} W"


# ----------------------------------------------------------------------------- the published points

FEEDERS = {
    "three-wire": lambda: three_wire_text(n_segments=5),  # delta and phase-to-phase users
    "four-wire": lambda: four_wire_text(n_segments=6),  # explicit neutral, earthed at the transformer
}


def _published_points_balance(feeder: Feeder, methods: list[str]) -> int:
    """Solve the envelopes, run OpenDSS at every point they are promised for, check each flow;
    the number of flows checked."""
    options = EnvelopeOptions()
    study = run_envelopes(feeder, methods, ["import", "export"], options)
    checked = 0
    for method in methods:
        sets = [e for e in study.envelopes if e.method.value == method]
        box = promised_box(feeder, sets, options)
        points = promised_points(box, sets)
        cases = [box.loads(p) for p in points]
        for point, case, flow in zip(points, cases, powerflows(feeder, cases, options.source_pu)):
            assert flow.converged, point.label
            b = balance(feeder, dict(flow.voltages.items()), case)
            assert_kirchhoff(b, f"{method}, {point.label}")
            for line, amps in b.line_amps.items():  # what OpenDSS reports is what its voltages drive
                assert flow.line_amps[line] == pytest.approx(amps, rel=1e-6, abs=1e-6), (method, point.label, line)
            checked += 1
    return checked


@pytest.mark.parametrize("name", list(FEEDERS))
def test_published_points_satisfy_kirchhoff_in_opendss(tmp_path, name):
    feeder = read_feeder(write_dss(tmp_path, FEEDERS[name]()))
    assert _published_points_balance(feeder, ["optimal", "fair"]) >= 4  # two corners per method at least


@pytest.mark.slow
def test_published_points_satisfy_kirchhoff_on_the_ieee_feeder():
    feeder = read_feeder(IEEE_EULV)
    assert _published_points_balance(feeder, ["fair"]) >= 2


# ----------------------------------------------------------------------------- the model's own solution


@pytest.mark.parametrize("name", [*FEEDERS, pytest.param("ieee", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", [Method.optimal, Method.fair])
def test_the_model_solution_satisfies_kirchhoff(tmp_path, name, method):
    """Every scenario of a solved box run (one vertex of the box each): the model's voltages and
    leg currents, in volts and amps, meet KCL on the model's (reduced) feeder, and each leg
    current carries its share of the end-user's power."""
    feeder = read_feeder(IEEE_EULV if name == "ieee" else write_dss(tmp_path, FEEDERS[name]()))
    problem = EnvelopeProblem(feeder, EnvelopeOptions(guarantee=Guarantee.box))
    run = _Run(problem, method, Guarantee.box, (Direction.import_, Direction.export), None)
    assert run.solve().ok
    net, model = problem.net, problem.model_feeder
    e_v = net.src_e * model.buses[model.source.bus].kv_base_ln * 1e3
    i_base = net.s_base_va / net.v_base  # A per pu, per conductor
    assert run.blocks
    for k, b in enumerate(run.blocks):
        v_pu = voltages(b, net)
        s_kva = user_powers(b, net) * net.s_base_va / 1e3
        loads = {n: (s.real, s.imag) for n, s in zip(net.users, s_kva)}
        bal = balance(model, {bn: v_pu[i] * net.v_base[i] for i, bn in enumerate(net.nodes)}, loads, e_v)
        assert_kirchhoff(bal, f"{method.value}, scenario {k} ({run.points[k].label})")
        for (u, leg), (plus, minus) in ((key, net.user_legs[key[0]][key[1]]) for key in b.L):
            node = plus if plus >= 0 else minus
            i_model = (b.lr[u, leg].value + 1j * b.li[u, leg].value) * i_base[node]
            dv = sum(sign * v_pu[i] * net.v_base[i] for sign, i in ((1, plus), (-1, minus)) if i >= 0)
            s_leg = s_kva[u] * 1e3 / len(net.user_legs[u])
            assert abs(dv * np.conj(i_model) - s_leg) <= 1e-6 * max(abs(s_leg), 1e3), (k, net.users[u], leg)
