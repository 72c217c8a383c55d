"""When does a non-firm connection agreement have to be activated, how often, for how long, and
how much energy does that curtail, under static and dynamic limits (seed section 3.5.1)?

Per interval of the profiles:

* firm operation: every end-user at its profile (kW, consumption positive, vars at the options'
  power factor), solved by OpenDSS on the full feeder. An activation is needed when that breaks
  a limit (an end-user voltage outside [vmin, vmax], a line or transformer above its rating);
* activated operation: every participant limited to [-export envelope, +import envelope] of the
  interval (dynamic) or of the horizon (static), non-participants unchanged (firm). Curtailed
  power of a participant = max(0, p - import envelope) + max(0, -p - export envelope); energy
  = power x interval length. The activated operation is checked by OpenDSS too (`resolved`):
  an envelope set is verified with every participant *at* its envelope, and on unbalanced
  feeders a participant below its envelope can raise another phase's voltage (the phases are
  coupled), so an activation does not always clear the violation; the tables say where;
* activations: maximal runs of consecutive intervals needing one (temporary activation: only
  then are participants limited). `permanent` figures apply the static limits in every interval.

A temporary-activation policy caps the number of activations over the horizon and the duration
of each (the seed's example: ten a year, one hour each); `ActivationStudy.policy_check` says
whether the profiles respect it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from nfca.engine import powerflows
from nfca.errors import InputError
from nfca.model.envelope import Direction, Method
from nfca.studies.dynamic import DynamicStudy
from nfca.verify import Verification, check

LIMITS = ("static", "dynamic")


@dataclass(frozen=True)
class ActivationPolicy:
    """Caps of a temporary activation: activations per horizon and duration of each (None: no cap)."""

    max_count: int | None = 10
    max_duration: pd.Timedelta | None = pd.Timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_count is not None and self.max_count < 0:
            raise InputError(f"--max-activations must be >= 0, got {self.max_count}")
        if self.max_duration is not None and self.max_duration <= pd.Timedelta(0):
            raise InputError(f"--max-duration must be positive, got {self.max_duration}")


@dataclass(frozen=True)
class ActivationStudy:
    """When activations are needed over a horizon, the curtailment under each limits x method,
    and whether the activated operation is within limits (`analyse` builds it)."""

    dynamic: DynamicStudy
    policy: ActivationPolicy
    firm: tuple[Verification, ...]  # everyone at its profile
    needed: np.ndarray  # bool per interval
    curtailed_kw: dict[tuple[str, str], np.ndarray]  # (limits, method) -> interval x end-user kW
    resolved: dict[tuple[str, str], np.ndarray]  # (limits, method) -> bool per interval (True where not needed)
    after: dict[tuple[str, str], dict[int, Verification]]  # activated intervals' OpenDSS checks
    provenance: dict = field(default_factory=dict)  # what produced the study, for activations.json

    def __repr__(self) -> str:
        p = self.policy_check()
        return (
            f"<ActivationStudy {self.dynamic.feeder.name}: {int(self.needed.sum())} of {len(self.needed)} intervals "
            f"need an activation, {p['activations']} activation(s); policy {'met' if p['satisfied'] else 'NOT met'}>"
        )

    # ------------------------------------------------------------------ derived
    @property
    def methods(self) -> list[str]:
        """The envelope methods analysed."""
        return list(dict.fromkeys(m for _, m in self.curtailed_kw))

    @property
    def events(self) -> list[tuple[int, int]]:
        """Activations: (first interval, one past the last)."""
        out, k, n = [], 0, len(self.needed)
        while k < n:
            if self.needed[k]:
                j = k
                while j < n and self.needed[j]:
                    j += 1
                out.append((k, j))
                k = j
            else:
                k += 1
        return out

    def policy_check(self) -> dict:
        """The activations against the policy's count and duration caps."""
        p, step = self.policy, self.dynamic.profiles.interval
        durations = [(j - k) * step for k, j in self.events]
        longest = max(durations, default=pd.Timedelta(0))
        count_ok = p.max_count is None or len(durations) <= p.max_count
        duration_ok = p.max_duration is None or longest <= p.max_duration
        return {
            "max_count": p.max_count,
            "max_duration_min": _minutes(p.max_duration),
            "activations": len(durations),
            "longest_min": _minutes(longest),
            "too_long": sum(p.max_duration is not None and d > p.max_duration for d in durations),
            "count_ok": bool(count_ok),
            "duration_ok": bool(duration_ok),
            "satisfied": bool(count_ok and duration_ok),
        }

    # ------------------------------------------------------------------ tables
    def intervals_table(self) -> pd.DataFrame:
        """Per interval: the firm operation's extremes, whether an activation is needed, and the
        curtailed power under each limits x method (and whether the activation resolves it)."""
        prof = self.dynamic.profiles
        kw = prof.kw.to_numpy()
        df = pd.DataFrame(
            {
                "timestamp": [str(t) for t in prof.timestamps],
                "consumption_kw": np.round(np.clip(kw, 0, None).sum(axis=1), 3),
                "generation_kw": np.round(np.clip(-kw, 0, None).sum(axis=1), 3),
                "firm_v_min_pu": [round(v.v_min_pu, 5) for v in self.firm],
                "firm_v_max_pu": [round(v.v_max_pu, 5) for v in self.firm],
                "firm_max_loading_pct": [round(v.max_loading_pct, 2) for v in self.firm],
                "activation_needed": self.needed,
                "violation": [v.violations[0] if v.violations else "" for v in self.firm],
            }
        )
        for (lim, m), c in self.curtailed_kw.items():
            df[f"curtailed_{lim}_{m}_kw"] = np.round(c.sum(axis=1), 4)
            df[f"resolved_{lim}_{m}"] = self.resolved[(lim, m)]
        return df

    def events_table(self) -> pd.DataFrame:
        """activations.csv: one row per activation."""
        prof, h = self.dynamic.profiles, self.dynamic.profiles.hours
        rows = []
        for n, (k, j) in enumerate(self.events, start=1):
            row = {
                "activation": n,
                "start": str(prof.timestamps[k]),
                "end": str(prof.timestamps[j - 1] + prof.interval),
                "duration_min": _minutes((j - k) * prof.interval),
                "intervals": j - k,
                "first_violation": self.firm[k].violations[0] if self.firm[k].violations else "",
                "v_max_firm_pu": round(max(v.v_max_pu for v in self.firm[k:j]), 5),
                "v_min_firm_pu": round(min(v.v_min_pu for v in self.firm[k:j]), 5),
                "max_loading_firm_pct": round(max(v.max_loading_pct for v in self.firm[k:j]), 2),
                "within_policy": self.policy.max_duration is None
                or (j - k) * prof.interval <= self.policy.max_duration,
            }
            for (lim, m), c in self.curtailed_kw.items():
                row[f"curtailed_{lim}_{m}_kwh"] = round(float(c[k:j].sum() * h), 4)
                row[f"resolved_{lim}_{m}"] = bool(self.resolved[(lim, m)][k:j].all())
            rows.append(row)
        cols = [
            "activation",
            "start",
            "end",
            "duration_min",
            "intervals",
            "first_violation",
            "v_max_firm_pu",
            "v_min_firm_pu",
            "max_loading_firm_pct",
            "within_policy",
        ]
        cols += [
            f"{x}_{lim}_{m}{u}" for (lim, m) in self.curtailed_kw for x, u in (("curtailed", "_kwh"), ("resolved", ""))
        ]
        return pd.DataFrame(rows, columns=cols)

    def users_table(self) -> pd.DataFrame:
        """curtailment.csv: per end-user, its energy and the energy curtailed by temporary
        activations under static and dynamic limits, and by permanent static limits."""
        d = self.dynamic
        prof, h = d.profiles, d.profiles.hours
        kw = prof.kw.to_numpy()
        df = pd.DataFrame(
            {
                "end_user": list(prof.kw.columns),
                "participant": [n in d.participants for n in prof.kw.columns],
                "consumption_kwh": np.round(np.clip(kw, 0, None).sum(axis=0) * h, 4),
                "generation_kwh": np.round(np.clip(-kw, 0, None).sum(axis=0) * h, 4),
            }
        )
        for (lim, m), c in self.curtailed_kw.items():
            df[f"curtailed_{lim}_{m}_kwh"] = np.round(c.sum(axis=0) * h, 4)
        for m in self.methods:
            df[f"curtailed_permanent_static_{m}_kwh"] = np.round(_curtailment(d, "static", m, kw).sum(axis=0) * h, 4)
        return df

    @cached_property
    def summary(self) -> dict:
        """activations.json: activation need, policy check, curtailed energy, resolution."""
        d = self.dynamic
        h = d.profiles.hours
        kw = d.profiles.kw.to_numpy()
        part = np.array([n in d.participants for n in d.profiles.kw.columns])
        out = {
            "feeder": d.feeder.name,
            "profiles": d.profiles.source,
            "intervals": len(d.profiles),
            "resolution_min": _minutes(d.profiles.interval),
            "participants": int(part.sum()),
            "intervals_needing_activation": int(self.needed.sum()),
            "activated_min": _minutes(int(self.needed.sum()) * d.profiles.interval),
            "policy": self.policy_check(),
            "participant_consumption_kwh": round(float(np.clip(kw[:, part], 0, None).sum() * h), 3),
            "participant_generation_kwh": round(float(np.clip(-kw[:, part], 0, None).sum() * h), 3),
            "curtailed_kwh": {},
            "resolved": {},
            "envelopes_verified": d.verified,
            "provenance": self.provenance,
        }
        for (lim, m), c in self.curtailed_kw.items():
            out["curtailed_kwh"].setdefault(m, {})[lim] = round(float(c.sum() * h), 4)
            bad = [v for v in self.after[(lim, m)].values() if not v.verified]
            out["resolved"].setdefault(m, {})[lim] = {
                "all": not bad,
                "unresolved_intervals": len(bad),
                "v_max_after_pu": round(max((v.v_max_pu for v in self.after[(lim, m)].values()), default=0.0), 5),
                "v_min_after_pu": round(min((v.v_min_pu for v in self.after[(lim, m)].values()), default=0.0), 5),
                "first_violation": bad[0].violations[0] if bad else "",
            }
        for m in self.methods:
            out["curtailed_kwh"][m]["permanent_static"] = round(float(_curtailment(d, "static", m, kw).sum() * h), 4)
        return out


def _minutes(td: pd.Timedelta | None) -> float | None:
    return None if td is None else round(td / pd.Timedelta(minutes=1), 6)


def _limits(d: DynamicStudy, lim: str, method: str, direction: Direction) -> np.ndarray:
    """interval x end-user envelope (kW); inf for non-participants and for a missing direction."""
    names = list(d.profiles.kw.columns)
    n = len(d.profiles)
    try:
        c = d.chain(method, direction)
    except StopIteration:
        return np.full((n, len(names)), np.inf)
    part = np.array([x in d.participants for x in names])
    if lim == "static":
        row = np.array([c.static.guaranteed_kw[x] for x in names])
        g = np.tile(row, (n, 1))
    else:
        g = np.array([[e.guaranteed_kw[x] for x in names] for e in c.dynamic])
    return np.where(part, g, np.inf)


def _curtailment(d: DynamicStudy, lim: str, method: str, kw: np.ndarray) -> np.ndarray:
    """interval x end-user curtailed power (kW) if the limits applied in every interval."""
    gi = _limits(d, lim, method, Direction.import_)
    ge = _limits(d, lim, method, Direction.export)
    return np.clip(kw - gi, 0, None) + np.clip(-kw - ge, 0, None)


def analyse(study: DynamicStudy, policy: ActivationPolicy = ActivationPolicy()) -> ActivationStudy:
    """Activation need, activations, curtailment and the policy check over the study's profiles."""
    d = study
    feeder, options, prof = d.feeder, d.options, d.profiles
    tan_phi = float(np.tan(np.arccos(options.power_factor)))
    names = list(prof.kw.columns)
    kw = prof.kw.to_numpy()

    def loads(p: np.ndarray) -> dict[str, tuple[float, float]]:
        return {n: (float(x), tan_phi * abs(float(x))) for n, x in zip(names, p)}

    firm = tuple(check(feeder, pf, options) for pf in powerflows(feeder, [loads(r) for r in kw], options.source_pu))
    needed = np.array([not v.verified for v in firm])
    methods = list(dict.fromkeys(c.method.value for c in d.chains))
    curtailed, resolved, after = {}, {}, {}
    act = np.flatnonzero(needed)
    for m in methods:
        for lim in LIMITS:
            gi = _limits(d, lim, m, Direction.import_)
            ge = _limits(d, lim, m, Direction.export)
            limited = np.clip(kw, -ge, gi)
            c = np.where(needed[:, None], kw - limited, 0.0)
            curtailed[(lim, m)] = np.abs(c)
            flows = powerflows(feeder, [loads(limited[k]) for k in act], options.source_pu) if len(act) else []
            checks = {int(k): check(feeder, pf, options) for k, pf in zip(act, flows)}
            after[(lim, m)] = checks
            resolved[(lim, m)] = np.array([checks[k].verified if k in checks else True for k in range(len(kw))])
    return ActivationStudy(d, policy, firm, needed, curtailed, resolved, after)


@dataclass(frozen=True)
class _Stored:
    guaranteed_kw: dict[str, float]


@dataclass(frozen=True)
class StoredChain:
    """One method x direction of an earlier run: the static limits and the dynamic ones per interval."""

    method: Method
    direction: Direction
    static: _Stored
    dynamic: tuple[_Stored, ...]


@dataclass(frozen=True)
class StoredDynamic:
    """The dynamic envelopes of an earlier `nfca envelopes --profiles` run, read back (what
    `analyse` needs of a DynamicStudy)."""

    feeder: object
    options: object
    profiles: object
    participants: frozenset[str]
    chains: tuple[StoredChain, ...]
    verified: bool

    def chain(self, method, direction) -> StoredChain:
        """The stored envelopes of one method and direction."""
        method, direction = Method(method), Direction(direction)
        return next(c for c in self.chains if c.method is method and c.direction is direction)


def read_dynamic(folder: Path, feeder, profiles, options, methods=None) -> StoredDynamic:
    """The envelopes of an earlier dynamic run in `folder` (envelopes.csv, summary.json), checked
    against this feeder, these profiles and these limits; raises InputError naming a mismatch."""
    import json

    from nfca.io.schema import read_envelopes

    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not (folder / "envelopes.csv").is_file() or not summary_path.is_file():
        raise InputError(
            f"{folder}: no envelopes.csv and summary.json (give the --out folder of `nfca envelopes --profiles`)"
        )
    df = read_envelopes(folder / "envelopes.csv")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{summary_path}: cannot read ({exc})") from None
    if "timestamp" not in df.columns:
        raise InputError(f"{folder}: holds static envelopes only; run `nfca envelopes --profiles` to get dynamic ones")
    users = {u.name for u in feeder.end_users}
    if set(df["end_user"]) != users:
        raise InputError(f"{folder}: its end-users are not those of feeder {feeder.name}")
    stamps = [str(t) for t in profiles.timestamps]
    if sorted(set(df["timestamp"]) - {"static"}) != sorted(stamps):
        raise InputError(
            f"{folder}: its intervals are not those of the profiles ({len(set(df['timestamp'])) - 1} "
            f"against {len(stamps)}); use the same profiles and --resolution"
        )
    o = summary.get("options", {})
    mine = {"vmin_pu": options.limits.vmin_pu, "vmax_pu": options.limits.vmax_pu, "power_factor": options.power_factor}
    for k, v in mine.items():
        if k in o and abs(float(o[k]) - v) > 1e-9:
            raise InputError(f"{folder}: computed with {k} = {o[k]}, not {v}: use the same options")
    chains = []
    for (m, d), g in df.groupby(["method", "direction"], sort=False):
        if methods is not None and m not in methods:
            continue
        by_stamp = {t: dict(zip(x["end_user"], x["guaranteed_kw"])) for t, x in g.groupby("timestamp")}
        chains.append(
            StoredChain(
                Method(m), Direction(d), _Stored(by_stamp["static"]), tuple(_Stored(by_stamp[t]) for t in stamps)
            )
        )
    part = frozenset(df.loc[df["participant"], "end_user"])
    return StoredDynamic(feeder, options, profiles, part, tuple(chains), bool(summary.get("verified", False)))


def write_activations(study: ActivationStudy, out: Path, formats: tuple[str, ...] | None = None) -> list[Path]:
    """activations.csv (one row per activation), curtailment.csv (per end-user), intervals.csv,
    activations.json (summary and policy check), report.html (its charts drawn in the page) and,
    with "png" in `formats` (default `nfca.io.outputs.DEFAULT_FORMATS`), activations.png.
    Returns the files written."""
    from nfca.io.outputs import DEFAULT_FORMATS, prepare_dir, write_csv, write_json

    formats = DEFAULT_FORMATS if formats is None else formats
    out = prepare_dir(out)
    intervals, events, s = study.intervals_table(), study.events_table(), study.summary
    vmin, vmax = study.dynamic.options.limits.vmin_pu, study.dynamic.options.limits.vmax_pu
    written = []
    if "csv" in formats:
        written += [
            write_csv(out / "activations.csv", events),
            write_csv(out / "curtailment.csv", study.users_table()),
            write_csv(out / "intervals.csv", intervals),
        ]
    if "json" in formats:
        written.append(write_json(out / "activations.json", s))
    if "png" in formats:  # the report draws its own charts: matplotlib only for the PNG file
        from nfca.io import plots

        written.append(plots.activations(intervals, events, s, out / "activations.png", vmin, vmax))
    if "html" in formats:
        written.append(_write_report(study, intervals, events, out / "report.html"))
    return written


def _write_report(study: ActivationStudy, intervals: pd.DataFrame, events: pd.DataFrame, target: Path) -> Path:
    from nfca.io.charts import activation_timeline
    from nfca.io.report import table_html, write_page

    s, limits = study.summary, study.dynamic.options.limits
    pol = s["policy"]
    curtailed = pd.DataFrame(
        [
            {
                "method": m,
                **{f"{k} kWh": v for k, v in per.items()},
                "unresolved intervals (dynamic / static)": f"{s['resolved'][m]['dynamic']['unresolved_intervals']} / "
                f"{s['resolved'][m]['static']['unresolved_intervals']}",
            }
            for m, per in s["curtailed_kwh"].items()
        ]
    )
    lead = (
        f"{s['participants']} participants; {s['intervals_needing_activation']} of {s['intervals']} intervals "
        f"need an activation: {pol['activations']} activation(s), longest {pol['longest_min']:g} min; policy "
        f"{'met' if pol['satisfied'] else 'NOT met'}. Participants' energy: {s['participant_consumption_kwh']:.1f} "
        f"kWh consumed, {s['participant_generation_kwh']:.1f} kWh generated."
    )
    return write_page(
        target,
        f"NFCA activations: {s['feeder']}",
        lead,
        [
            (
                "Energy curtailed per method (temporary activation; permanent: static limits all the time)",
                table_html(curtailed, "curtailed", 1),
            ),
            ("Activations", table_html(events, "activations")),
        ],
        [activation_timeline(intervals, events, s, limits.vmin_pu, limits.vmax_pu)],
        s,
    )
