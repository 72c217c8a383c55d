"""Case files (TOML) and seeded bid generation for the TSO-DSO market study (seed §4.2).

A case file holds every parameter: the imbalance, the networks and their line limits, the price
and volume ranges of the bids, the market options and the optional NFCA LV feeder. ``load_case``
validates it and returns a ``Case`` with the built networks and the generated bids.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from market_bridge.networks import (
    Distribution,
    Transmission,
    build_distribution,
    build_transmission,
    lindistflow,
    read_matpower_case,
)

CASES_DIR = Path(__file__).resolve().parent / "cases"
PREQUALIFICATION_METHODS = ("price_oe", "uniform_oe", "interrface", "nfca")
NFCA_METHODS = ("optimal", "fair", "proportional", "propfair", "maxmin")
ENVELOPE_COLUMNS = ("end_user", "connection_point", "bus", "phases", "connection", "capacity_kva",
                    "direction", "method", "guaranteed_kw", "binding")


class CaseError(ValueError):
    """A case file or envelope file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Bid:
    """One flexibility bid. ``up`` = more injection or less consumption; volumes in MW."""

    bid_id: str
    area: str  # "T" for transmission, else the distribution network's name
    bus: int  # case bus id (transmission bus or distribution node)
    direction: str  # "up" | "down"
    qty_mw: float
    price: float  # EUR/MW
    kind: str = "regular"  # regular | critical | lv
    end_user: str = ""

    @property
    def sign(self) -> int:
        """Effect on net injection: +1 for up, -1 for down."""
        return 1 if self.direction == "up" else -1


@dataclass(frozen=True)
class Case:
    """A built case: networks, base state, bids and market options."""

    name: str
    spec: dict[str, Any]
    transmission: Transmission
    distributions: dict[str, Distribution]
    interface_bus: dict[str, int]  # distribution name -> transmission bus id
    base_injection_mw: np.ndarray  # transmission net injection before balancing (sums to -imbalance)
    imbalance_mw: float
    bids: tuple[Bid, ...]
    aggregation_step_mw: float
    prequalification: str
    penalty: float
    lv_caps: dict[str, float] = field(default_factory=dict)  # LV bid_id -> NFCA cap (MW)
    nfca_method: str = ""

    def bids_in(self, area: str) -> list[Bid]:
        return [b for b in self.bids if b.area == area]


def _range(spec: dict[str, Any], key: str) -> tuple[float, float]:
    val = spec.get(key)
    if not (isinstance(val, list) and len(val) == 2 and all(isinstance(v, (int, float)) for v in val)
            and val[0] <= val[1]):
        raise CaseError(f"'{key}' must be a [low, high] pair of numbers, got {val!r}")
    return float(val[0]), float(val[1])


def _get(spec: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in spec:
        raise CaseError(f"missing '{key}' in {where}")
    val = spec[key]
    if not isinstance(val, typ) or isinstance(val, bool):
        raise CaseError(f"'{key}' in {where} has the wrong type ({type(val).__name__})")
    return val


def case_file(name: str) -> Path:
    """Path of a shipped case file (A, B, C or D)."""
    path = CASES_DIR / f"{name.upper()}.toml"
    if not path.exists():
        raise CaseError(f"unknown case {name!r} (shipped: {', '.join(p.stem for p in sorted(CASES_DIR.glob('*.toml')))})")
    return path


def read_spec(path: Path) -> dict[str, Any]:
    """Parse a case TOML file, turning syntax errors into ``CaseError``."""
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CaseError(f"cannot read case file {path}: {exc}") from exc


def read_envelopes(path: Path) -> pd.DataFrame:
    """Read and validate an ``envelopes.csv`` written by ``nfca envelopes``."""
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CaseError(f"cannot read envelopes file {path}: {exc}") from exc
    missing = [c for c in ENVELOPE_COLUMNS if c not in df.columns]
    if missing:
        raise CaseError(f"envelopes file {path} lacks columns {missing}")
    if not df["direction"].isin(["import", "export"]).all():
        raise CaseError(f"envelopes file {path}: direction must be import or export")
    if not df["method"].isin(NFCA_METHODS).all():
        raise CaseError(f"envelopes file {path}: unknown method in {sorted(set(df['method']))}")
    g = pd.to_numeric(df["guaranteed_kw"], errors="coerce")
    c = pd.to_numeric(df["capacity_kva"], errors="coerce")
    if g.isna().any() or (g < 0).any() or c.isna().any() or (c < 0).any():
        raise CaseError(f"envelopes file {path}: guaranteed_kw and capacity_kva must be numbers >= 0")
    df["end_user"] = df["end_user"].astype(str)
    return df


def _transmission(spec: dict[str, Any], dist_load: dict[int, float]) -> tuple[Transmission, np.ndarray]:
    t_spec = _get(spec, "transmission", dict, "case")
    case = read_matpower_case(_get(t_spec, "case", str, "[transmission]"))
    limits = _get(t_spec, "line_limits_mw", dict, "[transmission]")
    try:
        net = build_transmission(case, {str(k): float(v) for k, v in limits.items()})
    except ValueError as exc:
        raise CaseError(str(exc)) from exc
    if not np.isfinite(net.limit_mw).all():
        raise CaseError("[transmission.line_limits_mw] must give a limit for every line")
    scale = float(t_spec.get("load_scale", 1.0))
    load = net.load_mw * scale
    for bus, p in dist_load.items():
        load[net.index(bus)] += p
    # Day-ahead schedule: generators scaled to meet the forecast load (transmission + distribution).
    gen = net.gen_mw * load.sum() / net.gen_mw.sum()
    net = Transmission(net.name, net.bus_ids, net.lines, net.ptdf, net.limit_mw, load, gen, net.slack_bus)
    return net, gen - load


def _distribution(d_spec: dict[str, Any]) -> tuple[Distribution, int]:
    where = f"[[distribution]] {d_spec.get('name', '?')}"
    name = _get(d_spec, "name", str, where)
    case = read_matpower_case(_get(d_spec, "case", str, where))
    scale = float(_get(d_spec, "load_scale", (int, float), where))
    factor = float(_get(d_spec, "limit_factor", (int, float), where))
    floor = float(_get(d_spec, "min_limit_mva", (int, float), where))
    vmin = float(_get(d_spec, "vmin_pu", (int, float), where))
    vmax = float(_get(d_spec, "vmax_pu", (int, float), where))
    n_br = len(case.branch)
    tmp = build_distribution(case, name, scale, np.full(n_br, np.inf), vmin, vmax)
    base = lindistflow(tmp)
    limits = np.maximum(factor * base.s_mva, floor)
    keys = {tmp.branch_key(k): k for k in range(n_br)}
    keys.update({f"{b}-{a}": k for k, (a, b) in ((k, key.split("-")) for key, k in list(keys.items()))})
    for key, val in d_spec.get("line_limits_mva", {}).items():
        if key not in keys:
            raise CaseError(f"{where}: no branch {key!r}")
        limits[keys[key]] = float(val)
    net = build_distribution(case, name, scale, limits, vmin, vmax)
    if np.any(net.limit_mva <= np.abs(net.q_flow_mvar)):
        raise CaseError(f"{where}: a line limit is below the branch's reactive flow")
    return net, int(_get(d_spec, "transmission_bus", int, where))


def _draw_bids(rng: np.random.Generator, area: str, buses: list[int], base_mw: np.ndarray,
               up_frac: tuple[float, float], down_frac: tuple[float, float],
               up_price: tuple[float, float], down_price: tuple[float, float], kind: str) -> list[Bid]:
    """One up and one down bid per bus with a positive base (load + generation), sizes and prices
    drawn uniformly from the ranges. Volumes are rounded to 1 kW and prices to 0.01 EUR/MW."""
    bids = []
    for bus, base in zip(buses, base_mw):
        if base <= 0:
            continue
        for direction, frac, price in (("up", up_frac, up_price), ("down", down_frac, down_price)):
            qty = round(base * rng.uniform(*frac), 3)
            if qty > 0:
                bids.append(Bid(f"{area}:{bus}:{direction}:{kind}", area, bus, direction, qty,
                                round(rng.uniform(*price), 2), kind))
    return bids


def _lv_bids(rng: np.random.Generator, nfca: dict[str, Any], envelopes: pd.DataFrame,
             networks: dict[str, Distribution]) -> tuple[list[Bid], dict[str, float]]:
    """Bids of the LV end-users of ``envelopes`` (rows of one NFCA method) hung under one
    distribution node, and their caps: guaranteed export caps the up bid, import the down bid."""
    where = "[nfca]"
    net_name = _get(nfca, "network", str, where)
    node = _get(nfca, "node", int, where)
    if net_name not in networks or node not in networks[net_name].bus_ids:
        raise CaseError(f"{where}: node {node} of network {net_name!r} does not exist")
    frac = float(nfca.get("bid_fraction", 1.0))
    up_price, down_price = _range(nfca, "up_price"), _range(nfca, "down_price")
    users = envelopes.drop_duplicates("end_user").sort_values("end_user")
    bids, caps = [], {}
    for _, row in users.iterrows():
        for direction, price, env_dir in (("up", up_price, "export"), ("down", down_price, "import")):
            qty = round(frac * float(row["capacity_kva"]) / 1000.0, 4)
            bid = Bid(f"{net_name}:{node}:{direction}:lv:{row['end_user']}", net_name, node, direction,
                      qty, round(rng.uniform(*price), 2), "lv", str(row["end_user"]))
            bids.append(bid)
            sel = envelopes[(envelopes["end_user"] == row["end_user"]) & (envelopes["direction"] == env_dir)]
            # No envelope row for this direction: nothing is guaranteed, the bid cannot qualify.
            caps[bid.bid_id] = min(qty, float(sel["guaranteed_kw"].min()) / 1000.0) if len(sel) else 0.0
    return bids, caps


def build_case(spec: dict[str, Any], envelopes: pd.DataFrame | None = None) -> Case:
    """Validate a parsed case file and build its networks and bids (deterministic in ``seed``)."""
    name = str(_get(spec, "name", str, "case"))
    seed = _get(spec, "seed", int, "case")
    imbalance = float(_get(spec, "imbalance_mw", (int, float), "case"))
    d_specs = _get(spec, "distribution", list, "case")
    dists: dict[str, Distribution] = {}
    iface: dict[str, int] = {}
    try:
        for d_spec in d_specs:
            net, bus = _distribution(d_spec)
            dists[net.name], iface[net.name] = net, bus
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise CaseError(str(exc)) from exc
    dist_load: dict[int, float] = {}
    for dname, bus in iface.items():
        dist_load[bus] = dist_load.get(bus, 0.0) + float(dists[dname].load_mw.sum())
    tnet, p_sched = _transmission(spec, dist_load)
    for dname, bus in iface.items():
        if bus not in tnet.bus_ids:
            raise CaseError(f"distribution {dname}: transmission bus {bus} does not exist")
    # The imbalance: real-time transmission load above the schedule, spread in proportion to load.
    t_load = tnet.load_mw - np.array([dist_load.get(b, 0.0) for b in tnet.bus_ids])
    base_inj = p_sched - imbalance * t_load / t_load.sum()

    b_spec = _get(spec, "bids", dict, "case")
    rng = np.random.default_rng(seed)
    bids = _draw_bids(rng, "T", list(tnet.bus_ids), t_load + tnet.gen_mw,
                      _range(b_spec, "transmission_fraction"), _range(b_spec, "transmission_fraction"),
                      _range(b_spec, "transmission_up_price"), _range(b_spec, "transmission_down_price"),
                      "regular")
    for dname, net in dists.items():
        bids += _draw_bids(rng, dname, list(net.bus_ids), net.load_mw,
                           _range(b_spec, "distribution_up_fraction"), _range(b_spec, "distribution_down_fraction"),
                           _range(b_spec, "distribution_up_price"), _range(b_spec, "distribution_down_price"),
                           "regular")
    crit = b_spec.get("critical")
    if crit:
        for dname, nodes in _get(crit, "nodes", dict, "[bids.critical]").items():
            if dname not in dists or any(n not in dists[dname].bus_ids for n in nodes):
                raise CaseError(f"[bids.critical]: unknown network or node in {dname}: {nodes}")
            net = dists[dname]
            base = np.array([max(net.load_mw[net.node(n)], float(crit.get("min_base_mw", 0.0))) for n in nodes])
            bids += _draw_bids(rng, dname, list(nodes), base, _range(crit, "up_fraction"),
                               _range(crit, "down_fraction"), _range(crit, "up_price"),
                               _range(crit, "down_price"), "critical")

    m_spec = _get(spec, "market", dict, "case")
    step = float(_get(m_spec, "aggregation_step_mw", (int, float), "[market]"))
    preq = _get(m_spec, "prequalification", str, "[market]")
    if preq not in PREQUALIFICATION_METHODS:
        raise CaseError(f"[market] prequalification must be one of {PREQUALIFICATION_METHODS}, got {preq!r}")
    if step <= 0:
        raise CaseError("[market] aggregation_step_mw must be > 0")
    lv_caps: dict[str, float] = {}
    nfca_method = ""
    if envelopes is not None:
        nfca = _get(spec, "nfca", dict, "case (needed with envelopes)")
        nfca_method = _get(nfca, "method", str, "[nfca]")
        if nfca_method not in NFCA_METHODS:
            raise CaseError(f"[nfca] method must be one of {NFCA_METHODS}")
        if nfca_method not in set(envelopes["method"]):
            raise CaseError(f"envelopes file has no rows for method {nfca_method!r}")
        lv, lv_caps = _lv_bids(rng, nfca, envelopes[envelopes["method"] == nfca_method], dists)
        bids += lv
    elif preq == "nfca":
        raise CaseError("prequalification 'nfca' needs an envelopes file (--envelopes)")
    return Case(name, spec, tnet, dists, iface, base_inj, imbalance, tuple(bids), step, preq,
                float(m_spec.get("violation_penalty", 1e4)), lv_caps, nfca_method)


def load_case(name: str | None = None, path: Path | None = None, envelopes: Path | None = None) -> Case:
    """Load a shipped case by name or a case file by path, optionally with an ``envelopes.csv``."""
    src = path if path is not None else case_file(name or "")
    spec = read_spec(src)
    env = read_envelopes(envelopes) if envelopes is not None else None
    try:
        return build_case(spec, env)
    except CaseError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise CaseError(f"malformed case file {src}: {type(exc).__name__}: {exc}") from exc
