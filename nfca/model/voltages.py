"""Customer voltages in volts: the nominal voltage each end-user sees (from its bus's voltage
base), the limits that means in volts, and whether the loads' own kV agree with the base.

Limits in per unit follow the feeder's `VoltageBases`: the same 0.90-1.10 pu is 216-264 V on a
416 V base and 207-253 V on a 398 V one. A planner must see the volts, and be told when the
loads say otherwise (a feeder with bases [22 0.42] whose loads are kV=0.23).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nfca.errors import InputError
from nfca.model.limits import Limits
from nfca.model.network import PHASES, Feeder, leg_nominal_pu
from nfca.notices import Notice

RATED_TOL = 0.02  # loads' kV further than this from their bus base earn a notice
EN50160_BAND = 0.10  # EN 50160: supply voltage within +-10 % of the nominal (230 V, or 400 V phase to phase)


@dataclass(frozen=True)
class LegGroup:
    """End-users seeing the same kind of voltage with the same nominal and rated values."""

    kind: str  # "phase-to-neutral" (to a neutral conductor or earth) or "phase-to-phase"
    nominal_v: float  # from the bus voltage base
    rated_v: float | None  # from the loads' kV; None when not known
    end_users: tuple[str, ...]

    @property
    def en50160_v(self) -> tuple[float, float]:
        """EN 50160's band around the standard nominal nearest the loads' rating (230 or 400 V)."""
        ref = self.rated_v if self.rated_v else self.nominal_v
        un = 230.0 if ref < 300 else 400.0
        return un * (1 - EN50160_BAND), un * (1 + EN50160_BAND)


def leg_groups(feeder: Feeder) -> tuple[LegGroup, ...]:
    """The end-users' legs grouped by kind, nominal voltage and rated voltage (0.1 V)."""
    groups: dict[tuple, list[str]] = {}
    for u in feeder.end_users:
        base = feeder.buses[u.bus].kv_base_ln * 1e3
        for leg in u.legs:
            kind = "phase-to-phase" if leg[0] in PHASES and leg[1] in PHASES else "phase-to-neutral"
            rated = None if u.rated_v is None else round(u.rated_v, 1)
            key = (kind, round(base * leg_nominal_pu(leg), 1), rated)
            if u.name not in groups.setdefault(key, []):
                groups[key].append(u.name)
    return tuple(
        LegGroup(k, nom, rated, tuple(users))
        for (k, nom, rated), users in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0.0))
    )


def limits_v(group: LegGroup, limits: Limits) -> tuple[float, float]:
    """The (lower, upper) voltage limits in volts for a group's legs."""
    lo, hi = limits.voltage_bounds_pu(group.nominal_v)
    return float(lo) * group.nominal_v, float(hi) * group.nominal_v


def voltage_limits_v(feeder: Feeder, limits: Limits) -> list[dict]:
    """The limits in volts per kind of customer voltage and nominal, as summary.json records them."""
    rows: dict[tuple[str, float], dict] = {}
    for g in leg_groups(feeder):
        lo, hi = limits_v(g, limits)
        row = rows.setdefault(
            (g.kind, g.nominal_v),
            {"legs": g.kind, "nominal_v": g.nominal_v, "vmin_v": round(lo, 2), "vmax_v": round(hi, 2), "end_users": 0},
        )
        row["end_users"] += len(g.end_users)
    return list(rows.values())


def describe_voltage_limits(rows: list[dict], options: dict) -> str:
    """The limits in one line, from summary.json's `voltage_limits` rows and `options`:
    'voltage limits 216.18-264.22 V phase-to-neutral (0.90-1.10 pu of 240.2 V)'."""
    in_pu = options.get("vmin_v") is None and options.get("vmax_v") is None
    return "voltage limits " + "; ".join(
        f"{d['vmin_v']:g}-{d['vmax_v']:g} V {d['legs']}"
        + (f" ({options['vmin_pu']:.2f}-{options['vmax_pu']:.2f} pu of {d['nominal_v']:g} V)" if in_pu else "")
        for d in rows
    )


def check_voltage_limits(feeder: Feeder, limits: Limits) -> None:
    """Refuse limits in volts that no customer voltage of a kind could meet even at its nominal
    (e.g. 207-253 V applied to a three-phase delta user's 416 V legs)."""
    if limits.vmin_v is None and limits.vmax_v is None:
        return
    for g in leg_groups(feeder):
        lo, hi = limits_v(g, limits)
        if not lo < g.nominal_v < hi:
            raise InputError(
                f"voltage limits {lo:g}-{hi:g} V cannot hold for the {g.kind} voltage of nominal {g.nominal_v:g} V "
                f"that Load.{g.end_users[0]}{f' and {len(g.end_users) - 1} more' if len(g.end_users) > 1 else ''} "
                "see: on a feeder whose users see different nominal voltages give the limits in pu (--vmin/--vmax)"
            )


def rated_voltage_notices(feeder: Feeder, limits: Limits) -> tuple[Notice, ...]:
    """A notice per kind of customer voltage whose loads' kV differ from the bus base by more
    than 2 %: the limits are per unit of the base, so show the volts they mean and EN 50160's."""
    if limits.vmin_v is not None and limits.vmax_v is not None:
        return ()  # limits in volts do not depend on the base
    out = []
    for g in leg_groups(feeder):
        if g.rated_v is None or abs(g.rated_v - g.nominal_v) <= RATED_TOL * g.rated_v:
            continue
        lo, hi = limits_v(g, limits)
        en_lo, en_hi = g.en50160_v
        n = len(g.end_users)
        out.append(
            Notice(
                "rated_voltage_differs",
                f"{n} load(s) rated {g.rated_v:g} V {g.kind} (their kV) sit on buses whose voltage base gives "
                f"{g.nominal_v:g} V ({100 * (g.nominal_v / g.rated_v - 1):+.1f} %): the limits "
                f"{limits.vmin_pu:.2f}-{limits.vmax_pu:.2f} pu are {lo:.1f}-{hi:.1f} V there; EN 50160 around "
                f"{(en_lo + en_hi) / 2:g} V is {en_lo:g}-{en_hi:g} V (--vmin-v {en_lo:g} --vmax-v {en_hi:g})",
                data={
                    "legs": g.kind,
                    "rated_v": g.rated_v,
                    "nominal_v": g.nominal_v,
                    "vmin_v": round(lo, 2),
                    "vmax_v": round(hi, 2),
                    "en50160_v": [round(en_lo, 1), round(en_hi, 1)],
                    "end_users": n,
                    "example": g.end_users[0],
                },
            )
        )
    return tuple(out)


def leg_rated_v(kv: float, phases: int, delta: bool) -> float | None:
    """The voltage across each leg of an OpenDSS load of rating `kv` (V): kV is phase-to-phase for
    2- and 3-phase loads, the voltage across the load for single-phase ones."""
    if not kv > 0:
        return None
    if phases == 1 or delta:
        return kv * 1e3
    return kv * 1e3 / math.sqrt(3)
