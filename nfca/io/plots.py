"""Figures a planner puts in a report (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nfca.io.outputs import atomic_path  # noqa: E402

METHOD_COLOURS = {"optimal": "#8fd18f", "fair": "#1f7a3a", "proportional": "#5aa9e6",
                  "propfair": "#f2a541", "maxmin": "#9b5de5"}


def _save(fig, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(target)


def envelope_bars(df: pd.DataFrame, target: Path, direction: str) -> Path:
    """Per end-user guaranteed power against capacity, ordered by distance (seed Fig 5-2)."""
    users = df.drop_duplicates("end_user").sort_values(["distance_m", "end_user"])
    order = users["end_user"].tolist()
    methods = list(dict.fromkeys(df["method"]))
    x = np.arange(len(order))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(8, 0.22 * len(order) + 2), 4.5), layout="constrained")
    ax.bar(x, users["capacity_kva"], width=0.9, color="#fff3b0", edgecolor="#e0c060", label="connection capacity")
    for k, m in enumerate(methods):
        g = df[df["method"] == m].set_index("end_user").loc[order, "guaranteed_kw"]
        ax.bar(x - 0.4 + width * (k + 0.5), g, width=width, color=METHOD_COLOURS.get(m, None), label=m)
    ax.set_xticks(x, order, rotation=90, fontsize=6)
    ax.set_ylabel(f"guaranteed {direction} (kW)")
    ax.set_xlabel("end-users, nearest to the transformer first")
    ax.set_title(f"Guaranteed {direction} power per end-user")
    ax.legend(fontsize=8, ncol=len(methods) + 1, loc="lower left")
    return _save(fig, target)


def fair_vs_optimal(df: pd.DataFrame, target: Path) -> Path:
    """Box plots of optimal and fair envelopes per direction, with totals (seed Fig 5-3)."""
    part = df[df["participant"] & df["method"].isin(["optimal", "fair"])]
    directions = [d for d in ("import", "export") if d in set(part["direction"])]
    fig, axes = plt.subplots(1, len(directions), figsize=(4.5 * len(directions), 4.2), squeeze=False,
                             layout="constrained")
    for ax, d in zip(axes[0], directions):
        data = [part[(part["direction"] == d) & (part["method"] == m)]["guaranteed_kw"] for m in ("optimal", "fair")]
        ax.boxplot(data, tick_labels=["optimal", "fair"])
        totals = [s.sum() for s in data]
        gap = 100 * (totals[0] - totals[1]) / totals[0] if totals[0] > 0 else 0.0
        ax.set_title(f"{d}: totals {totals[0]:.1f} / {totals[1]:.1f} kW (fair {gap:.1f} % lower)", fontsize=9)
        ax.set_ylabel("guaranteed power per end-user (kW)")
    return _save(fig, target)


def participation_sweep(df: pd.DataFrame, target: Path) -> Path:
    """Guaranteed power per participant against the number of NFCA end-users (seed Fig 5-4)."""
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for (d, m), g in df.groupby(["direction", "method"]):
        g = g.sort_values("participants")
        ax.plot(g["participants"], g["mean_kw"], marker="o", label=f"{m} {d}",
                color=METHOD_COLOURS.get(m), linestyle="-" if d == "import" else "--")
    ax.set_xlabel("number of end-users with an NFCA")
    ax.set_ylabel("mean guaranteed power per participant (kW)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, target)


def feeder_bars(types: pd.DataFrame, target: Path, direction: str = "import") -> Path:
    """Aggregated capacity, optimal and fair guaranteed power per feeder (seed Fig 5-6)."""
    df = types.sort_values(["type", "feeder"])
    x = np.arange(len(df))
    fig, ax = plt.subplots(figsize=(max(8, 0.25 * len(df) + 2), 4.5), layout="constrained")
    ax.bar(x, df["capacity_kw"], color="#fdd9a0", label="connection capacity")
    ax.bar(x, df[f"optimal_{direction}_kw"], color=METHOD_COLOURS["optimal"], label="optimal")
    ax.bar(x, df[f"fair_{direction}_kw"], color=METHOD_COLOURS["fair"], label="fair")
    ax.set_xticks(x, [f"{f} (T{t})" for f, t in zip(df["feeder"], df["type"])], rotation=90, fontsize=6)
    ax.set_ylabel(f"aggregated {direction} (kW)")
    ax.set_title(f"Guaranteed {direction} per feeder: fair <= optimal <= capacity")
    ax.legend(fontsize=8)
    return _save(fig, target)


def grid_map(results: Path, types: pd.DataFrame, target: Path, column: str = "import_fair_kw") -> Path:
    """Every feeder's lines and end-users, coloured by the share of capacity guaranteed."""
    import geopandas as gpd

    fig, ax = plt.subplots(figsize=(9, 9), layout="constrained")
    points = []
    for name in types["feeder"]:
        gpkg = Path(results) / "feeders" / name / "envelopes.gpkg"
        if not gpkg.exists():
            continue
        gpd.read_file(gpkg, layer="lines").plot(ax=ax, color="#999999", linewidth=0.6)
        points.append(gpd.read_file(gpkg, layer="end_users"))
    label = f"{column.removesuffix('_kw').replace('_', ' ')} / connection capacity"
    if points:
        pts = pd.concat(points)
        pts["share"] = (pts[column] / pts["capacity_kva"]).clip(0, 1)
        pts.plot(ax=ax, column="share", cmap="RdYlGn", vmin=0, vmax=1, markersize=10, legend=True,
                 legend_kwds={"label": label, "shrink": 0.6})
    ax.set_axis_off()
    ax.set_title("Guaranteed power per end-user")
    return _save(fig, target)


def envelope_timeseries(df: pd.DataFrame, target: Path, direction: str, max_users: int = 60) -> Path:
    """Static against dynamic limits per participant over the horizon (seed Fig 3-11).

    One panel per participant (nearest the transformer first): its connection capacity, the
    dynamic envelope per method (steps), the static envelope per method (dashed) and, shaded,
    its own forecast in this direction (consumption for import, generation for export).
    """
    part = df[df["participant"]]
    dyn = part[part["timestamp"] != "static"].copy()
    stamps = pd.to_datetime(dyn["timestamp"])
    t0 = stamps.min()
    dyn["hour"] = (stamps - t0) / pd.Timedelta(hours=1)
    static = part[part["timestamp"] == "static"]
    users = part.drop_duplicates("end_user").sort_values(["distance_m", "end_user"])["end_user"].tolist()[:max_users]
    methods = list(dict.fromkeys(part["method"]))
    ncols = min(6, max(1, len(users)))
    nrows = max(1, -(-len(users) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.0 * nrows + 1.0), sharex=True, sharey=True,
                             squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.6 / (2.0 * nrows + 1.0) + 0.02,
                        top=1 - 0.75 / (2.0 * nrows + 1.0), wspace=0.08, hspace=0.35)
    sign = 1.0 if direction == "import" else -1.0
    hours = np.unique(dyn["hour"].to_numpy())
    span = float(hours[-1] + (hours[1] - hours[0] if len(hours) > 1 else 1.0)) if len(hours) else 1.0
    tick = next((x for x in (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48, 168) if span / x <= 8), 720)
    ticks = np.arange(0, span + 1e-9, tick)
    for ax, user in zip(axes.flat, users):
        d = dyn[dyn["end_user"] == user]
        first = d[d["method"] == methods[0]].sort_values("hour")
        h = first["hour"].to_numpy()
        own = np.clip(sign * first["forecast_kw"].to_numpy(), 0, None)
        ax.fill_between(h, own, step="post", color="#d0d0d0", lw=0, label=f"own forecast {direction}")
        ax.axhline(float(first["capacity_kva"].iloc[0]), color="#e0c060", lw=1, label="connection capacity")
        for m in methods:
            dm = d[d["method"] == m].sort_values("hour")
            colour = METHOD_COLOURS.get(m)
            ax.step(dm["hour"], dm["guaranteed_kw"], where="post", color=colour, lw=1.2, label=f"dynamic {m}")
            s = static[(static["end_user"] == user) & (static["method"] == m)]["guaranteed_kw"]
            if len(s):
                ax.axhline(float(s.iloc[0]), color=colour, lw=1.2, ls="--", label=f"static {m}")
        ax.set_title(user, fontsize=8, pad=2)
        ax.set_xticks(ticks)
        ax.set_xlim(0, span)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(users):]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    fig.supylabel(f"guaranteed {direction} (kW)", fontsize=9)
    fig.supxlabel(f"hours from {t0}", fontsize=9)
    return _save(fig, target)


def activations(intervals: pd.DataFrame, events: pd.DataFrame, summary: dict, target: Path,
                vmin: float = 0.90, vmax: float = 1.10) -> Path:
    """NFCA activations over the horizon: demand and generation, the firm operation's voltage
    extremes and loading against the limits, and the power curtailed under static and dynamic
    limits; activations shaded."""
    import matplotlib.dates as mdates

    t = pd.to_datetime(intervals["timestamp"])
    step = (t.iloc[1] - t.iloc[0]) if len(t) > 1 else pd.Timedelta(hours=1)
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True, layout="constrained")
    for ax in axes:
        for start, end in zip(pd.to_datetime(events["start"]), pd.to_datetime(events["end"])):
            ax.axvspan(start, end, color="#f4a6a6", alpha=0.35, lw=0)
    a = axes[0]
    a.step(t, intervals["consumption_kw"], where="post", color="#c0392b", label="consumption")
    a.step(t, -intervals["generation_kw"], where="post", color="#e0a000", label="generation (negative)")
    a.axhline(0, color="#999999", lw=0.6)
    a.set_ylabel("end-users' total (kW)")
    a.legend(fontsize=8, loc="upper left")
    b = axes[1]
    b.step(t, intervals["firm_v_max_pu"], where="post", color="#7b3294", label="highest voltage (firm)")
    b.step(t, intervals["firm_v_min_pu"], where="post", color="#008837", label="lowest voltage (firm)")
    for lim in (vmin, vmax):
        b.axhline(lim, color="#555555", ls=":", lw=1)
    b.set_ylabel("end-user voltage (pu)")
    b2 = b.twinx()
    b2.step(t, intervals["firm_max_loading_pct"], where="post", color="#2c7fb8", lw=0.8, label="max loading (firm)")
    b2.set_ylabel("max line/transformer loading (%)", color="#2c7fb8", fontsize=8)
    b.legend(fontsize=8, loc="upper left")
    c = axes[2]
    styles = {"static": "--", "dynamic": "-"}
    for col in [x for x in intervals.columns if x.startswith("curtailed_")]:
        _, lim, method, _ = col.split("_")
        c.step(t, intervals[col], where="post", ls=styles[lim], color=METHOD_COLOURS.get(method),
               label=f"{lim} {method}: {summary['curtailed_kwh'][method][lim]:.1f} kWh")
    c.set_ylabel("curtailed power (kW)")
    c.legend(fontsize=8, loc="upper left")
    c.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    c.set_xlim(t.iloc[0], t.iloc[-1] + step)
    pol = summary["policy"]
    cap = f"cap {pol['max_count']} x {pol['max_duration_min']:g} min" if pol["max_count"] is not None and \
        pol["max_duration_min"] is not None else "no cap"
    fig.suptitle(f"{summary['feeder']}: {pol['activations']} activation(s), longest {pol['longest_min']:g} min "
                 f"({cap}: {'satisfied' if pol['satisfied'] else 'NOT satisfied'})", fontsize=10)
    return _save(fig, target)
