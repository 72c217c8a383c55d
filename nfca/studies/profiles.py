"""End-user profiles: the net active power of every end-user in every interval of a horizon.

Convention: kW, consumption positive, generation negative (a PV home at noon is negative); the
value at a timestamp is the mean power over the interval that starts there. Profiles come from

* a CSV, long (`end_user, timestamp, p_kw`, one row per end-user and interval) or wide (a
  `timestamp` column and one column per end-user), at any regular resolution; or
* the feeder's own OpenDSS load shapes (each load's `daily`, else `yearly`, else `duty` shape
  times its kW; a load without one is constant), read with the feeder by `nfca.engine.read`.

`Profiles.resample` brings them to a coarser resolution (mean power per interval).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nfca.errors import InputError
from nfca.model.network import Feeder

LOADSHAPES = "loadshapes"  # `--profiles loadshapes`: the feeder's own OpenDSS load shapes
LOADSHAPE_START = pd.Timestamp("2000-01-01")  # nominal date of load-shape hour 0


@dataclass(frozen=True, eq=False)
class Profiles:
    """Net kW per interval (rows, a regular DatetimeIndex of interval starts) and end-user (columns)."""

    kw: pd.DataFrame
    interval: pd.Timedelta
    source: str

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        return self.kw.index

    @property
    def hours(self) -> float:
        """Length of one interval in hours (to turn kW into kWh)."""
        return self.interval / pd.Timedelta(hours=1)

    def __len__(self) -> int:
        return len(self.kw)

    def at(self, k: int) -> dict[str, float]:
        """End-user -> kW in interval k."""
        return dict(zip(self.kw.columns, self.kw.iloc[k].to_numpy(dtype=float).tolist()))

    def resample(self, resolution: str | pd.Timedelta | None) -> Profiles:
        """Mean power per interval of `resolution` (a whole multiple of the current interval)."""
        if resolution is None:
            return self
        step = parse_resolution(resolution)
        if step == self.interval:
            return self
        ratio = step / self.interval
        if step < self.interval or abs(ratio - round(ratio)) > 1e-9:
            raise InputError(
                f"--resolution {_fmt(step)}: the profiles are at {_fmt(self.interval)}; choose a whole "
                f"multiple of it (mean power per interval)"
            )
        n = int(round(ratio))
        if len(self.kw) % n:
            raise InputError(
                f"--resolution {_fmt(step)}: the horizon of {len(self.kw)} x {_fmt(self.interval)} "
                f"is not a whole number of {_fmt(step)} intervals"
            )
        groups = np.arange(len(self.kw)) // n
        kw = self.kw.groupby(groups).mean()
        kw.index = self.kw.index[::n]
        return Profiles(kw, step, self.source)

    def for_feeder(self, feeder: Feeder) -> Profiles:
        """The profiles with one column per end-user of `feeder`, in the feeder's order."""
        names = [u.name for u in feeder.end_users]
        unknown = [c for c in self.kw.columns if c not in feeder.end_user]
        if unknown:
            raise InputError(f"{self.source}: end-user {unknown[0]} is not in feeder {feeder.name}")
        missing = [n for n in names if n not in self.kw.columns]
        if missing:
            raise InputError(
                f"{self.source}: no profile for end-user {missing[0]} "
                f"({len(missing)} of {len(names)} end-users missing)"
            )
        return Profiles(self.kw[names], self.interval, self.source)


def parse_resolution(text: str | pd.Timedelta, option: str = "--resolution") -> pd.Timedelta:
    """'15min', '1h', '1min', '30s' ... as a positive Timedelta (`option` names it in errors)."""
    if isinstance(text, str) and re.fullmatch(r"\s*[+-]?[\d.]+\s*", text):
        raise InputError(f"{option}: '{text}' needs a unit, e.g. {text.strip()}min or {text.strip()}h")
    try:
        step = pd.Timedelta(text)
    except (ValueError, TypeError):
        raise InputError(f"{option}: '{text}' is not a duration such as 15min, 1h or 1min") from None
    if pd.isna(step) or step <= pd.Timedelta(0):
        raise InputError(f"{option} must be positive, got {text}")
    return step


def _fmt(step: pd.Timedelta) -> str:
    minutes = step / pd.Timedelta(minutes=1)
    return f"{minutes:g}min" if minutes < 60 or minutes % 60 else f"{minutes / 60:g}h"


def load_profiles(spec: str | Path, feeder: Feeder, resolution: str | None = None) -> Profiles:
    """Profiles for `feeder` from a CSV or, with `spec` = 'loadshapes', its OpenDSS load shapes
    (those `nfca.engine.read` read with the feeder: the file is not parsed again)."""
    if str(spec).strip().lower() == LOADSHAPES:
        from nfca.engine import load_shapes

        profiles = from_load_shapes(feeder, load_shapes(feeder))
    else:
        profiles = read_csv(Path(spec))
    return profiles.for_feeder(feeder).resample(resolution)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV as text, every cell as written: nothing is read as missing (`NA`, `null`, `None`,
    `nan` are names), headers stripped."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as exc:
        raise InputError(f"{path}: cannot read CSV ({' '.join(str(exc).split())})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def numbers(cells: pd.Series, path: Path, what: str, limit: float) -> np.ndarray:
    """Cells as finite numbers within ±`limit`; InputError naming the row and the value otherwise."""
    text = cells.str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (np.abs(np.nan_to_num(values)) > limit)
    if bad.any():
        k = int(np.argmax(bad))
        raw = text.iloc[k]
        got = "nothing" if raw == "" else repr(raw)
        beyond = f" within ±{limit:g}" if np.isfinite(values[k]) else ""
        raise InputError(f"{path} line {k + 2}: {what} must be a finite number{beyond}, got {got}")
    return values


def timestamps(cells: pd.Series, path: Path) -> pd.DatetimeIndex:
    """Dates and times as written (ISO 8601 or other unambiguous forms). Times with a UTC offset
    (e.g. across a daylight-saving change) are read as UTC; a whole number is refused (it would be
    read as nanoseconds since 1970)."""
    text = cells.str.strip()
    number = text.str.fullmatch(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")
    if number.any():
        k = int(np.argmax(number.to_numpy()))
        raise InputError(
            f"{path} line {k + 2}: timestamp {text.iloc[k]!r} is a number, not a date and time "
            "(write e.g. 2024-01-01 00:15)"
        )
    zoned = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
    if zoned.any() and not zoned.all():
        k = int(np.argmax((zoned != zoned.iloc[0]).to_numpy()))
        raise InputError(f"{path} line {k + 2}: timestamp {text.iloc[k]!r} mixes times with and without a UTC offset")
    for fmt in ("ISO8601", "mixed"):
        parsed = pd.to_datetime(text, format=fmt, utc=bool(zoned.any()), errors="coerce")
        if not parsed.isna().any():
            return pd.DatetimeIndex(parsed)
    k = int(np.argmax(parsed.isna().to_numpy()))
    raise InputError(f"{path} line {k + 2}: timestamp {text.iloc[k]!r} is not a date and time")


MAX_KW = 1e5  # 100 MW: beyond any LV end-user; a larger value is a unit error


def read_csv(path: Path) -> Profiles:
    """A long (`end_user, timestamp, p_kw`) or wide (`timestamp` + one column per end-user) CSV."""
    if not path.is_file():
        raise InputError(f"--profiles: {path} is not a readable file (or 'loadshapes')")
    df = read_table(path)
    lower = {c.lower(): c for c in df.columns}
    if "timestamp" not in lower:
        raise InputError(
            f"{path}: needs a timestamp column (long: end_user,timestamp,p_kw; wide: timestamp "
            f"and one column per end-user)"
        )
    stamps = timestamps(df[lower["timestamp"]], path)
    if {"end_user", "p_kw"} <= set(lower):
        long = pd.DataFrame(
            {
                "end_user": df[lower["end_user"]].str.strip().str.lower(),
                "timestamp": stamps,
                "p_kw": numbers(df[lower["p_kw"]], path, "p_kw", MAX_KW),
            }
        )
        dup = long.duplicated(["end_user", "timestamp"])
        if dup.any():
            row = long[dup].iloc[0]
            raise InputError(f"{path}: end-user {row['end_user']} has two values at {row['timestamp']}")
        wide = long.pivot(index="timestamp", columns="end_user", values="p_kw")
    else:
        users = [c for c in df.columns if c != lower["timestamp"]]
        wide = pd.DataFrame(
            {c.strip().lower(): numbers(df[c], path, f"the power of {c}", MAX_KW) for c in users}, index=stamps
        )
        names = [c.strip().lower() for c in users]
        dups = [n for n in names if names.count(n) > 1]
        if dups:
            raise InputError(f"{path}: end-user {dups[0]} has two columns")
    wide = wide.sort_index()
    bad = ~np.isfinite(wide.to_numpy())
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{path}: no value for end-user {wide.columns[c]} at {wide.index[r]}")
    wide.columns = [str(c) for c in wide.columns]
    return Profiles(wide, _regular_step(wide.index, path), str(path))


def _regular_step(index: pd.DatetimeIndex, source) -> pd.Timedelta:
    if len(index) < 1:
        raise InputError(f"{source}: no intervals")
    if index.has_duplicates:
        raise InputError(f"{source}: timestamp {index[index.duplicated()][0]} appears twice")
    if len(index) == 1:
        return pd.Timedelta(hours=1)
    steps = np.diff(index.to_numpy()).astype("timedelta64[ns]")
    if np.any(steps != steps[0]):
        k = int(np.argmax(steps != steps[0]))
        raise InputError(
            f"{source}: timestamps must be evenly spaced; {index[k]} to {index[k + 1]} breaks the "
            f"{_fmt(pd.Timedelta(steps[0]))} step"
        )
    return pd.Timedelta(steps[0])


def from_load_shapes(feeder: Feeder, series: dict) -> Profiles:
    """The feeder's OpenDSS load shapes (`nfca.engine.read`'s) on one regular grid (the finest
    step that fits all of them), over the longest shape; shorter shapes repeat, as OpenDSS
    repeats them."""
    shaped = {n: s for n, s in series.items() if s.shape}
    if not shaped:
        raise InputError(f"{feeder.path}: no load has a daily, yearly or duty load shape")
    seconds = [round(3600 * h) for s in shaped.values() for h in (*s.hours, s.hours[-1] + s.interval_h)]
    step = 0
    for x in seconds:
        step = math.gcd(step, x)
    if step <= 0:
        raise InputError(f"{feeder.path}: the load shapes have no common time step")
    horizon = max(s.hours[-1] + s.interval_h for s in shaped.values())
    n = int(round(3600 * horizon / step))
    t = np.arange(n) * step / 3600.0
    data = {}
    for name, s in series.items():
        if not s.shape:
            data[name] = np.full(n, float(s.kw[0]))
            continue
        period = s.hours[-1] + s.interval_h
        k = np.searchsorted(s.hours, np.mod(t, period) + 1e-9, side="right") - 1
        data[name] = s.kw[np.clip(k, 0, len(s.kw) - 1)]
    index = LOADSHAPE_START + pd.to_timedelta(np.arange(n) * step, unit="s")
    return Profiles(pd.DataFrame(data, index=index), pd.Timedelta(seconds=step), f"{feeder.path} (load shapes)")
