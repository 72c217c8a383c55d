"""Derivation of the shipped market cases A-D (``market_bridge/cases/*.toml``) from design rules.

``python -m market_bridge.calibration`` rewrites the four case files and the data statements of
``market_bridge/README.md`` (between its ``calibration`` markers); the tests check that both are
reproduced. Every number in a case file is a design choice made here, with its
reason, or computed here from the MATPOWER data and those choices.

The design makes the seed's chapter-4 mechanisms happen for physical reasons:

* D141 (urban, case141 at case14 bus 9): its substation transformer is overloaded at the evening
  peak. Only a lower import (net upward activation in D141) relieves it, so a DSO market whose
  interface flow the TSO already fixed cannot (TSO-DSO schemes unsafe in A and D).
* D69 (rural, case69 at bus 14): a long lateral (nodes 53-65) ends below 0.95 pu at the peak
  (the DSO's own need, where voltage binds before current), and three storage units in its middle
  discharge on request. Their export raises the lateral above 1.05 pu once several run together,
  while each one alone is safe (bounded bid sizes).
* Case C adds bids at the critical nodes: where the lateral's voltage breaks first, and at the
  other end of the feeder, so a DSO with a fixed interface flow can redispatch (down where the
  voltage is high, up near the substation).
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from market_bridge.cases import CASES_DIR, SEEDS, _distribution, _transmission, build_case
from market_bridge.networks import build_transmission, lindistflow, read_matpower_case

# ------------------------------------------------------------------ design choices

SEED = SEEDS[0]
IMBALANCE_SHARE = 0.04  # real-time deviation: 4 % of the transmission load (a large forecast error)
T_LIMIT_FACTOR, T_LIMIT_STEP_MW, T_LIMIT_MIN_MW = 1.25, 5.0, 15.0  # lines sized 25 % above the schedule
D141 = dict(
    name="D141",
    case="case141",
    transmission_bus=9,
    load_scale=1.0,
    v_root_pu=1.03,
    vmin_pu=0.95,
    vmax_pu=1.05,
    limit_factor=1.5,
    min_limit_mva=1.0,
)
TRANSFORMER_BRANCH, TRANSFORMER_SHARE = "1-2", 0.85  # D141's substation rated at 85 % of the peak flow
D69 = dict(
    name="D69",
    case="case69",
    transmission_bus=14,
    load_scale=1.2,
    v_root_pu=1.045,
    vmin_pu=0.95,
    vmax_pu=1.05,
    limit_factor=1.5,
    min_limit_mva=1.0,
)
WEAK_LATERAL = (53, 65)  # case69's lateral from node 9: its end is the feeder's weakest point
DER_NODES = [57, 58, 60]  # unloaded nodes mid-lateral: storage units of a PV park
N_CRITICAL = 4  # critical nodes per end of the congested feeder (case C)
BIDS = dict(
    transmission_up_fraction=[0.05, 0.12],
    transmission_down_fraction=[0.05, 0.12],
    transmission_max_mw=5.0,
    distribution_up_fraction=[0.2, 0.8],
    distribution_down_fraction=[0.1, 0.5],
    distribution_max_mw=0.5,
    distribution_up_price=[43, 55],
    distribution_down_price=[18, 25],
)
DER = dict(up_mw=[1.0, 1.5], down_mw=[0, 0], up_price=[43, 47], down_price=[18, 25])
CRITICAL = dict(up_mw=[0.2, 0.4], down_mw=[0.3, 0.6], up_price=[170, 200], down_price=[18, 25])
PRICES = {  # seed §4.2: down 10-25, up 30-55 EUR/MW; distribution bids dearer than transmission ones
    "A": dict(transmission_up_price=[30, 42], transmission_down_price=[10, 17]),
    "B": dict(transmission_up_price=[90, 165], transmission_down_price=[10, 17]),
    "C": dict(transmission_up_price=[90, 165], transmission_down_price=[10, 17]),
    "D": dict(transmission_up_price=[30, 42], transmission_down_price=[10, 17]),
}
MARKET = dict(aggregation_step_mw=0.5, prequalification="price_oe", violation_penalty=1e4, voll_eur_per_mw=3000.0)
NFCA = dict(
    network="D69", node=27, method="optimal", bid_fraction=1.0, up_price=[43, 55], down_price=[18, 25], firm_flexible=[]
)


# ------------------------------------------------------------------ derived quantities


def _mean(rng: list[float]) -> float:
    return (rng[0] + rng[1]) / 2


@functools.cache
def transformer_rating_mva() -> float:
    """D141's substation rating: ``TRANSFORMER_SHARE`` of its peak apparent flow (rounded to kVA)."""
    net, _ = _distribution(D141)
    return round(TRANSFORMER_SHARE * float(lindistflow(net).s_mva[0]), 3)


def distributions() -> dict[str, dict[str, Any]]:
    """The two [[distribution]] tables."""
    d141 = dict(D141, line_limits_mva={TRANSFORMER_BRANCH: transformer_rating_mva()})
    return {"D141": d141, "D69": dict(D69)}


@functools.cache
def transmission_limits() -> tuple[dict[str, float], dict[str, float]]:
    """Line limits by the rule 1.25 x |scheduled flow| rounded up to 5 MW, at least 15 MW; and the
    scheduled flows they come from."""
    dists: dict[int, float] = {}
    for d in distributions().values():
        net, bus = _distribution(d)
        dists[bus] = dists.get(bus, 0.0) + float(net.load_mw.sum())
    lines = build_transmission(read_matpower_case("case14")).lines
    unlimited = {"transmission": {"case": "case14", "line_limits_mw": {f"{a}-{b}": 1e6 for a, b in lines}}}
    net, inj = _transmission(unlimited, dists)
    sched = {net.line_key(ln): round(float(f), 2) for ln, f in zip(net.lines, net.flows(inj))}
    limits = {
        k: max(T_LIMIT_MIN_MW, math.ceil(T_LIMIT_FACTOR * abs(f) / T_LIMIT_STEP_MW) * T_LIMIT_STEP_MW)
        for k, f in sched.items()
    }
    return limits, sched


def imbalance_mw() -> float:
    """``IMBALANCE_SHARE`` of the transmission load, in MW (rounded to 10 kW)."""
    return round(IMBALANCE_SHARE * float(read_matpower_case("case14").bus[:, 2].sum()), 2)


@functools.cache
def critical_nodes() -> list[int]:
    """Case C's critical nodes in D69: the ``N_CRITICAL`` nodes whose voltage is highest when every
    upward bid runs at its mean size (where the TSO's unchecked activation breaks the limit first),
    and the ``N_CRITICAL`` loaded nodes nearest the substation (the other end of the feeder, where an
    upward bid barely moves the voltage there)."""
    net, _ = _distribution(D69)
    up = np.minimum(_mean(BIDS["distribution_up_fraction"]) * net.load_mw, BIDS["distribution_max_mw"])
    for n in DER_NODES:
        up[net.node(n)] += _mean(DER["up_mw"])
    v = lindistflow(net, up).v_pu
    high = [net.bus_ids[i] for i in np.argsort(-v, kind="stable") if i != 0][:N_CRITICAL]
    path_r = net.downstream.T @ net.r_pu
    loaded = [i for i in np.argsort(path_r, kind="stable") if net.load_mw[i] > 0]
    near = [net.bus_ids[i] for i in loaded[:N_CRITICAL]]
    return sorted(high) + sorted(near)


def case_spec(name: str) -> dict[str, Any]:
    """The full parsed form of case ``name`` (what ``tomllib`` reads back from its file)."""
    return copy.deepcopy(_case_spec(name))


@functools.cache
def _case_spec(name: str) -> dict[str, Any]:
    limits, _ = transmission_limits()
    bids: dict[str, Any] = dict(BIDS, **PRICES[name])
    bids["der"] = dict(DER, nodes={"D69": list(DER_NODES)})
    if name == "C":
        bids["critical"] = dict(CRITICAL, nodes={"D69": critical_nodes()})
    imb = imbalance_mw()
    return {
        "name": name,
        "description": DESCRIPTION[name],
        "seed": SEED,
        "imbalance_mw": -imb if name == "D" else imb,
        "transmission": {"case": "case14", "load_scale": 1.0, "line_limits_mw": limits},
        "distribution": list(distributions().values()),
        "bids": bids,
        "market": dict(MARKET),
        "nfca": dict(NFCA),
    }


DESCRIPTION = {
    "A": "TSO upward need; distribution bids dearer than transmission bids",
    "B": "TSO upward need; transmission upward bids (90-165 EUR/MW) dearer than distribution ones",
    "C": "Case B plus upward (170-200 EUR/MW) and downward bids at D69's critical nodes",
    "D": "TSO downward need; prices as in case A",
}
HEADER = {
    "A": "demand exceeds generation, so the TSO has an UPWARD need. Downward bids cost\n"
    "# 10-25 EUR/MW, upward bids 30-55 EUR/MW, and distribution bids are dearer than transmission bids.",
    "B": "the imbalance of case A, but transmission upward bids (90-165 EUR/MW) are dearer\n"
    "# than distribution ones; other prices as in case A.",
    "C": "the bids of case B plus bids at D69's critical nodes: upward ones dearer than the\n"
    "# transmission upward bids (170-200 EUR/MW), downward ones as in case A (see [bids.critical]).",
    "D": "generation exceeds demand, so the TSO has a DOWNWARD need. Prices as in case A.",
}


# ------------------------------------------------------------------ rendering


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e5:
        return f"{v:.1f}"
    return repr(v) if isinstance(v, float) else str(v)


def render(name: str) -> str:
    """Case file ``name`` as TOML, every parameter commented."""
    spec = case_spec(name)
    limits, sched = transmission_limits()
    f = facts()
    out = [
        f"# Case {name} (seed section 4.2): {HEADER[name]}",
        "# Written by `python -m market_bridge.calibration` from its design rules; edit a copy, run it with",
        "#   nfca market run --case-file my_case.toml --scheme all --out DIR",
        "# Units: MW, MVA, per unit (pu), EUR/MW. Bus names are the MATPOWER case's bus ids.",
        "",
        f'name = "{name}"',
        f'description = "{spec["description"]}"',
        f"seed = {SEED}                     # bid-data seed (the study also uses {SEEDS[1]}: --seed)",
        f"imbalance_mw = {_toml_value(spec['imbalance_mw'])}"
        + " " * max(1, 16 - len(_toml_value(spec["imbalance_mw"])))
        + f"# {IMBALANCE_SHARE:.0%} of case14's {f['t_load_mw']:.1f} MW of load, "
        + ("upward need" if name != "D" else "downward need (surplus)"),
        "",
        "[transmission]",
        'case = "case14"                 # MATPOWER case of the `matpower` package (DC / PTDF model)',
        "load_scale = 1.0",
        f"# case14 ships without ratings: {T_LIMIT_FACTOR} x |scheduled flow| rounded up to {T_LIMIT_STEP_MW:.0f} MW, "
        f"at least {T_LIMIT_MIN_MW:.0f} MW",
        "[transmission.line_limits_mw]",
    ]
    for k, v in limits.items():
        out.append(f'"{k}" = {v:<6g}' + " " * max(1, 20 - len(f'"{k}" = {v:g}')) + f"# scheduled {sched[k]:.1f} MW")
    for d in spec["distribution"]:
        out += ["", "[[distribution]]"]
        for key in (
            "name",
            "case",
            "transmission_bus",
            "load_scale",
            "v_root_pu",
            "vmin_pu",
            "vmax_pu",
            "limit_factor",
            "min_limit_mva",
        ):
            out.append(
                f"{key} = {_toml_value(d[key])}"
                + " " * max(1, 24 - len(f"{key} = {_toml_value(d[key])}"))
                + f"# {DIST_COMMENT[d['name']].get(key, DIST_COMMENT['all'][key])}"
            )
        if d.get("line_limits_mva"):
            out.append("[distribution.line_limits_mva]")
            for k, v in d["line_limits_mva"].items():
                out.append(
                    f'"{k}" = {v}                # substation transformer: {TRANSFORMER_SHARE:.0%} of the '
                    f"{f['d141_peak_mva']:.3f} MVA peak flow"
                )
    b = spec["bids"]
    out += [
        "",
        "# One upward and one downward bid per bus with load (or generation): volume a uniform",
        "# fraction of the bus's load + generation, at most *_max_mw; price uniform in its range.",
        "[bids]",
    ]
    for key in BIDS:
        out.append(
            f"{key} = {_toml_value(b[key])}"
            + " " * max(1, 36 - len(f"{key} = {_toml_value(b[key])}"))
            + f"# {BID_COMMENT[key]}"
        )
    for key in ("transmission_up_price", "transmission_down_price"):
        out.append(
            f"{key} = {_toml_value(b[key])}"
            + " " * max(1, 36 - len(f"{key} = {_toml_value(b[key])}"))
            + f"# {BID_COMMENT[key]}"
        )
    out += [
        "",
        "# Storage units of a PV park mid-way along D69's weak lateral (53-65): full at the evening peak,",
        "# so they offer upward flexibility only, at the low end of the distribution price range. Each",
        f"# alone is safe; all together they lift the lateral to {f['der_all_up_v_max']:.3f} pu (limit 1.05).",
        "[bids.der]",
    ]
    for key in ("up_mw", "down_mw", "up_price", "down_price"):
        out.append(f"{key} = {_toml_value(b['der'][key])}")
    out += ["[bids.der.nodes]", f"D69 = {_toml_value(b['der']['nodes']['D69'])}"]
    if name == "C":
        c = b["critical"]
        out += [
            "",
            "# Critical nodes of D69: where the lateral's voltage breaks first when every upward bid runs,",
            "# and the loaded nodes nearest the substation. Upward bids dearer than transmission ones.",
            "[bids.critical]",
        ]
        for key in ("up_mw", "down_mw", "up_price", "down_price"):
            out.append(f"{key} = {_toml_value(c[key])}")
        out += ["[bids.critical.nodes]", f"D69 = {_toml_value(c['nodes']['D69'])}"]
    m = spec["market"]
    out += [
        "",
        "[market]",
        f"aggregation_step_mw = {_toml_value(m['aggregation_step_mw'])}       # bid aggregation: interface-flow step",
        f'prequalification = "{m["prequalification"]}"   # price_oe | uniform_oe | interrface | nfca',
        f"violation_penalty = {m['violation_penalty']:.0e}         # EUR/MW on soft limits in DSO layers",
        f"voll_eur_per_mw = {_toml_value(m['voll_eur_per_mw'])}        # value of lost load: the TSO's "
        "price for need left unmet",
    ]
    n = spec["nfca"]
    out += [
        "",
        "# LV feeder under a D69 node, used with --envelopes envelopes.csv and an @nfca scheme: each",
        "# participant bids bid_fraction x its capacity up and down, capped by its guaranteed export",
        "# (up) and import (down); non-participants bid only if listed in firm_flexible.",
        "[nfca]",
    ]
    for key in ("network", "node", "method", "bid_fraction", "up_price", "down_price", "firm_flexible"):
        out.append(f"{key} = {_toml_value(n[key])}")
    return "\n".join(out) + "\n"


DIST_COMMENT = {
    "all": {
        "name": "",
        "case": "MATPOWER case (ohms and kW converted by its own code)",
        "transmission_bus": "case14 bus it hangs under",
        "load_scale": "multiplies the case's loads",
        "v_root_pu": "substation set voltage",
        "vmin_pu": "MV planning band: +-5 %",
        "vmax_pu": "MV planning band: +-5 %",
        "limit_factor": "branch rating: 1.5 x peak flow (voltage binds first)",
        "min_limit_mva": "no branch rated below 1 MVA",
    },
    "D141": {"name": "urban network", "transmission_bus": "case14 bus 9", "v_root_pu": "no voltage issue at the peak"},
    "D69": {
        "name": "rural network",
        "transmission_bus": "case14 bus 14",
        "load_scale": "evening peak 20 % above the case's load",
        "v_root_pu": "raised at the peak; the lateral's end stays below vmin",
    },
}
BID_COMMENT = {
    "transmission_up_fraction": "of load + generation",
    "transmission_down_fraction": "of load + generation",
    "transmission_max_mw": "bounded bid size",
    "distribution_up_fraction": "demand response: 20-80 % of the node's load",
    "distribution_down_fraction": "10-50 % more load",
    "distribution_max_mw": "bounded: no bid alone breaks a limit",
    "distribution_up_price": "EUR/MW, above the transmission upward range of case A",
    "distribution_down_price": "EUR/MW, above the transmission downward range",
    "transmission_up_price": "EUR/MW",
    "transmission_down_price": "EUR/MW",
}


@functools.cache
def facts() -> dict[str, Any]:
    """Numbers the case files and the README state, computed from the design."""
    d141, _ = _distribution(distributions()["D141"])
    d69, _ = _distribution(D69)
    st141, st69 = lindistflow(d141), lindistflow(d69)
    limit = d141.p_limit_mw[0]
    up = np.zeros(d69.n_nodes)
    for n in DER_NODES:
        up[d69.node(n)] += DER["up_mw"][1]
    return {
        "t_load_mw": float(read_matpower_case("case14").bus[:, 2].sum()),
        "imbalance_mw": imbalance_mw(),
        "d141_peak_mva": float(st141.s_mva[0]),
        "d141_rating_mva": transformer_rating_mva(),
        "d141_import_cut_mw": float(st141.p_mw[0] - limit),
        "d141_v_min_pu": float(st141.v_pu.min()),
        "d69_v_min_pu": float(st69.v_pu.min()),
        "d69_v_min_node": d69.bus_ids[int(np.argmin(st69.v_pu))],
        "der_all_up_v_max": float(lindistflow(d69, up).v_pu.max()),
        "critical_nodes": critical_nodes(),
    }


def volumes(name: str, seed: int) -> dict[str, float]:
    """Bid volumes (MW) of case ``name`` with bid-data ``seed``, by area, direction and kind."""
    case = build_case(case_spec(name), seed=seed)
    out: dict[str, float] = {}
    for b in case.bids:
        key = f"{'T' if b.area == 'T' else 'D'}_{b.kind}_{b.direction}"
        out[key] = out.get(key, 0.0) + b.qty_mw
    return out


def readme_block() -> str:
    """The data statements of ``market_bridge/README.md`` (its ``calibration`` section)."""
    f = facts()
    limits, sched = transmission_limits()
    lines = (
        [
            f"* Imbalance: {IMBALANCE_SHARE:.0%} of case14's {f['t_load_mw']:.1f} MW load = "
            f"{f['imbalance_mw']:.2f} MW (A-C upward, D downward).",
            f"* D141's substation transformer (branch {TRANSFORMER_BRANCH}): peak flow {f['d141_peak_mva']:.3f} MVA, "
            f"rated {f['d141_rating_mva']:.3f} MVA ({TRANSFORMER_SHARE:.0%}): its import must fall by "
            f"{f['d141_import_cut_mw']:.3f} MW. Lowest D141 voltage {f['d141_v_min_pu']:.4f} pu.",
            f"* D69 at the peak (load x{D69['load_scale']}, substation {D69['v_root_pu']} pu): lowest voltage "
            f"{f['d69_v_min_pu']:.4f} pu at node {f['d69_v_min_node']} (limit {D69['vmin_pu']}).",
            f"* Storage units at D69 nodes {DER_NODES}: {DER['up_mw'][0]}-{DER['up_mw'][1]} MW each; at their largest "
            f"size, all three lift D69 to {f['der_all_up_v_max']:.4f} pu.",
            f"* Case C critical nodes (D69): {f['critical_nodes']}.",
            "",
            "| line | scheduled MW | limit MW |",
            "|---|---|---|",
        ]
        + [f"| {k} | {sched[k]:.1f} | {v:g} |" for k, v in limits.items()]
        + [
            "",
            "| case | seed | T up | T down | D up (demand) | D down | storage up | critical up | critical down |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    )
    for name in ("A", "B", "C", "D"):
        for seed in SEEDS:
            v = volumes(name, seed)
            cells = [
                v.get(k, 0.0)
                for k in (
                    "T_regular_up",
                    "T_regular_down",
                    "D_regular_up",
                    "D_regular_down",
                    "D_der_up",
                    "D_critical_up",
                    "D_critical_down",
                )
            ]
            lines.append(f"| {name} | {seed} | " + " | ".join(f"{x:.2f}" for x in cells) + " |")
    return "\n".join(lines)


README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- calibration: begin -->", "<!-- calibration: end -->"


def update_readme(path: Path = README) -> None:
    """Replace the data statements between the README's calibration markers."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + BEGIN + "\n" + readme_block() + "\n" + END + rest.split(END, 1)[1])


def write_cases(folder: Path = CASES_DIR) -> list[Path]:
    """Write the four case files."""
    out = []
    for name in ("A", "B", "C", "D"):
        path = Path(folder) / f"{name}.toml"
        path.write_text(render(name))
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write_cases():
        print(f"wrote {p}")
    update_readme()
    print(f"updated the data statements in {README}")
