"""Figures a planner puts in a report (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nfca.outputs import atomic_path  # noqa: E402

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
