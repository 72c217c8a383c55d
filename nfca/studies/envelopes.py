"""An envelope study: methods x directions on one feeder, each verified by OpenDSS.

This is the library call behind `nfca envelopes`; it returns results as data (a DataFrame and
a summary dict) and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nfca.errors import InfeasibleError, InputError, VerificationError
from nfca.io import schema
from nfca.model.box import Guarantee
from nfca.model.envelope import Direction, EnvelopeOptions, EnvelopeSet, Method
from nfca.model.network import DEFAULT_CAPACITY_KVA, Feeder
from nfca.model.ratings import AmpacityRules
from nfca.model.voltages import check_voltage_limits, rated_voltage_notices, voltage_limits_v
from nfca.notices import Notice
from nfca.opf.problem import EnvelopeProblem
from nfca.verify import Verification, Verifier

if TYPE_CHECKING:  # pandas loads with the first table, not before the solves
    import pandas as pd

COLUMNS = schema.names(schema.ENVELOPES)  # envelopes.csv


@dataclass(frozen=True)
class Study:
    """The envelope sets of one feeder (methods x directions), each with its OpenDSS verification.

    `infeasible` holds the sets with no envelope, (method, direction) -> reason; `provenance`
    what produced the study (version, options, input hashes), written into summary.json."""

    feeder: Feeder
    options: EnvelopeOptions
    envelopes: tuple[EnvelopeSet, ...]
    verifications: tuple[Verification, ...]
    seconds: float
    participants: frozenset[str] | None = None
    infeasible: dict[tuple[str, str], str] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        sets = [f"{e.method.value} {e.direction.value} {e.total_kw:.1f} kW" for e in self.envelopes]
        sets += [f"{m} {d} infeasible" for m, d in self.infeasible]
        return (
            f"<Study {self.feeder.name}: {len(self.participant_names)} of {len(self.feeder.end_users)} "
            f"end-users with an NFCA; {', '.join(sets)}; {'verified' if self.verified else 'NOT verified'}>"
        )

    @property
    def participant_names(self) -> frozenset[str]:
        """The end-users with an NFCA."""
        if self.participants is not None:
            return self.participants
        if self.envelopes:
            return frozenset(k for k, p in self.envelopes[0].participant.items() if p)
        return frozenset(u.name for u in self.feeder.end_users)

    @property
    def verified(self) -> bool:
        """Every envelope set that exists passed the OpenDSS verification."""
        return all(v.verified for v in self.verifications)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per end-user x direction x method (envelopes.csv, `nfca.io.schema.ENVELOPES`)."""
        dist = self.feeder.distance_m()
        rows = []
        for env, ver in zip(self.envelopes, self.verifications):
            rows += schema.set_rows(self.feeder, env, self.options, ver.user_v_min_pu, ver.user_v_max_pu, dist)
        for (m, d), reason in self.infeasible.items():
            rows += schema.infeasible_rows(self.feeder, self.options, m, d, reason, self.participant_names, dist)
        return schema.frame(rows, schema.ENVELOPES)

    @cached_property
    def summary(self) -> dict:
        """summary.json: the feeder, the assumptions, provenance, and per method and direction
        the `nfca.io.schema.SET_SUMMARY` figures."""
        table = self.to_dataframe()
        out: dict = {
            "feeder": self.feeder.name,
            "path": str(self.feeder.path),
            "end_users": len(self.feeder.end_users),
            "connection_points": len(self.feeder.connection_points),
            "participants": len(self.participant_names),
            "capacity_kva": round(sum(u.capacity_kva for u in self.feeder.end_users), 3),
            "length_m": round(self.feeder.length_m, 3),
            "options": options_summary(self.options, self.feeder),
            "verified": self.verified,
            "complete": not self.infeasible,
            "seconds": round(self.seconds, 3),
            "provenance": self.provenance,
            **limits_and_notices(self.feeder, self.options),
            "methods": {},
        }
        for env, ver in zip(self.envelopes, self.verifications):
            rows = table[(table["method"] == env.method.value) & (table["direction"] == env.direction.value)]
            out["methods"].setdefault(env.method.value, {})[env.direction.value] = schema.set_summary(env, [ver], rows)
        for (m, d), reason in self.infeasible.items():
            out["methods"].setdefault(m, {})[d] = schema.infeasible_summary(reason)
        return out

    def plot(self):
        """The study's figures (per-user bars per direction, the methods compared, the map when
        the feeder has coordinates), shown inline in a notebook; `.png` holds each one's bytes."""
        from nfca.io import plots

        return plots.Figures(plots.study_figures(self, self.to_dataframe(), None))

    def write(
        self, folder: Path | str, formats: Iterable[str] = ("csv", "json", "gpkg", "html"), crs: str | None = None
    ) -> list[Path]:
        """Write envelopes.csv, summary.json, envelopes.gpkg and report.html to `folder` (as
        `nfca envelopes --out` does; "png" in `formats` adds the figures); returns the files written."""
        from nfca.io.outputs import write_study

        return write_study(self, Path(folder), tuple(formats), crs)


def options_summary(options: EnvelopeOptions, feeder: Feeder | None = None) -> dict:
    """The study's assumptions as summary.json records them; with the feeder, the source voltage
    actually used (the file's when not set) and the firm values of non-participants in words."""
    lim = options.limits
    out = {
        "vmin_pu": lim.vmin_pu,
        "vmax_pu": lim.vmax_pu,
        "vmin_v": lim.vmin_v,
        "vmax_v": lim.vmax_v,
        "v_neutral_max_v": lim.v_neutral_max_v,
        "v_margin_pu": lim.v_margin_pu,
        "i_margin": lim.i_margin,
        "power_factor": options.power_factor,
        "source_pu": options.source_pu,
        "reduce": options.reduce,
        "kron": options.kron,
        "firm_kw": options.firm_kw,
        "firm_diversity": options.firm_diversity,
        "ipopt_options": dict(options.ipopt_options),
    }
    if feeder is not None:
        if options.source_pu is None:
            out["source_pu"] = feeder.source.pu
        out["firm"] = firm_rule(options, feeder)
    return out


def study_notices(feeder: Feeder, options: EnvelopeOptions) -> tuple[Notice, ...]:
    """What the reader assumed (the feeder's notices) and what the limits mean for its loads."""
    return feeder.notices + rated_voltage_notices(feeder, options.limits)


def limits_and_notices(feeder: Feeder, options: EnvelopeOptions) -> dict:
    """summary.json's voltage limits in volts (per kind of customer voltage) and its notices."""
    return {
        "voltage_limits": voltage_limits_v(feeder, options.limits),
        "notices": [n.as_dict() for n in study_notices(feeder, options)],
    }


def firm_rule(options: EnvelopeOptions, feeder: Feeder | None = None) -> str:
    """What non-participants are assumed to use while the envelopes hold, in words."""
    own = sum(u.firm_kw is not None for u in feeder.end_users) if feeder is not None else 0
    if options.firm_kw is not None:
        rule = f"{options.firm_kw:g} kW each (at most capacity x power factor)"
    elif options.firm_diversity == 1.0:
        rule = "full connection capacity x power factor (the default)"
    else:
        rule = f"{options.firm_diversity:g} x connection capacity x power factor (diversity)"
    return rule + (f"; {own} end-user(s) with their own firm_kw from --capacities" if own else "")


jain_index = schema.jain_index


def run_envelopes(
    feeder: Feeder,
    methods: Iterable[Method | str] = (Method.optimal, Method.fair),
    directions: Iterable[Direction | str] = (Direction.import_, Direction.export),
    options: EnvelopeOptions = EnvelopeOptions(),
    participants: frozenset[str] | None = None,
    progress: Callable[[str], None] | None = None,
    require_verified: bool = True,
    while_verifying: Callable[[], object] | None = None,
) -> Study:
    """Solve every method (and direction), verify each set by OpenDSS over the box it promises;
    raise VerificationError if any fails. A set that has no envelope (the non-participants alone
    break a limit) is recorded in `Study.infeasible`, the others are still computed.

    `while_verifying` is called once every set is solved, while OpenDSS still verifies the last
    ones in its own process: work for this process to do meanwhile (the CLI loads its writers)."""
    t0 = time.perf_counter()
    methods = [Method(m) for m in methods]
    directions = [Direction(d) for d in directions]
    options = one_direction_box(options, directions)
    check_voltage_limits(feeder, options.limits)
    problem = EnvelopeProblem(feeder, options, participants)
    box = options.guarantee is Guarantee.box
    asked, infeasible = [(m.value, d.value) for m in methods for d in directions], {}
    # optimal, the longest to solve, last: OpenDSS checks the others while it solves
    with Verifier(feeder, options) as verifier:  # (in its own process, on the other core)
        for m in sorted(methods, key=lambda m: m is Method.optimal):
            for d in [None] if box else directions:
                what = f"{m.value} {d.value if d else 'import and export'}"
                if progress:
                    progress(what)
                try:
                    sets = problem.solve(m, d)
                except InfeasibleError as exc:
                    for dd in [d] if d else directions:
                        infeasible[(m.value, dd.value)] = str(exc)
                    continue
                # verified together when promised together (a box's two directions), else one set at a
                # time: a set's verified voltages must not depend on which other directions were asked for
                for group in ([sets] if sets else []) if box else [[e] for e in sets]:
                    if progress:
                        progress(f"verifying {_what(group)} with OpenDSS")
                    verifier.submit(group)
        if while_verifying is not None:
            while_verifying()
        checked = sorted(verifier.results(), key=lambda gv: asked.index(_key(gv[0][0])))  # in the order asked
    for group, ver in checked:
        if require_verified and not ver.verified:
            raise VerificationError(
                f"the {_what(group)} envelopes failed OpenDSS verification: {ver.violations[0]}; nothing was written"
            )
    envs = tuple(e for group, _ in checked for e in group)
    vers = tuple(ver for group, ver in checked for _ in group)
    infeasible = dict(sorted(infeasible.items(), key=lambda kv: asked.index(kv[0])))
    chosen = frozenset(u.name for u in feeder.end_users) if participants is None else frozenset(participants)
    return Study(feeder, options, envs, vers, time.perf_counter() - t0, participants=chosen, infeasible=infeasible)


def _key(e: EnvelopeSet) -> tuple[str, str]:
    return e.method.value, e.direction.value


def _what(group: list[EnvelopeSet]) -> str:
    return f"{group[0].method.value} {' and '.join(e.direction.value for e in group)}"


def one_direction_box(options: EnvelopeOptions, directions: list[Direction]) -> EnvelopeOptions:
    """A box of one direction only (no export, or no import) is that direction's box: the
    `direction` guarantee."""
    if options.guarantee is Guarantee.box and len(set(directions)) == 1:
        return replace(options, guarantee=Guarantee.direction)
    return options


def prepare_feeder(
    path: Path | str,
    participants: str = "all",
    seed: int = 0,
    capacities: Path | None = None,
    default_capacity_kva: float = DEFAULT_CAPACITY_KVA,
    feeder_name: str | None = None,
    ampacity: AmpacityRules = AmpacityRules(),
) -> tuple[Feeder, frozenset[str]]:
    """Read a feeder, apply a capacities CSV and choose the participants: (Feeder, participants).

    `feeder_name` (a batch) selects the rows of a `feeder` column in the CSVs, when they have one;
    `ampacity` gives lines without normamps theirs (`nfca.model.ratings`)."""
    from nfca.engine import read_feeder

    f = read_feeder(path, default_capacity_kva=default_capacity_kva, ampacity=ampacity)
    if capacities is not None:
        f = with_capacities(f, capacities, feeder_name)
    return f, select_participants(f, participants, seed, feeder_name)


def select_participants(feeder: Feeder, spec: str, seed: int = 0, feeder_name: str | None = None) -> frozenset[str]:
    """`all`, a fraction in [0, 1] (a seeded random subset), or a CSV listing end-users (column
    `end_user`, else the first; with a `feeder` column only the rows of `feeder_name`)."""
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
    chosen = _read_names(path, "end_user", feeder_name)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise InputError(f"{path}: end-user {unknown[0]} is not in feeder {feeder.name}")
    return frozenset(chosen)


MAX_KVA = 1e5  # 100 MVA (and 100 MW): beyond any LV connection; a larger value is a unit error


def _for_feeder(df: pd.DataFrame, feeder_name: str | None) -> pd.DataFrame:
    """The rows of one feeder when the table has a `feeder` column (a batch)."""
    if feeder_name is not None and "feeder" in df.columns:
        return df[df["feeder"].str.strip() == feeder_name]
    return df


def _read_names(path: Path, column: str, feeder_name: str | None = None) -> list[str]:
    """End-user names as written (`NA`, `null`, `None`, `nan` are names), lower case."""
    import pandas as pd

    from nfca.studies.profiles import read_table

    df = _for_feeder(read_table(path), feeder_name)
    names = df[column] if column in df.columns else pd.Series([df.columns[0], *df.iloc[:, 0]], dtype=str)
    return [s.strip().lower() for s in names if s.strip()]


def with_capacities(feeder: Feeder, csv: Path, feeder_name: str | None = None) -> Feeder:
    """Per end-user connection capacity (`capacity_kva`) and firm value (`firm_kw`: what it uses
    as a non-participant, kW) from a CSV with column end_user and either or both of these; an
    empty cell keeps the feeder's value. With a `feeder` column, only `feeder_name`'s rows.
    Names are read as written (`NA`, `null` are names); values must be finite (at most 1e5)."""
    import pandas as pd

    from nfca.studies.profiles import read_table

    df = _for_feeder(read_table(csv), feeder_name)
    if "end_user" not in df.columns or not {"capacity_kva", "firm_kw"} & set(df.columns):
        raise InputError(f"{csv}: needs columns end_user and capacity_kva (and/or firm_kw)")
    found: dict[str, dict[str, float]] = {"capacity_kva": {}, "firm_kw": {}}
    names = df["end_user"].str.strip().str.lower()
    for column, what, whats, unit in (
        ("capacity_kva", "capacity", "capacities", "kVA"),
        ("firm_kw", "firm value", "firm values", "kW"),
    ):
        if column not in df.columns:
            continue
        raws = df[column].str.strip()
        values = pd.to_numeric(raws, errors="coerce")
        for row, name, x, raw in zip(df.index + 2, names, values, raws):
            if name not in feeder.end_user:
                raise InputError(f"{csv} line {row}: end-user {name} is not in feeder {feeder.name}")
            if raw == "" and "capacity_kva" in df.columns and "firm_kw" in df.columns:
                continue  # the other column is given on this row
            ok = np.isfinite(x) and (x > 0 if column == "capacity_kva" else x >= 0) and x <= MAX_KVA
            if not ok:
                got = "nothing" if raw == "" else repr(raw)
                sign = "positive" if column == "capacity_kva" else "non-negative"
                raise InputError(
                    f"{csv} line {row}: {what} of {name} must be a {sign} number of {unit} "
                    f"(at most {MAX_KVA:g}), got {got}"
                )
            seen = found[column]
            if name in seen and seen[name] != float(x):
                raise InputError(
                    f"{csv} line {row}: end-user {name} is given two {whats}, {seen[name]:g} and {x:g} {unit}"
                )
            seen[name] = float(x)
    caps, firm = found["capacity_kva"], found["firm_kw"]
    users = tuple(
        replace(u, capacity_kva=caps.get(u.name, u.capacity_kva), firm_kw=firm.get(u.name, u.firm_kw))
        for u in feeder.end_users
    )
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
    ones. When the non-participants alone break a limit there is no envelope: the row says
    `infeasible`, with no guaranteed power (NaN, a gap in a figure, never zero) and the reason.
    Every feasible point is verified by OpenDSS over the box it promises.
    """
    order = np.random.default_rng(seed).permutation([u.name for u in feeder.end_users]).tolist()
    rows = []
    for k in counts:
        chosen = frozenset(order[:k])
        if progress:
            progress(f"{k} participants")
        study = run_envelopes(feeder, methods, directions, options, chosen, require_verified=False)
        for (m, d), reason in study.infeasible.items():
            rows.append(
                {
                    "participants": k,
                    "direction": d,
                    "method": m,
                    "status": "infeasible",
                    "total_kw": np.nan,
                    "mean_kw": np.nan,
                    "min_kw": np.nan,
                    "verified": False,
                    "reason": reason,
                }
            )
        for env, ver in zip(study.envelopes, study.verifications):
            g = np.array([env.guaranteed_kw[n] for n in chosen]) if chosen else np.zeros(0)
            rows.append(
                {
                    "participants": k,
                    "direction": env.direction.value,
                    "method": env.method.value,
                    "status": env.result.status.value,
                    "total_kw": float(g.sum()),
                    "mean_kw": float(g.mean()) if g.size else 0.0,
                    "min_kw": float(g.min()) if g.size else 0.0,
                    "verified": ver.verified,
                    "reason": "",
                }
            )
    import pandas as pd

    order_key = {(m.value if isinstance(m, Method) else m): i for i, m in enumerate(methods)}
    df = pd.DataFrame(rows)
    return df.sort_values(
        ["participants", "direction", "method"], key=lambda c: c.map(order_key) if c.name == "method" else c
    ).reset_index(drop=True)


@dataclass(frozen=True)
class ParticipationSweep:
    """`sweep_participation`'s points with what produced them (participation.json is `summary`)."""

    feeder: Feeder
    options: EnvelopeOptions
    seed: int
    points: pd.DataFrame
    path: str = ""
    provenance: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        """Feeder, limits, join order and the non-participants' values, under the charts."""
        return (
            f"{self.feeder.name}: limits {self.options.limits.describe()}, end-users join in random order "
            f"(seed {self.seed}); non-participants at {firm_rule(self.options, self.feeder)}"
        )

    @cached_property
    def summary(self) -> dict:
        """participation.json: the feeder, options, provenance and every point."""
        return {
            "feeder": self.feeder.name,
            "path": self.path,
            "end_users": len(self.feeder.end_users),
            "options": options_summary(self.options, self.feeder),
            "provenance": self.provenance,
            "points": self.points.to_dict(orient="records"),
        }
