"""The charts of report.html as data: what to draw, decided here, drawn in the browser as inline
SVG by `nfca/io/js/charts.js` (no library, no network). A report costs its data, not a rendering:
nothing here imports matplotlib (PNG figures are `nfca.io.plots`, written only when asked,
`--format png`).

The conventions are the PNG figures': end-users nearest the transformer first, guaranteed power
in kW on the left axis and connection capacity in kVA on the right (they differ by the power
factor), non-participants hatched at their firm value, and beyond `PAGE` bars a chart is split
into panels one under the other so that it stays readable.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

METHOD_COLOURS = {
    "optimal": "#8fd18f",
    "fair": "#1f7a3a",
    "proportional": "#5aa9e6",
    "propfair": "#f2a541",
    "maxmin": "#9b5de5",
}
CAPACITY_COLOUR, CAPACITY_FILL, FIRM_COLOUR = "#e0c060", "#fff3b0", "#b0b0b0"
FORECAST_FILL = "#d0d0d0"
PAGE = 60  # bars per panel
MAX_STEPS = 960  # a time chart's steps per series (longer horizons: intervals grouped)


def _values(x) -> list[float | None]:
    """Numbers for JSON: rounded to the watt's tenth, missing as None."""
    return [None if v is None or not math.isfinite(float(v)) else round(float(v), 4) for v in x]


def _hours(timestamps) -> tuple[pd.Timestamp, np.ndarray, float]:
    """The first timestamp, every timestamp in hours from it, and the interval (h)."""
    stamps = pd.to_datetime(pd.Series(timestamps))
    t0 = stamps.min()
    hours = ((stamps - t0) / pd.Timedelta(hours=1)).to_numpy()
    return t0, hours, float(hours[1] - hours[0]) if len(hours) > 1 else 1.0


def _grouped(values: np.ndarray, group: int, how) -> list:
    """`values` in groups of `group` consecutive intervals, each reduced by `how` (np.nanmin...)."""
    pad = (-len(values)) % group
    with warnings.catch_warnings():  # a group with no value at all stays a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        return _values(
            how(np.concatenate([np.asarray(values, float), np.full(pad, np.nan)]).reshape(-1, group), axis=1)
        )


def page_size(methods: int) -> int:
    """Bars per panel: about `PAGE` end-users, fewer when many methods share a slot."""
    return PAGE if methods <= 2 else max(12, 2 * PAGE // methods)


def envelope_bars(rows: pd.DataFrame, direction: str, power_factor: float = 1.0, caption: str = "") -> dict:
    """Per end-user guaranteed power of every method against its capacity (seed Fig 5-2)."""
    df = rows[rows["status"] != "infeasible"]
    users = df.drop_duplicates("end_user").sort_values(["distance_m", "end_user"])
    methods = list(dict.fromkeys(df["method"]))
    part = users["participant"].astype(bool).to_numpy()
    series = []
    for m in methods:
        per = df[df["method"] == m].set_index("end_user").loc[users["end_user"]]
        series.append(
            {
                "label": f"{m} (kW)",
                "colour": METHOD_COLOURS.get(m, "#777777"),
                "values": _values(np.where(part, per["guaranteed_kw"], np.nan)),
                "notes": [b if p else "" for b, p in zip(per["binding"].fillna(""), part)],
            }
        )
    return {
        "kind": "bars",
        "id": f"bars-{direction}",
        "title": f"Guaranteed {direction} per end-user ({', '.join(methods)})",
        "caption": caption,
        "categories": users["end_user"].tolist(),
        "muted": (~part).tolist(),
        "page": page_size(len(methods)),
        "ylabel": f"guaranteed {direction} (kW)",
        "right": {"label": "connection capacity (kVA)", "factor": power_factor},
        "back": {
            "label": "connection capacity (kVA, right axis)",
            "colour": CAPACITY_FILL,
            "edge": CAPACITY_COLOUR,
            "values": _values(users["capacity_kva"] * power_factor),
        },
        "series": series,
        "hatched": {
            "label": "non-participant: firm value (kW)",
            "values": _values(np.where(part, np.nan, users["firm_kw"])),
        },
    }


def methods_compared(table: pd.DataFrame, caption: str = "") -> dict:
    """Each method's participant envelopes per direction as box plots (min, quartiles, max), the
    totals under the names (seed Fig 5-3)."""
    ok = table[table["participant"].astype(bool) & (table["status"] != "infeasible")]
    methods = list(dict.fromkeys(table["method"]))
    groups = []
    for d in [d for d in ("import", "export") if d in set(table["direction"])]:
        boxes = []
        for m in methods:
            g = ok[(ok["direction"] == d) & (ok["method"] == m)]["guaranteed_kw"].to_numpy()
            boxes.append(
                {
                    "label": m,
                    "colour": METHOD_COLOURS.get(m, "#cccccc"),
                    "sub": f"{g.sum():.1f} kW" if len(g) else "no envelope",
                    "stats": _values(np.percentile(g, [0, 25, 50, 75, 100])) if len(g) else None,
                }
            )
        groups.append({"title": f"{d} per participant", "boxes": boxes})
    return {
        "kind": "boxes",
        "id": "methods",
        "title": "Allocation methods compared",
        "caption": caption,
        "ylabel": "guaranteed power per participant (kW)",
        "groups": groups,
    }


def study_charts(table: pd.DataFrame, power_factor: float, caption: str = "") -> list[dict]:
    """Every chart of an envelope study's report: bars per direction, and the methods compared
    when there are two or more."""
    charts = []
    for d in [d for d in ("import", "export") if d in set(table["direction"])]:
        rows = table[table["direction"] == d]
        if (rows["status"] == "ok").any():
            charts.append(envelope_bars(rows, d, power_factor, caption))
    if table[table["status"] == "ok"]["method"].nunique() >= 2:
        charts.append(methods_compared(table, caption))
    return charts


def feeder_bars(types: pd.DataFrame, direction: str) -> dict:
    """Aggregated capacity, optimal and fair guaranteed power per feeder (seed Fig 5-6)."""
    df = types.sort_values(["type", "feeder"])
    return {
        "kind": "bars",
        "id": f"feeders-{direction}",
        "stacked": True,
        "page": PAGE,
        "title": f"Guaranteed {direction} per feeder ({len(df)} feeders, type T1-T3): fair <= optimal <= capacity",
        "caption": "feeders sorted by type",
        "ylabel": f"aggregated {direction} (kW)",
        "categories": [f"{f} (T{t})" for f, t in zip(df["feeder"], df["type"])],
        "back": {
            "label": "aggregated connection capacity (kW)",
            "colour": "#fdd9a0",
            "edge": "#fdd9a0",
            "values": _values(df["capacity_kw"]),
        },
        "series": [
            {"label": m, "colour": METHOD_COLOURS[m], "values": _values(df[f"{m}_{direction}_kw"])}
            for m in ("optimal", "fair")
        ],
    }


def envelope_timeseries(table: pd.DataFrame, direction: str, caption: str = "", max_users: int = 60) -> dict:
    """Static against dynamic limits per participant over the horizon (seed Fig 3-11): one small
    panel per participant (nearest the transformer first, at most `max_users`) with its own
    forecast in this direction shaded, its capacity, the dynamic envelope of each method (steps)
    and the static one (dashed). Beyond `MAX_STEPS` intervals, each step groups several: the
    lowest guarantee and the highest forecast among them."""
    part = table[table["participant"].astype(bool) & (table["direction"] == direction)]
    dyn = part[part["timestamp"] != "static"]
    static = part[part["timestamp"] == "static"]
    t0, hours, step = _hours(dyn["timestamp"].unique())
    group = max(1, math.ceil(len(hours) / MAX_STEPS))
    users = part.drop_duplicates("end_user").sort_values(["distance_m", "end_user"])["end_user"].tolist()
    shown = users[:max_users]
    methods = list(dict.fromkeys(part["method"]))
    sign = 1.0 if direction == "import" else -1.0

    ordered = dyn.sort_values("timestamp", kind="stable")
    kw = {key: g["guaranteed_kw"].to_numpy(float) for key, g in ordered.groupby(["end_user", "method"], sort=False)}
    first = ordered[ordered["method"] == methods[0]]
    forecast = {u: g["forecast_kw"].to_numpy(float) for u, g in first.groupby("end_user", sort=False)}
    capacity = dict(zip(part["end_user"], part["capacity_kva"]))
    static_kw = dict(zip(zip(static["end_user"], static["method"]), static["guaranteed_kw"]))
    panels = []
    for user in shown:
        lines = [
            {
                "label": f"dynamic {m} (kW)",
                "colour": METHOD_COLOURS.get(m, "#777777"),
                "values": _grouped(kw[(user, m)], group, np.nanmin),
            }
            for m in methods
        ]
        hlines = [{"label": "connection capacity (kVA)", "colour": CAPACITY_COLOUR, "value": float(capacity[user])}]
        hlines += [
            {
                "label": f"static {m} (kW)",
                "colour": METHOD_COLOURS.get(m, "#777777"),
                "dash": True,
                "value": round(float(static_kw[(user, m)]), 4),
            }
            for m in methods
            if (user, m) in static_kw
        ]
        panels.append(
            {
                "title": user,
                "lines": lines,
                "hlines": hlines,
                "area": _grouped(np.clip(sign * forecast[user], 0, None), group, np.nanmax),
            }
        )
    legend = [
        {"label": f"own forecast {direction} (kW)", "colour": FORECAST_FILL},
        {"label": "connection capacity (kVA)", "colour": CAPACITY_COLOUR, "line": True},
    ]
    legend += [
        {"label": f"dynamic {m} (kW)", "colour": METHOD_COLOURS.get(m, "#777777"), "line": True} for m in methods
    ]
    legend += [
        {"label": f"static {m} (kW)", "colour": METHOD_COLOURS.get(m, "#777777"), "line": True, "dash": True}
        for m in methods
        if m in set(static["method"])
    ]
    more = f"; first {len(shown)} of {len(users)} participants" if len(users) > len(shown) else ""
    grouping = f"; each step the lowest guarantee and highest forecast of {group} intervals" if group > 1 else ""
    return {
        "kind": "steps",
        "id": f"time-{direction}",
        "title": f"Dynamic and static {direction} limits per participant",
        "caption": f"x: hours from {t0:%Y-%m-%d %H:%M}{more}{grouping}. {caption}".strip(),
        "ylabel": f"guaranteed {direction} (kW)",
        "x": _values(hours[::group]),
        "end": round(float(hours[-1] + step), 4) if len(hours) else 1.0,
        "area_colour": FORECAST_FILL,
        "panels": panels,
        "legend": legend,
    }


def participation_bars(points: pd.DataFrame, direction: str, caption: str = "") -> dict:
    """Mean guaranteed power per participant against the number of participants, a bar per
    method (seed Fig 5-4, `sweep_participation`'s points). A point where no envelope exists is a
    gap marked x (its reason on hover), never a zero."""
    df = points[points["direction"] == direction]
    counts = sorted(set(df["participants"]))
    methods = list(dict.fromkeys(df["method"]))
    series = []
    for m in methods:
        per = df[df["method"] == m].set_index("participants").reindex(counts)
        bad = (per["status"] == "infeasible").to_numpy()
        series.append(
            {
                "label": f"{m} (kW per participant)",
                "colour": METHOD_COLOURS.get(m, "#777777"),
                "values": _values(np.where(bad, np.nan, per["mean_kw"])),
                "notes": [
                    "" if b or pd.isna(t) else f"total {t:.1f} kW, lowest {lo:.2f} kW" + ("" if v else ", NOT verified")
                    for b, t, lo, v in zip(bad, per["total_kw"], per["min_kw"], per["verified"].fillna(False))
                ],
                "gaps": [f"no envelope: {r}" if b else "" for b, r in zip(bad, per["reason"].fillna(""))],
            }
        )
    return {
        "kind": "bars",
        "id": f"participation-{direction}",
        "title": f"Guaranteed {direction} against participation ({', '.join(methods)})",
        "caption": caption,
        "categories": [str(k) for k in counts],
        "page": page_size(len(methods)),
        "ylabel": f"mean {direction} per participant (kW)",
        "xlabel": "number of end-users with an NFCA",
        "gap_label": "no envelope exists (hover for why)",
        "series": series,
    }


def participation_charts(points: pd.DataFrame, caption: str = "") -> list[dict]:
    """The sweep's charts: one per direction."""
    return [participation_bars(points, d, caption) for d in ("import", "export") if d in set(points["direction"])]


def _range(lo: float, hi: float) -> list[float]:
    """A panel's y range: [lo, hi] with a margin, never empty."""
    lo, hi = float(lo), float(hi)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return [round(lo - pad if lo else 0.0, 4), round(hi + pad, 4)]


def activation_timeline(
    intervals: pd.DataFrame, events: pd.DataFrame, summary: dict, vmin_pu: float, vmax_pu: float
) -> dict:
    """NFCA activations over the horizon (seed section 3.5.1), panels one under the other on one
    time axis: the end-users' total consumption and generation, the firm operation's voltage
    extremes and loading against the limits, and the power curtailed per method under static
    (dashed) and dynamic limits; the activations shaded in every panel. Beyond `MAX_STEPS`
    intervals each step is the extreme of several."""
    t0, hours, step = _hours(intervals["timestamp"])
    group = max(1, math.ceil(len(hours) / MAX_STEPS))

    def line(label: str, colour: str, values, how=np.nanmax, dash: bool = False) -> dict:
        out = {"label": label, "colour": colour, "values": _grouped(np.asarray(values, float), group, how)}
        return {**out, "dash": True} if dash else out

    def key(items: list[dict]) -> list[dict]:
        return [{"label": x["label"], "colour": x["colour"], "line": True, "dash": x.get("dash", False)} for x in items]

    cons = intervals["consumption_kw"].to_numpy(float)
    gen = -intervals["generation_kw"].to_numpy(float)
    v_hi, v_lo = intervals["firm_v_max_pu"].to_numpy(float), intervals["firm_v_min_pu"].to_numpy(float)
    loading = intervals["firm_max_loading_pct"].to_numpy(float)
    power = [line("consumption (kW)", "#c0392b", cons), line("generation (kW, negative)", "#e0a000", gen, np.nanmin)]
    volts = [
        line("highest end-user voltage (pu)", "#7b3294", v_hi),
        line("lowest end-user voltage (pu)", "#e66101", v_lo, np.nanmin),
    ]
    limit = {"colour": "#555555", "dash": True}
    curtailed, peak = [], 0.0
    for col in [c for c in intervals.columns if c.startswith("curtailed_")]:
        _, lim, method, _ = col.split("_")
        kwh = summary["curtailed_kwh"][method][lim]
        curtailed.append(
            line(
                f"{lim} {method} (kW): {kwh:.1f} kWh",
                METHOD_COLOURS.get(method, "#777777"),
                intervals[col],
                dash=lim == "static",
            )
        )
        peak = max(peak, float(intervals[col].max()))
    panels = [
        {
            "title": "End-users' total consumption and generation",
            "ylabel": "total (kW)",
            "range": _range(min(0.0, gen.min(initial=0.0)), max(0.0, cons.max(initial=0.0))),
            "lines": power,
            "hlines": [{"label": "0 kW", "colour": "#999999", "value": 0.0}],
            "legend": key(power),
        },
        {
            "title": "Voltage extremes of the firm operation (everyone at its profile)",
            "ylabel": "voltage (pu)",
            "range": _range(min(vmin_pu, v_lo.min(initial=vmin_pu)), max(vmax_pu, v_hi.max(initial=vmax_pu))),
            "lines": volts,
            "hlines": [
                {"label": f"lower limit {vmin_pu:.2f} pu", "value": round(vmin_pu, 4), **limit},
                {"label": f"upper limit {vmax_pu:.2f} pu", "value": round(vmax_pu, 4), **limit},
            ],
            "legend": [*key(volts), {"label": "voltage limits", "line": True, **limit}],
        },
        {
            "title": "Highest line or transformer loading of the firm operation",
            "ylabel": "loading (%)",
            "range": _range(0.0, max(100.0, loading.max(initial=0.0))),
            "lines": [line("max loading (%)", "#2c7fb8", loading)],
            "hlines": [{"label": "rating 100 %", "value": 100.0, **limit}],
            "legend": [
                *key([{"label": "max loading (%)", "colour": "#2c7fb8"}]),
                {"label": "rating", "line": True, **limit},
            ],
        },
        {
            "title": "Power curtailed when activated (static limits dashed; energy over the horizon)",
            "ylabel": "curtailed (kW)",
            "range": _range(0.0, peak),
            "lines": curtailed,
            "hlines": [],
            "legend": key(curtailed),
        },
    ]
    spans = [
        [round(float(a), 4), round(float(b), 4)]
        for a, b in zip(
            (pd.to_datetime(events["start"]) - t0) / pd.Timedelta(hours=1),
            (pd.to_datetime(events["end"]) - t0) / pd.Timedelta(hours=1),
        )
    ]
    pol = summary["policy"]
    cap = (
        f"{pol['max_count']} activation(s) of at most {pol['max_duration_min']:g} min"
        if pol["max_count"] is not None and pol["max_duration_min"] is not None
        else "no cap"
    )
    grouping = f"; each step the extreme of {group} intervals" if group > 1 else ""
    return {
        "kind": "steps",
        "id": "activations",
        "title": f"Activations over the horizon: {pol['activations']} activation(s), longest {pol['longest_min']:g} min",
        "caption": f"{summary['feeder']}: {summary['participants']} participants; policy {cap}: "
        f"{'met' if pol['satisfied'] else 'NOT met'}; limits {vmin_pu:.2f}-{vmax_pu:.2f} pu{grouping}.",
        "xlabel": f"hours from {t0:%Y-%m-%d %H:%M}",
        "columns": 1,
        "panel_height": 140,
        "x": _values(hours[::group]),
        "end": round(float(hours[-1] + step), 4) if len(hours) else 1.0,
        "spans": spans,
        "span_colour": "#f4a6a6",
        "panels": panels,
        "legend": [{"label": "activation: the firm operation breaks a limit", "colour": "#f4a6a6"}],
    }
