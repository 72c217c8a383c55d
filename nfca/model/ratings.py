"""Line ampacities where the feeder file has none: an explicit table or default, never OpenDSS's
silent 400 A.

A DSO's GIS export often carries no `normamps` at all. The planner then gives the ratings of
their cable types (`--ampacity CSV`, rows `linecode,amps` or `line,amps`) or one rating for every
line without one (`--default-ampacity AMPS`); without either, one error lists the line codes that
lack an ampacity, with counts. A power flow needs no ampacity (`required=False`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nfca.errors import FeederError, InputError
from nfca.notices import Notice

OPENDSS_DEFAULT_AMPS = 400.0  # what OpenDSS assumes for a line without normamps


@dataclass(frozen=True)
class AmpacityRules:
    """Where a line's ampacity comes from: a table by line and by line code (it wins over the
    file's normamps), then the file, then `default_a` for lines that still have none."""

    by_line: dict[str, float] = field(default_factory=dict)
    by_linecode: dict[str, float] = field(default_factory=dict)
    default_a: float | None = None
    table: str = ""  # where the table came from, for messages
    required: bool = True  # False: lines without an ampacity are unrated (a power flow)

    def __post_init__(self) -> None:
        if self.default_a is not None and not (math.isfinite(self.default_a) and self.default_a > 0):
            raise InputError(f"--default-ampacity must be a positive number of amperes, got {self.default_a:g}")


@dataclass(frozen=True)
class LineRating:
    """What the reader found for one line (names lower case, as OpenDSS keeps them)."""

    name: str
    linecode: str  # "" when the line has none
    file_a: float | None  # normamps given in the file (on the line or its code), None if not given
    rated: bool = True  # False for switches: not rated
    length_units: int = 0  # OpenDSS's code of the units its length is in (0: none anywhere)


def resolve_ampacities(lines: list[LineRating], rules: AmpacityRules) -> tuple[dict[str, float], tuple[Notice, ...]]:
    """Every rated line's ampacity (A) under `rules`, and the notices saying what came from where.

    Raises FeederError listing the line codes (with counts) of the lines left without one when
    `rules.required`; otherwise those lines are unrated (infinite ampacity).
    """
    unknown = sorted(set(rules.by_line) - {x.name for x in lines})
    if unknown:
        raise InputError(
            f"{rules.table}: line {unknown[0]} is not in the feeder"
            f"{f' ({len(unknown)} unknown lines)' if len(unknown) > 1 else ''}"
        )
    amps: dict[str, float] = {}
    tabled, overridden, defaulted, missing = [], 0, [], []
    for x in lines:
        if not x.rated:
            amps[x.name] = math.inf
            continue
        table_a = rules.by_line.get(x.name, rules.by_linecode.get(x.linecode) if x.linecode else None)
        if table_a is not None:
            amps[x.name] = table_a
            tabled.append(x)
            overridden += x.file_a is not None and x.file_a != table_a
        elif x.file_a is not None:
            amps[x.name] = x.file_a
        elif rules.default_a is not None:
            amps[x.name] = rules.default_a
            defaulted.append(x)
        else:
            missing.append(x)
            amps[x.name] = math.inf
    if missing and rules.required:
        raise FeederError(_missing_message(missing, len([x for x in lines if x.rated])))
    notices = []
    if tabled:
        codes = len({x.linecode for x in tabled if x.linecode and x.name not in rules.by_line})
        notices.append(
            Notice(
                "ampacity_from_table",
                f"ampacity from {rules.table or 'the ampacity table'} for {len(tabled)} line(s)"
                f"{f' of {codes} line code(s)' if codes else ''}"
                f"{f' ({overridden} replacing the file normamps)' if overridden else ''}",
                data={"lines": len(tabled), "linecodes": codes, "over_file": overridden, "table": rules.table},
            )
        )
    if defaulted:
        codes = Counter(x.linecode or "" for x in defaulted)
        notices.append(
            Notice(
                "ampacity_defaulted",
                f"--default-ampacity {rules.default_a:g} A given to {len(defaulted)} line(s) without normamps "
                f"({_codes(codes)})",
                level="warning",
                data={"lines": len(defaulted), "ampacity_a": rules.default_a, "linecodes": dict(sorted(codes.items()))},
            )
        )
    return amps, tuple(notices)


def _codes(counts: Counter) -> str:
    """'lc1: 300 lines, lc2: 12 lines, 3 lines without a line code', longest first, cut at 6."""
    named = sorted(((c, n) for c, n in counts.items() if c), key=lambda cn: (-cn[1], cn[0]))
    parts = [f"{c}: {n} line{'s' if n > 1 else ''}" for c, n in named[:6]]
    if len(named) > 6:
        parts.append(f"{len(named) - 6} more code(s): {sum(n for _, n in named[6:])} lines")
    if counts.get(""):
        parts.append(f"{counts['']} line{'s' if counts[''] > 1 else ''} without a line code")
    return ", ".join(parts)


def _missing_message(missing: list[LineRating], rated: int) -> str:
    fix = "--ampacity CSV (linecode,amps or line,amps) or --default-ampacity AMPS"
    dss = f"OpenDSS would assume {OPENDSS_DEFAULT_AMPS:g} A"
    if len(missing) == 1:
        x = missing[0]
        where = f"the line or its line code {x.linecode}" if x.linecode else "the line"
        return f"Line.{x.name}: no ampacity: set normamps on {where}, or give {fix} ({dss})"
    counts = Counter(x.linecode or "" for x in missing)
    n_codes = len([c for c in counts if c])
    return (
        f"no ampacity (normamps) for {len(missing)} of {rated} lines"
        f"{f', of {n_codes} line code(s)' if n_codes else ''} ({_codes(counts)}): give {fix} ({dss})"
    )


def read_ampacity_table(path: Path | str, default_a: float | None = None) -> AmpacityRules:
    """Rules from a CSV with columns `amps` and `linecode` or `line` (each row names one of them).

    Line codes the feeder does not use are ignored (the table can be a cable catalogue); a line
    the feeder does not have is an error when the feeder is read.
    """
    import pandas as pd  # here: the engine seam imports this module, and pandas is slow to load

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:
        raise InputError(f"{path}: cannot read CSV ({' '.join(str(exc).split())})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    keys = [c for c in ("linecode", "line") if c in df.columns]
    if "amps" not in df.columns or not keys:
        raise InputError(f"{path}: needs columns linecode,amps or line,amps, got {','.join(df.columns)}")
    tables: dict[str, dict[str, float]] = {"linecode": {}, "line": {}}
    for row, rec in enumerate(df.to_dict("records"), start=2):
        named = [(k, rec[k].strip().lower()) for k in keys if rec[k].strip()]
        if len(named) != 1:
            raise InputError(
                f"{path} line {row}: give either a linecode or a line, got "
                f"{' and '.join(k for k, _ in named) or 'neither'}"
            )
        kind, name = named[0]
        raw = rec["amps"].strip()
        try:
            amps = float(raw)
        except ValueError:
            amps = math.nan
        if not (math.isfinite(amps) and amps > 0):
            raise InputError(f"{path} line {row}: amps of {kind} {name} must be a positive number, got '{raw}'")
        if name in tables[kind] and tables[kind][name] != amps:
            raise InputError(
                f"{path} line {row}: {kind} {name} is given two ampacities, {tables[kind][name]:g} and {amps:g} A"
            )
        tables[kind][name] = amps
    return AmpacityRules(by_line=tables["line"], by_linecode=tables["linecode"], default_a=default_a, table=str(path))
