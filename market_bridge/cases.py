"""Case files (TOML) and seeded bid generation for the TSO-DSO market study (seed §4.2).

A case file holds every parameter: the imbalance, the networks and their limits, the volume and
price ranges of the bids, the market options and the optional NFCA LV feeder. The shipped files
are written by ``market_bridge.calibration`` from documented design rules. ``load_case``
validates a file and returns a ``Case`` with the built networks and the generated bids.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
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
from nfca.errors import InputError
from nfca.io import schema

CASES_DIR = Path(__file__).resolve().parent / "cases"
SEEDS = (2406, 4889)  # the two bid-data seeds every finding is checked on (arXiv 2406.04889)
PREQUALIFICATION_METHODS = ("price_oe", "uniform_oe", "interrface", "nfca")
NFCA_METHODS = ("optimal", "fair", "proportional", "propfair", "maxmin")
DEFAULT_VOLL = 3000.0  # EUR/MW, see [market] voll_eur_per_mw
SITE_BIDS = ("der", "critical")  # [bids.der] and [bids.critical]: bids at listed nodes, sized in MW


class CaseError(InputError):
    """A case file or envelope file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Bid:
    """One flexibility bid. ``up`` = more injection or less consumption; volumes in MW.

    ``kind``: ``regular`` (sized on the bus's load), ``der`` (a storage or generation unit at a
    listed node), ``critical`` (seed case C), ``lv`` (an end-user of the NFCA feeder) or
    ``voll`` (the TSO's last resort: load shedding for up, curtailment for down, at the value of
    lost load, spread over the buses of the imbalance)."""

    bid_id: str
    area: str  # "T" for transmission, else the distribution network's name
    bus: int  # case bus id (transmission bus or distribution node); 0 for voll
    direction: str  # "up" | "down"
    qty_mw: float
    price: float  # EUR/MW
    kind: str = "regular"
    end_user: str = ""

    @property
    def sign(self) -> int:
        """Effect on net injection: +1 for up, -1 for down."""
        return 1 if self.direction == "up" else -1


@dataclass(frozen=True)
class Case:
    """A built case: networks, base state, bids and market options."""

    name: str
    seed: int
    spec: dict[str, Any]
    transmission: Transmission
    distributions: dict[str, Distribution]
    interface_bus: dict[str, int]  # distribution name -> transmission bus id
    base_injection_mw: np.ndarray  # transmission net injection before balancing (sums to -imbalance)
    imbalance_share: np.ndarray  # where the imbalance sits (sums to 1): where shortfall stays
    imbalance_mw: float
    bids: tuple[Bid, ...]
    aggregation_step_mw: float
    prequalification: str
    penalty: float
    voll_eur_per_mw: float
    lv_caps: dict[str, float] = field(default_factory=dict)  # LV bid_id -> NFCA cap (MW)
    nfca_method: str = ""

    def bids_in(self, area: str) -> list[Bid]:
        return [b for b in self.bids if b.area == area]

    @property
    def distribution_bids(self) -> list[Bid]:
        return [b for b in self.bids if b.area != "T"]

    @property
    def voll_bids(self) -> list[Bid]:
        """The TSO's shortfall variables: unmet up need (load shed) and unmet down need."""
        big = abs(self.imbalance_mw) + sum(b.qty_mw for b in self.bids)
        return [Bid(f"voll:{d}", "T", 0, d, big, self.voll_eur_per_mw, "voll") for d in ("up", "down")]

    def with_nfca_caps(self) -> Case:
        """The same case with every LV bid offered only up to its NFCA envelope: the end-users'
        connection agreements hold in every market layer."""
        bids = tuple(
            replace(b, qty_mw=min(b.qty_mw, self.lv_caps[b.bid_id])) if b.kind == "lv" else b for b in self.bids
        )
        return replace(self, bids=tuple(b for b in bids if b.qty_mw > 0))


def _range(spec: dict[str, Any], key: str, where: str = "[bids]") -> tuple[float, float]:
    val = spec.get(key)
    if not (
        isinstance(val, list)
        and len(val) == 2
        and all(isinstance(v, (int, float)) for v in val)
        and 0 <= val[0] <= val[1]
    ):
        raise CaseError(f"'{key}' in {where} must be a [low, high] pair of numbers >= 0, got {val!r}")
    return float(val[0]), float(val[1])


def _get(spec: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in spec:
        raise CaseError(f"missing '{key}' in {where}")
    val = spec[key]
    if not isinstance(val, typ) or isinstance(val, bool):
        raise CaseError(f"'{key}' in {where} has the wrong type ({type(val).__name__})")
    return val


def _positive(spec: dict[str, Any], key: str, where: str) -> float:
    val = float(_get(spec, key, (int, float), where))
    if not val > 0:
        raise CaseError(f"'{key}' in {where} must be > 0, got {val}")
    return val


def case_file(name: str) -> Path:
    """Path of a shipped case file (A, B, C or D)."""
    path = CASES_DIR / f"{name.upper()}.toml"
    if not name or not path.exists():
        shipped = ", ".join(p.stem for p in sorted(CASES_DIR.glob("*.toml")))
        raise CaseError(f"unknown case {name!r} (shipped: {shipped})")
    return path


def read_spec(path: Path) -> dict[str, Any]:
    """Parse a case TOML file, turning unreadable files and syntax errors into ``CaseError``."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CaseError(f"cannot read case file {path}: {exc}") from exc


def read_envelopes(path: Path) -> pd.DataFrame:
    """Read an ``envelopes.csv`` written by ``nfca envelopes`` through the results schema
    (``nfca.io.schema``), and check what the market needs: a known method per row. Without a
    ``participant`` column every end-user is a participant."""
    try:
        df = schema.read_envelopes(path)
    except InputError as exc:
        raise CaseError(str(exc)) from None
    if not df["method"].isin(NFCA_METHODS).all():
        bad = sorted(set(df["method"]) - set(NFCA_METHODS))
        raise CaseError(f"{path}: unknown envelope method {bad[0]!r} (known: {', '.join(NFCA_METHODS)})")
    if "participant" not in df.columns:
        df["participant"] = True
    return df


# ------------------------------------------------------------------ networks


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
    load = net.load_mw * float(t_spec.get("load_scale", 1.0))
    for bus, p in dist_load.items():
        load[net.index(bus)] += p
    # Schedule: the case's generators scaled to meet the forecast load (transmission + distribution).
    gen = net.gen_mw * load.sum() / net.gen_mw.sum()
    net = Transmission(net.name, net.bus_ids, net.lines, net.ptdf, net.limit_mw, load, gen, net.slack_bus)
    return net, gen - load


def _distribution(d_spec: dict[str, Any]) -> tuple[Distribution, int]:
    where = f"[[distribution]] {d_spec.get('name', '?')}"
    name = _get(d_spec, "name", str, where)
    case = read_matpower_case(_get(d_spec, "case", str, where))
    scale = _positive(d_spec, "load_scale", where)
    factor = _positive(d_spec, "limit_factor", where)
    floor = _positive(d_spec, "min_limit_mva", where)
    v_root = _positive(d_spec, "v_root_pu", where)
    vmin = _positive(d_spec, "vmin_pu", where)
    vmax = _positive(d_spec, "vmax_pu", where)
    if not vmin < vmax:
        raise CaseError(f"{where}: vmin_pu must be below vmax_pu")
    n_br = len(case.branch)
    tmp = build_distribution(case, name, scale, np.full(n_br, np.inf), vmin, vmax, v_root)
    limits = np.maximum(factor * lindistflow(tmp).s_mva, floor)
    keys = {tmp.branch_key(k): k for k in range(n_br)}
    keys.update({"-".join(reversed(key.split("-"))): k for key, k in list(keys.items())})
    for key, val in d_spec.get("line_limits_mva", {}).items():
        if key not in keys:
            raise CaseError(f"{where}: no branch {key!r}")
        limits[keys[key]] = float(val)
    net = build_distribution(case, name, scale, limits, vmin, vmax, v_root)
    if np.any(net.limit_mva <= np.abs(net.q_flow_mvar)):
        k = int(np.flatnonzero(net.limit_mva <= np.abs(net.q_flow_mvar))[0])
        raise CaseError(f"{where}: the limit of branch {net.branch_key(k)} is below its reactive flow")
    return net, int(_get(d_spec, "transmission_bus", int, where))


# ------------------------------------------------------------------ bids


def _draw_bids(
    rng: np.random.Generator,
    area: str,
    buses: list[int],
    base_mw: np.ndarray,
    volume: dict[str, tuple[float, float]],
    price: dict[str, tuple[float, float]],
    max_mw: float,
    kind: str,
    absolute: bool = False,
) -> list[Bid]:
    """One up and one down bid per bus with a positive base: volume a uniform fraction of the base
    (or, with ``absolute``, a uniform volume in MW), at most ``max_mw``; price uniform in its range.
    Volumes are rounded to 1 kW and prices to 0.01 EUR/MW."""
    bids = []
    for bus, base in zip(buses, base_mw):
        if base <= 0:
            continue
        for direction in ("up", "down"):
            draw = rng.uniform(*volume[direction])
            qty = round(min(draw if absolute else base * draw, max_mw), 3)
            cost = round(rng.uniform(*price[direction]), 2)
            if qty > 0:
                bids.append(Bid(f"{area}:{bus}:{direction}:{kind}", area, bus, direction, qty, cost, kind))
    return bids


def _lv_bids(
    rng: np.random.Generator, nfca: dict[str, Any], envelopes: pd.DataFrame, networks: dict[str, Distribution]
) -> tuple[list[Bid], dict[str, float]]:
    """Bids of the LV end-users of ``envelopes`` (rows of one NFCA method) hung under one
    distribution node, and their NFCA caps: the guaranteed export caps the up bid, the guaranteed
    import the down bid. Participants bid ``bid_fraction`` of their capacity; non-participants
    bid nothing unless listed in ``firm_flexible`` (their firm connection is their cap)."""
    where = "[nfca]"
    net_name = _get(nfca, "network", str, where)
    node = _get(nfca, "node", int, where)
    if net_name not in networks or node not in networks[net_name].bus_ids:
        raise CaseError(f"{where}: node {node} of network {net_name!r} does not exist")
    frac = float(nfca.get("bid_fraction", 1.0))
    firm = set(map(str, nfca.get("firm_flexible", [])))
    unknown = sorted(firm - set(envelopes["end_user"]))
    if unknown:
        raise CaseError(f"{where} firm_flexible: {unknown[0]} is not an end-user of the envelopes file")
    price = {"up": _range(nfca, "up_price", where), "down": _range(nfca, "down_price", where)}
    bids, caps = [], {}
    for user, rows in sorted(envelopes.groupby("end_user"), key=lambda kv: kv[0]):
        participant = bool(rows["participant"].iloc[0])
        if not participant and user not in firm:
            continue
        for direction, env_dir in (("up", "export"), ("down", "import")):
            qty = round(frac * float(rows["capacity_kva"].iloc[0]) / 1000.0, 4)
            bid = Bid(
                f"{net_name}:{node}:{direction}:lv:{user}",
                net_name,
                node,
                direction,
                qty,
                round(rng.uniform(*price[direction]), 2),
                "lv",
                user,
            )
            bids.append(bid)
            sel = rows[rows["direction"] == env_dir]
            # No envelope row for this direction: nothing is guaranteed, the bid cannot qualify.
            caps[bid.bid_id] = min(qty, float(sel["guaranteed_kw"].min()) / 1000.0) if len(sel) else 0.0
    return bids, caps


def _bids(
    spec: dict[str, Any],
    rng: np.random.Generator,
    tnet: Transmission,
    t_load: np.ndarray,
    dists: dict[str, Distribution],
) -> list[Bid]:
    b_spec = _get(spec, "bids", dict, "case")
    vol = {d: _range(b_spec, f"transmission_{d}_fraction") for d in ("up", "down")}
    price = {d: _range(b_spec, f"transmission_{d}_price") for d in ("up", "down")}
    bids = _draw_bids(
        rng,
        "T",
        list(tnet.bus_ids),
        t_load + tnet.gen_mw,
        vol,
        price,
        _positive(b_spec, "transmission_max_mw", "[bids]"),
        "regular",
    )
    vol = {d: _range(b_spec, f"distribution_{d}_fraction") for d in ("up", "down")}
    price = {d: _range(b_spec, f"distribution_{d}_price") for d in ("up", "down")}
    d_max = _positive(b_spec, "distribution_max_mw", "[bids]")
    for dname, net in dists.items():
        bids += _draw_bids(rng, dname, list(net.bus_ids), net.load_mw, vol, price, d_max, "regular")
    for section in SITE_BIDS:  # DER units and (case C) critical-node bids: volumes in MW
        site = b_spec.get(section)
        if not site:
            continue
        where = f"[bids.{section}]"
        vol = {d: _range(site, f"{d}_mw", where) for d in ("up", "down")}
        price = {d: _range(site, f"{d}_price", where) for d in ("up", "down")}
        for dname, nodes in _get(site, "nodes", dict, where).items():
            if dname not in dists or any(n not in dists[dname].bus_ids for n in nodes):
                raise CaseError(f"{where}: unknown network or node in {dname}: {nodes}")
            bids += _draw_bids(rng, dname, list(nodes), np.ones(len(nodes)), vol, price, np.inf, section, absolute=True)
    return bids


def build_case(spec: dict[str, Any], envelopes: pd.DataFrame | None = None, seed: int | None = None) -> Case:
    """Validate a parsed case file and build its networks and bids (deterministic in the seed;
    ``seed`` overrides the file's)."""
    name = str(_get(spec, "name", str, "case"))
    seed = _get(spec, "seed", int, "case") if seed is None else int(seed)
    imbalance = float(_get(spec, "imbalance_mw", (int, float), "case"))
    dists: dict[str, Distribution] = {}
    iface: dict[str, int] = {}
    try:
        for d_spec in _get(spec, "distribution", list, "case"):
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
    # The imbalance: real-time transmission load off its schedule, spread in proportion to load.
    t_load = tnet.load_mw - np.array([dist_load.get(b, 0.0) for b in tnet.bus_ids])
    share = t_load / t_load.sum()
    base_inj = p_sched - imbalance * share

    rng = np.random.default_rng(seed)
    bids = _bids(spec, rng, tnet, t_load, dists)
    m_spec = _get(spec, "market", dict, "case")
    step = _positive(m_spec, "aggregation_step_mw", "[market]")
    preq = _get(m_spec, "prequalification", str, "[market]")
    if preq not in PREQUALIFICATION_METHODS:
        raise CaseError(f"[market] prequalification must be one of {PREQUALIFICATION_METHODS}, got {preq!r}")
    voll = float(m_spec.get("voll_eur_per_mw", DEFAULT_VOLL))
    if not voll > max([b.price for b in bids] + [0.0]):
        raise CaseError(f"[market] voll_eur_per_mw ({voll:g}) must exceed every bid price")
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
    return Case(
        name,
        seed,
        spec,
        tnet,
        dists,
        iface,
        base_inj,
        share,
        imbalance,
        tuple(bids),
        step,
        preq,
        float(m_spec.get("violation_penalty", 1e4)),
        voll,
        lv_caps,
        nfca_method,
    )


def load_case(
    name: str | None = None, path: Path | None = None, envelopes: Path | None = None, seed: int | None = None
) -> Case:
    """Load a shipped case by name or a case file by path, optionally with an ``envelopes.csv``
    and another bid-data seed than the file's."""
    src = path if path is not None else case_file(name or "")
    spec = read_spec(src)
    env = read_envelopes(envelopes) if envelopes is not None else None
    try:
        return build_case(spec, env, seed)
    except CaseError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise CaseError(f"malformed case file {src}: {type(exc).__name__}: {exc}") from exc
