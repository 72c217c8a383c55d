"""An envelope study: methods x directions on one feeder, each verified by OpenDSS.

This is the library call behind `nfca envelopes`; it returns results as data (a DataFrame and
a summary dict) and writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from nfca.model.envelope import Direction, EnvelopeOptions, EnvelopeSet, Method

from nfca.opf.problem import EnvelopeProblem
from nfca.errors import InputError, VerificationError
from nfca.model.network import Feeder
from nfca.verify import Verification, verify

COLUMNS = [
    "end_user", "connection_point", "bus", "phases", "connection", "capacity_kva", "direction", "method",
    "participant", "guaranteed_kw", "binding", "v_min_verified_pu", "v_max_verified_pu", "distance_m",
]


@dataclass(frozen=True)
class Study:
    feeder: Feeder
    options: EnvelopeOptions
    envelopes: tuple[EnvelopeSet, ...]
    verifications: tuple[Verification, ...]
    seconds: float

    @property
    def verified(self) -> bool:
        return all(v.verified for v in self.verifications)

    def table(self) -> pd.DataFrame:
        """One row per end-user x direction x method (the envelopes.csv layout)."""
        dist = self.feeder.distance_m()
        rows = []
        for env, ver in zip(self.envelopes, self.verifications):
            for u in self.feeder.end_users:
                rows.append({
                    "end_user": u.name, "connection_point": u.bus, "bus": u.bus, "phases": u.phases,
                    "connection": u.connection, "capacity_kva": u.capacity_kva,
                    "direction": env.direction.value, "method": env.method.value,
                    "participant": env.participant[u.name], "guaranteed_kw": env.guaranteed_kw[u.name],
                    "binding": env.binding[u.name],
                    "v_min_verified_pu": round(ver.user_v_min_pu[u.name], 6),
                    "v_max_verified_pu": round(ver.user_v_max_pu[u.name], 6),
                    "distance_m": round(dist[u.bus], 3),
                })
        return pd.DataFrame(rows, columns=COLUMNS)

    def summary(self) -> dict:
        """Per method and direction: totals, fairness, solver and verification figures."""
        out: dict = {
            "feeder": self.feeder.name, "path": str(self.feeder.path),
            "end_users": len(self.feeder.end_users),
            "connection_points": len(self.feeder.connection_points),
            "participants": int(sum(next(iter(self.envelopes)).participant.values())) if self.envelopes else 0,
            "capacity_kva": round(sum(u.capacity_kva for u in self.feeder.end_users), 3),
            "length_m": round(self.feeder.length_m, 3),
            "options": options_summary(self.options),
            "verified": self.verified, "seconds": round(self.seconds, 3), "methods": {},
        }
        for env, ver in zip(self.envelopes, self.verifications):
            g = np.array([env.guaranteed_kw[k] for k, p in env.participant.items() if p])
            out["methods"].setdefault(env.method.value, {})[env.direction.value] = {
                "total_kw": round(float(g.sum()), 3) if g.size else 0.0,
                "min_kw": round(float(g.min()), 3) if g.size else 0.0,
                "max_kw": round(float(g.max()), 3) if g.size else 0.0,
                "jain_index": round(jain_index(g), 6),
                "solver_status": env.result.status,
                "iterations": env.iterations,
                "solves": env.solves,
                "seconds": round(env.seconds, 3),
                "v_min_pu": round(ver.v_min_pu, 6),
                "v_max_pu": round(ver.v_max_pu, 6),
                "max_loading_pct": round(ver.max_loading_pct, 4),
                "v_neutral_max_v": round(ver.v_neutral_max_v, 4),
                "verified": ver.verified,
                "violations": list(ver.violations),
            }
        return out


def options_summary(options: EnvelopeOptions) -> dict:
    """The study's assumptions as summary.json records them."""
    lim = options.limits
    return {
        "vmin_pu": lim.vmin_pu, "vmax_pu": lim.vmax_pu, "vmin_v": lim.vmin_v, "vmax_v": lim.vmax_v,
        "v_neutral_max_v": lim.v_neutral_max_v, "v_margin_pu": lim.v_margin_pu, "i_margin": lim.i_margin,
        "power_factor": options.power_factor, "source_pu": options.source_pu, "reduce": options.reduce,
        "kron": options.kron, "firm_kw": options.firm_kw, "firm_diversity": options.firm_diversity,
    }


def jain_index(x: np.ndarray) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    x = np.asarray(x, dtype=float)
    if x.size == 0 or not np.any(x):
        return 1.0
    return float(x.sum() ** 2 / (x.size * (x**2).sum()))


def run_envelopes(
    feeder: Feeder,
    methods: Iterable[Method | str] = (Method.optimal, Method.fair),
    directions: Iterable[Direction | str] = (Direction.import_, Direction.export),
    options: EnvelopeOptions = EnvelopeOptions(),
    participants: frozenset[str] | None = None,
    progress: Callable[[str], None] | None = None,
    require_verified: bool = True,
) -> Study:
    """Solve every method x direction, verify each by OpenDSS; raise if any fails verification."""
    t0 = time.perf_counter()
    problem = EnvelopeProblem(feeder, options, participants)
    envs = []
    for d in directions:
        for m in methods:
            if progress:
                progress(f"{Method(m).value} {Direction(d).value}")
            envs.append(problem.solve(m, d))
    if progress:
        progress("verifying with OpenDSS")
    vers = verify(feeder, envs, options)
    study = Study(feeder, options, tuple(envs), tuple(vers), time.perf_counter() - t0)
    if require_verified and not study.verified:
        bad = next((e, v) for e, v in zip(envs, vers) if not v.verified)
        raise VerificationError(
            f"the {bad[0].method.value} {bad[0].direction.value} envelopes failed OpenDSS verification: "
            f"{bad[1].violations[0]}; nothing was written"
        )
    return study


def select_participants(feeder: Feeder, spec: str, seed: int = 0) -> frozenset[str]:
    """`all`, a fraction in (0, 1] (a seeded random subset), or a file listing end-users."""
    names = [u.name for u in feeder.end_users]
    if spec == "all":
        return frozenset(names)
    try:
        fraction = float(spec)
    except ValueError:
        fraction = None
    if fraction is not None:
        if not 0 <= fraction <= 1:
            raise InputError(f"--participants fraction must be within 0-1, got {spec}")
        k = int(round(fraction * len(names)))
        rng = np.random.default_rng(seed)
        return frozenset(rng.choice(names, size=k, replace=False).tolist())
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--participants: '{spec}' is neither 'all', a fraction nor a readable file")
    chosen = _read_names(path, "end_user")
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise InputError(f"{path}: end-user {unknown[0]} is not in feeder {feeder.name}")
    return frozenset(chosen)


def _read_names(path: Path, column: str) -> list[str]:
    try:
        df = pd.read_csv(path, dtype=str)
    except Exception as exc:
        raise InputError(f"{path}: cannot read CSV ({' '.join(str(exc).split())})") from None
    if column in df.columns:
        return [s.strip().lower() for s in df[column].dropna()]
    return [s.strip().lower() for s in [df.columns[0], *df.iloc[:, 0].dropna()]]


def with_capacities(feeder: Feeder, csv: Path) -> Feeder:
    """Override end-users' connection capacities from a CSV with columns end_user, capacity_kva."""
    try:
        df = pd.read_csv(csv)
    except Exception as exc:
        raise InputError(f"{csv}: cannot read CSV ({' '.join(str(exc).split())})") from None
    if not {"end_user", "capacity_kva"} <= set(df.columns):
        raise InputError(f"{csv}: needs columns end_user and capacity_kva")
    caps = {}
    values = pd.to_numeric(df["capacity_kva"], errors="coerce")
    for row, (name, cap, raw) in enumerate(zip(df["end_user"].astype(str).str.strip().str.lower(), values,
                                               df["capacity_kva"]), start=2):
        if name not in feeder.end_user:
            raise InputError(f"{csv} line {row}: end-user {name} is not in feeder {feeder.name}")
        if not np.isfinite(cap) or cap <= 0:
            got = "nothing" if pd.isna(raw) else repr(raw)
            raise InputError(f"{csv} line {row}: capacity of {name} must be a positive number of kVA, got {got}")
        if name in caps and caps[name] != float(cap):
            raise InputError(f"{csv} line {row}: end-user {name} is given two capacities, {caps[name]:g} and {cap:g} kVA")
        caps[name] = float(cap)
    users = tuple(replace(u, capacity_kva=caps.get(u.name, u.capacity_kva)) for u in feeder.end_users)
    return replace(feeder, end_users=users)


def sweep_participation(
    feeder: Feeder,
    counts: Iterable[int],
    methods: Iterable[Method | str] = (Method.optimal, Method.fair),
    directions: Iterable[Direction | str] = (Direction.import_, Direction.export),
    options: EnvelopeOptions = EnvelopeOptions(),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Guaranteed power against the number of NFCA participants (seed Fig 5-4).

    Participants are the first k of one seeded random order, so each set contains the smaller
    ones. When the firm connections alone violate a limit there is no envelope: the row says
    `infeasible` and carries zero guaranteed power. Every feasible point is verified by OpenDSS.
    """
    from nfca.errors import InfeasibleError

    order = np.random.default_rng(seed).permutation([u.name for u in feeder.end_users]).tolist()
    rows = []
    for k in counts:
        chosen = frozenset(order[:k])
        problem = None
        for d in directions:
            for m in methods:
                if progress:
                    progress(f"{k} participants: {Method(m).value} {Direction(d).value}")
                row = {"participants": k, "direction": Direction(d).value, "method": Method(m).value}
                try:
                    problem = problem or EnvelopeProblem(feeder, options, chosen)
                    env = problem.solve(m, d)
                except InfeasibleError:
                    rows.append({**row, "status": "infeasible", "total_kw": 0.0, "mean_kw": 0.0,
                                 "min_kw": 0.0, "verified": False})
                    continue
                ver = verify(feeder, [env], options)[0]
                g = np.array([env.guaranteed_kw[n] for n in chosen]) if chosen else np.zeros(0)
                rows.append({**row, "status": env.result.status, "total_kw": float(g.sum()),
                             "mean_kw": float(g.mean()) if g.size else 0.0,
                             "min_kw": float(g.min()) if g.size else 0.0, "verified": ver.verified})
    return pd.DataFrame(rows)
