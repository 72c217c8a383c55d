"""Figures a planner puts in a report (PNG, written atomically; also embedded in report.html).

Conventions: the title names the feeder, the participation, the limits and the method(s);
legends sit outside the data; guaranteed power is in kW on the left axis and connection capacity
in kVA on the right axis (the two differ by the power factor); non-participants are hatched grey
at their firm value; beyond `PAGE` end-users (or feeders) a bar chart is split into stacked
panels so its width stays readable.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nfca.io.atomic import write_bytes  # noqa: E402

METHOD_COLOURS = {
    "optimal": "#8fd18f",
    "fair": "#1f7a3a",
    "proportional": "#5aa9e6",
    "propfair": "#f2a541",
    "maxmin": "#9b5de5",
}
CAPACITY_COLOUR, FIRM_COLOUR = "#e0c060", "#b0b0b0"
LOADING_CMAP = matplotlib.colors.LinearSegmentedColormap.from_list(
    "loading", ["#c8c8c8", "#6baed6", "#2171b5", "#fd8d3c", "#d7191c"]
)  # 0 -> 100 % (the report's too)
PAGE = 60  # bars per panel
WIDTH_IN = 14.0  # widest figure (inches)
DPI = 110
plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
        "axes.spines.top": False,
    }
)


@dataclass(frozen=True)
class Figure:
    """A rendered figure: its file name, a one-line title, the PNG bytes and where it was written."""

    name: str
    title: str
    png: bytes
    path: Path | None = None

    def _repr_png_(self) -> bytes:  # shown inline in a notebook
        return self.png


class Figures(list):
    """Figures shown one under the other in a notebook."""

    def _repr_html_(self) -> str:
        import base64

        return "".join(
            f"<figure><img src='data:image/png;base64,{base64.b64encode(f.png).decode()}'>"
            f"<figcaption>{f.title}</figcaption></figure>"
            for f in self
        )


def _render(fig, name: str, title: str, out: Path | None) -> Figure:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    plt.close(fig)
    data = buf.getvalue()
    return Figure(name, title, data, write_bytes(Path(out) / name, data) if out is not None else None)


def _save(fig, target: Path, title: str = "") -> Path:
    return _render(fig, Path(target).name, title, Path(target).parent).path


def context(summary: dict) -> str:
    """Feeder, participation and limits, for a figure title."""
    o = summary.get("options", {})
    limits = f"{o.get('vmin_pu', 0.9):.2f}-{o.get('vmax_pu', 1.1):.2f} pu"
    if o.get("source_pu") is not None:
        limits += f", source {o['source_pu']:.3g} pu"
    if o.get("power_factor", 1.0) != 1.0:
        limits += f", pf {o['power_factor']:g}"
    return (
        f"{summary['feeder']}: {summary['participants']} of {summary['end_users']} end-users with an NFCA, "
        f"limits {limits}"
    )


def _capacity_axis(ax, pf: float) -> None:
    sec = ax.secondary_yaxis("right", functions=(lambda kw: kw / pf, lambda kva: kva * pf))
    sec.set_ylabel("connection capacity (kVA)", color="#9a7d1a")


def _pages(n: int, page: int = PAGE) -> list[slice]:
    pages = max(1, math.ceil(n / page))
    size = math.ceil(n / pages)
    return [slice(k * size, min(n, (k + 1) * size)) for k in range(pages)]


def envelope_bars(
    df: pd.DataFrame, target: Path | None, direction: str, title: str = "", pf: float = 1.0, name: str | None = None
) -> Figure:
    """Per end-user guaranteed power against capacity, nearest the transformer first (seed Fig 5-2)."""
    df = df[df["status"] != "infeasible"] if "status" in df.columns else df
    users = df.drop_duplicates("end_user").sort_values(["distance_m", "end_user"]).reset_index(drop=True)
    methods = list(dict.fromkeys(df["method"]))
    pages = _pages(len(users), PAGE if len(methods) <= 2 else max(12, 2 * PAGE // len(methods)))  # ~120 bars a panel
    per_page = max(s.stop - s.start for s in pages)
    width = min(WIDTH_IN, max(7.0, 0.2 * per_page * max(1, len(methods)) ** 0.5 + 3))
    fig, axes = plt.subplots(
        len(pages), 1, figsize=(width, 1.2 + 3.0 * len(pages)), squeeze=False, layout="constrained"
    )
    bar_w = 0.8 / max(1, len(methods))
    part = users.get("participant", pd.Series(True, index=users.index)).astype(bool)
    firm = users["firm_kw"] if "firm_kw" in users.columns else users["capacity_kva"] * pf
    for ax, s in zip(axes[:, 0], pages):
        x = np.arange(s.stop - s.start)
        ax.bar(
            x,
            users["capacity_kva"][s] * pf,
            width=0.92,
            color="#fff3b0",
            edgecolor=CAPACITY_COLOUR,
            label="connection capacity (kVA, right axis)",
        )
        for k, m in enumerate(methods):
            g = df[df["method"] == m].set_index("end_user").loc[users["end_user"][s], "guaranteed_kw"].to_numpy()
            g = np.where(part[s], g, np.nan)
            ax.bar(x - 0.4 + bar_w * (k + 0.5), g, width=bar_w, color=METHOD_COLOURS.get(m), label=f"{m} (kW)")
        if not part[s].all():
            ax.bar(
                x,
                np.where(part[s], np.nan, firm[s]),
                width=0.8,
                color="none",
                edgecolor=FIRM_COLOUR,
                hatch="///",
                label="non-participant: firm value (kW)",
            )
        ax.set_xticks(x, users["end_user"][s], rotation=90, fontsize=7 if per_page > 40 else 8)
        for tick, p in zip(ax.get_xticklabels(), part[s]):
            if not p:
                tick.set_color("#888888")
        ax.set_xlim(-0.6, per_page - 0.4)
        ax.set_ylabel(f"guaranteed {direction} (kW)")
        _capacity_axis(ax, pf)
    axes[-1, 0].set_xlabel("end-users, nearest to the transformer first (non-participants in grey)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"Guaranteed {direction} per end-user ({', '.join(methods)})" + (f"\n{title}" if title else ""))
    name = name or (Path(target).name if target is not None else f"envelopes_{direction}.png")
    return _render(fig, name, f"Guaranteed {direction} per end-user", Path(target).parent if target else None)


def methods_compared(df: pd.DataFrame, out: Path | None, title: str = "") -> Figure:
    """Box plots of every method's participant envelopes per direction, with totals (seed Fig 5-3)."""
    ok = df[df["participant"].astype(bool)]
    ok = ok[ok["status"] != "infeasible"] if "status" in ok.columns else ok
    methods = list(dict.fromkeys(df["method"]))
    directions = [d for d in ("import", "export") if d in set(df["direction"])]
    fig, axes = plt.subplots(
        1,
        len(directions),
        figsize=(min(WIDTH_IN, 1.3 * len(methods) * len(directions) + 3), 4.4),
        squeeze=False,
        layout="constrained",
        sharey=True,
    )
    for ax, d in zip(axes[0], directions):
        data, labels, colours = [], [], []
        for m in methods:
            g = ok[(ok["direction"] == d) & (ok["method"] == m)]["guaranteed_kw"]
            data.append(g.to_numpy() if len(g) else np.array([np.nan]))
            labels.append(f"{m}\n{g.sum():.1f} kW" if len(g) else f"{m}\nno envelope")
            colours.append(METHOD_COLOURS.get(m, "#cccccc"))
        box = ax.boxplot(data, tick_labels=labels, patch_artist=True, widths=0.6)
        for patch, c in zip(box["boxes"], colours):
            patch.set_facecolor(c)
        for median in box["medians"]:
            median.set_color("black")
        ax.set_title(f"{d}: per participant, totals under the names")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("guaranteed power per participant (kW)")
    fig.suptitle("Allocation methods compared" + (f"\n{title}" if title else ""))
    return _render(fig, "methods_compared.png", "Allocation methods compared", out)


def scale_bar(ax) -> None:
    """A scale bar (data in metres): a round length near a fifth of the axis width, lower right,
    on a white box so it stays readable over the network."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    x0, x1 = ax.get_xlim()
    span = abs(x1 - x0)
    length = max((n * 10**e for e in range(0, 6) for n in (1, 2, 5) if n * 10**e <= span / 5), default=1)
    label = f"{length:g} m" if length < 1000 else f"{length / 1000:g} km"
    bar = AnchoredSizeBar(
        ax.transData,
        length,
        label,
        "lower right",
        pad=0.4,
        borderpad=0.6,
        sep=4,
        frameon=True,
        size_vertical=span / 250,
        fontproperties={"size": 8},
    )
    bar.patch.set_alpha(0.85)
    bar.patch.set_edgecolor("#cccccc")
    ax.add_artist(bar)


def feeder_map(study, table: pd.DataFrame, out: Path | None, title: str = "", metric: bool = True) -> Figure:
    """The feeder: lines coloured by their highest verified loading over the envelope sets,
    end-users by the share of their capacity guaranteed (one panel per direction), the
    transformer labelled with the feeder's name, and a scale bar."""
    from matplotlib.collections import LineCollection

    from nfca.io.geo import end_user_xy

    feeder = study.feeder
    xy = end_user_xy(feeder)
    method = "fair" if "fair" in set(table["method"]) else table["method"].iloc[0]
    directions = [d for d in ("import", "export") if d in set(table["direction"])]
    segs, load = [], []
    worst = {}
    for v in study.verifications:
        for k, x in v.line_loading_pct.items():
            worst[k] = max(worst.get(k, 0.0), x)
    for line in feeder.lines:
        a, b = feeder.buses[line.bus_from], feeder.buses[line.bus_to]
        if a.x is not None and b.x is not None:
            segs.append([(a.x, a.y), (b.x, b.y)])
            load.append(worst.get(line.name, 0.0))
    fig, axes = plt.subplots(
        1, len(directions), figsize=(6.2 * len(directions) + 1, 6.2), squeeze=False, layout="constrained"
    )
    for ax, d in zip(axes[0], directions):
        lc = LineCollection(segs, array=np.array(load), cmap=LOADING_CMAP, norm=plt.Normalize(0, 100), linewidths=1.4)
        ax.add_collection(lc)
        rows = table[(table["direction"] == d) & (table["method"] == method)].set_index("end_user")
        names = [u.name for u in feeder.end_users]
        part = rows.loc[names, "participant"].astype(bool).to_numpy()
        share = (rows.loc[names, "guaranteed_kw"] / rows.loc[names, "capacity_kva"]).clip(0, 1).to_numpy()
        pts = np.array([xy[n] for n in names])
        ax.scatter(
            pts[~part, 0],
            pts[~part, 1],
            s=18,
            marker="s",
            color=FIRM_COLOUR,
            edgecolor="#555555",
            linewidth=0.4,
            label="non-participant (firm)",
            zorder=3,
        )
        sc = ax.scatter(
            pts[part, 0],
            pts[part, 1],
            s=26,
            c=share[part],
            cmap="RdYlGn",
            vmin=0,
            vmax=1,
            edgecolor="#333333",
            linewidth=0.4,
            zorder=4,
        )
        src = feeder.buses.get(feeder.source.bus)
        tr = (
            next(
                (
                    feeder.buses[b]
                    for el in feeder.elements
                    if el.kind == "transformer"
                    for b, _ in el.terminals[-1:]
                    if feeder.buses[b].x is not None
                ),
                None,
            )
            or src
        )
        if tr is not None and tr.x is not None:
            ax.plot(tr.x, tr.y, marker="^", color="black", markersize=10, zorder=5)
            ax.annotate(
                feeder.name,
                (tr.x, tr.y),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize=9,
                weight="bold",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8, "lw": 0},
            )
        ax.set_aspect("equal")
        ax.margins(0.06)
        ax.autoscale_view()
        ax.set_xticks([])
        ax.set_yticks([])
        if metric:
            scale_bar(ax)
        ax.set_title(f"{method} {d}: share of capacity guaranteed")
        fig.colorbar(sc, ax=ax, shrink=0.6, label=f"guaranteed {d} / connection capacity")
    fig.colorbar(
        plt.cm.ScalarMappable(plt.Normalize(0, 100), LOADING_CMAP),
        ax=axes[0, -1],
        shrink=0.6,
        label="line loading, highest over the sets (%)",
    )
    if (~part).any():
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower left", frameon=False)
    fig.suptitle("Feeder map" + (f"\n{title}" if title else ""))
    return _render(fig, "map.png", "Feeder map", out)


def study_figures(study, table: pd.DataFrame, out: Path | None, crs: str | None = None) -> list[Figure]:
    """Every figure of an envelope study; written to `out` when given."""
    from nfca.io.geo import has_coordinates, is_metric

    summary = {
        "feeder": study.feeder.name,
        "end_users": len(study.feeder.end_users),
        "participants": len(study.participant_names),
        "options": {
            "vmin_pu": study.options.limits.vmin_pu,
            "vmax_pu": study.options.limits.vmax_pu,
            "source_pu": study.options.source_pu if study.options.source_pu is not None else study.feeder.source.pu,
            "power_factor": study.options.power_factor,
        },
    }
    title = context(summary)
    figs = []
    for d in [d for d in ("import", "export") if d in set(table["direction"])]:
        rows = table[table["direction"] == d]
        if (rows["status"] == "ok").any():
            figs.append(
                envelope_bars(
                    rows,
                    None if out is None else Path(out) / f"envelopes_{d}.png",
                    d,
                    title,
                    study.options.power_factor,
                )
            )
    if table[table["status"] == "ok"]["method"].nunique() >= 2:
        figs.append(methods_compared(table, out, title))
    if has_coordinates(study.feeder) and study.envelopes:
        figs.append(feeder_map(study, table[table["status"] == "ok"], out, title, crs is None or is_metric(crs)))
    return figs


def participation_sweep(df: pd.DataFrame, target: Path, title: str = "") -> Path:
    """Guaranteed power per participant against the number of NFCA end-users (seed Fig 5-4).
    Points where no envelope exists are gaps (and marked x on the axis), not zeros."""
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    for (d, m), g in df.groupby(["direction", "method"]):
        g = g.sort_values("participants")
        y = g["mean_kw"].where(g["status"] != "infeasible")
        colour = METHOD_COLOURS.get(m)
        ax.plot(
            g["participants"], y, marker="o", label=f"{m} {d}", color=colour, linestyle="-" if d == "import" else "--"
        )
        bad = g[g["status"] == "infeasible"]
        if len(bad):
            ax.plot(
                bad["participants"],
                np.zeros(len(bad)),
                marker="x",
                linestyle="none",
                color=colour,
                clip_on=False,
                markersize=7,
            )
    if (df["status"] == "infeasible").any():
        ax.plot([], [], marker="x", linestyle="none", color="#555555", label="no envelope exists")
    ax.set_xlabel("number of end-users with an NFCA")
    ax.set_ylabel("mean guaranteed power per participant (kW)")
    ax.set_ylim(bottom=0)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=5, frameon=False)
    ax.grid(alpha=0.3)
    fig.suptitle("Guaranteed power against participation" + (f"\n{title}" if title else ""))
    return _save(fig, target, "Guaranteed power against participation")


def feeder_bars(types: pd.DataFrame, target: Path, direction: str = "import") -> Path:
    """Aggregated capacity, optimal and fair guaranteed power per feeder (seed Fig 5-6)."""
    df = types.sort_values(["type", "feeder"]).reset_index(drop=True)
    pages = _pages(len(df))
    per_page = max(s.stop - s.start for s in pages)
    fig, axes = plt.subplots(
        len(pages),
        1,
        figsize=(min(WIDTH_IN, max(7.0, 0.2 * per_page + 3)), 1.4 + 3.2 * len(pages)),
        squeeze=False,
        layout="constrained",
    )
    for ax, s in zip(axes[:, 0], pages):
        x = np.arange(s.stop - s.start)
        ax.bar(x, df["capacity_kw"][s], color="#fdd9a0", label="aggregated connection capacity")
        ax.bar(x, df[f"optimal_{direction}_kw"][s], color=METHOD_COLOURS["optimal"], label="optimal")
        ax.bar(x, df[f"fair_{direction}_kw"][s], color=METHOD_COLOURS["fair"], label="fair")
        ax.set_xticks(x, [f"{f} (T{t})" for f, t in zip(df["feeder"][s], df["type"][s])], rotation=90, fontsize=7)
        ax.set_xlim(-0.6, per_page - 0.4)
        ax.set_ylabel(f"aggregated {direction} (kW)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(f"Guaranteed {direction} per feeder ({len(df)} feeders, type T1-T3): fair <= optimal <= capacity")
    return _save(fig, target, f"Guaranteed {direction} per feeder")


def grid_map(results: Path, types: pd.DataFrame, target: Path, column: str = "import_fair_kw") -> Path:
    """Every feeder's lines and end-users, coloured by the share of capacity guaranteed, each
    feeder labelled at its transformer, with a scale bar."""
    import geopandas as gpd
    import pyogrio

    fig, ax = plt.subplots(figsize=(10, 9), layout="constrained")
    points, metric, labels = [], True, {}
    for name in types["feeder"]:
        gpkg = Path(results) / "feeders" / name / "envelopes.gpkg"
        if not gpkg.exists():
            continue
        lines = gpd.read_file(gpkg, layer="lines")
        metric = metric and (lines.crs is None or lines.crs.axis_info[0].unit_name in ("metre", "meter"))
        lines.plot(ax=ax, color="#999999", linewidth=0.6)
        points.append(gpd.read_file(gpkg, layer="end_users"))
        if "transformers" in pyogrio.list_layers(gpkg)[:, 0]:
            tr = gpd.read_file(gpkg, layer="transformers")
            if len(tr):
                p = tr.geometry.iloc[0]
                labels.setdefault((round(p.x, 1), round(p.y, 1)), []).append(name)
    for (x, y), names in labels.items():  # feeders of one substation share its transformer's spot
        ax.plot(x, y, marker="^", color="black", markersize=6, zorder=5)
        ax.annotate(
            ", ".join(names),
            (x, y),
            xytext=(5, 3),
            textcoords="offset points",
            fontsize=7,
            zorder=6,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.75, "lw": 0},
        )
    label = f"{column.removesuffix('_kw').replace('_', ' ')} / connection capacity"
    if points:
        pts = pd.concat(points)
        pts["share"] = (pts[column] / pts["capacity_kva"]).clip(0, 1)
        pts.plot(
            ax=ax,
            column="share",
            cmap="RdYlGn",
            vmin=0,
            vmax=1,
            markersize=8,
            legend=True,
            legend_kwds={"label": label, "shrink": 0.6},
        )
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if metric:
        scale_bar(ax)
    ax.set_title(f"Guaranteed power per end-user, {len(points)} feeders")
    return _save(fig, target, "Grid map")


def envelope_timeseries(
    df: pd.DataFrame, target: Path | None, direction: str, title: str = "", max_users: int = 60
) -> Figure:
    """Static against dynamic limits per participant over the horizon (seed Fig 3-11).

    One panel per participant (nearest the transformer first, at most `max_users`): its
    connection capacity, the dynamic envelope per method (steps), the static envelope per method
    (dashed) and, shaded, its own forecast in this direction."""
    part = df[df["participant"].astype(bool)]
    dyn = part[part["timestamp"] != "static"].copy()
    stamps = pd.to_datetime(dyn["timestamp"])
    t0 = stamps.min()
    dyn["hour"] = (stamps - t0) / pd.Timedelta(hours=1)
    static = part[part["timestamp"] == "static"]
    all_users = part.drop_duplicates("end_user").sort_values(["distance_m", "end_user"])["end_user"].tolist()
    users = all_users[:max_users]
    methods = list(dict.fromkeys(part["method"]))
    ncols = min(6, max(1, len(users)))
    nrows = max(1, -(-len(users) // ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.3 * ncols, 1.8 * nrows + 1.4),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    sign = 1.0 if direction == "import" else -1.0
    hours = np.unique(dyn["hour"].to_numpy())
    span = float(hours[-1] + (hours[1] - hours[0] if len(hours) > 1 else 1.0)) if len(hours) else 1.0
    tick = next((x for x in (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48, 168) if span / x <= 6), 720)
    ticks = np.arange(0, span + 1e-9, tick)
    for ax, user in zip(axes.flat, users):
        d = dyn[dyn["end_user"] == user]
        first = d[d["method"] == methods[0]].sort_values("hour")
        h = first["hour"].to_numpy()
        own = np.clip(sign * first["forecast_kw"].to_numpy(), 0, None)
        ax.fill_between(h, own, step="post", color="#d0d0d0", lw=0, label=f"own forecast {direction} (kW)")
        ax.axhline(float(first["capacity_kva"].iloc[0]), color=CAPACITY_COLOUR, lw=1, label="connection capacity (kVA)")
        for m in methods:
            dm = d[d["method"] == m].sort_values("hour")
            colour = METHOD_COLOURS.get(m)
            ax.step(dm["hour"], dm["guaranteed_kw"], where="post", color=colour, lw=1.2, label=f"dynamic {m} (kW)")
            s = static[(static["end_user"] == user) & (static["method"] == m)]["guaranteed_kw"]
            if len(s):
                ax.axhline(float(s.iloc[0]), color=colour, lw=1.2, ls="--", label=f"static {m} (kW)")
        ax.set_title(user, fontsize=8, pad=2)
        ax.set_xticks(ticks)
        ax.set_xlim(0, span)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(users) :]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    shown = f" (first {len(users)} of {len(all_users)} participants)" if len(all_users) > len(users) else ""
    fig.suptitle(
        f"Dynamic and static {direction} limits per participant{shown}; x: hours from {t0:%Y-%m-%d %H:%M}"
        + (f"\n{title}" if title else "")
    )
    fig.supylabel(f"guaranteed {direction} (kW)", fontsize=9)
    return _render(
        fig,
        Path(target).name if target else f"envelopes_time_{direction}.png",
        f"Dynamic and static {direction} limits",
        Path(target).parent if target else None,
    )


def activations(
    intervals: pd.DataFrame, events: pd.DataFrame, summary: dict, target: Path, vmin: float = 0.90, vmax: float = 1.10
) -> Path:
    """NFCA activations over the horizon: demand and generation, the firm operation's voltage
    extremes and loading against the limits, and the power curtailed under static and dynamic
    limits; activations shaded."""
    import matplotlib.dates as mdates

    t = pd.to_datetime(intervals["timestamp"])
    step = (t.iloc[1] - t.iloc[0]) if len(t) > 1 else pd.Timedelta(hours=1)
    fig, axes = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True, layout="constrained")
    for ax in axes:
        for start, end in zip(pd.to_datetime(events["start"]), pd.to_datetime(events["end"])):
            ax.axvspan(start, end, color="#f4a6a6", alpha=0.35, lw=0)
    a = axes[0]
    a.step(t, intervals["consumption_kw"], where="post", color="#c0392b", label="consumption")
    a.step(t, -intervals["generation_kw"], where="post", color="#e0a000", label="generation (negative)")
    a.axhline(0, color="#999999", lw=0.6)
    a.set_ylabel("end-users' total (kW)")
    a.legend(loc="upper left", bbox_to_anchor=(1.08, 1), frameon=False)
    b = axes[1]
    b.step(t, intervals["firm_v_max_pu"], where="post", color="#7b3294", label="highest voltage (firm)")
    b.step(t, intervals["firm_v_min_pu"], where="post", color="#008837", label="lowest voltage (firm)")
    for lim in (vmin, vmax):
        b.axhline(lim, color="#555555", ls=":", lw=1)
    b.set_ylabel("end-user voltage (pu)")
    b2 = b.twinx()
    b2.step(t, intervals["firm_max_loading_pct"], where="post", color="#2c7fb8", lw=0.8, label="max loading (firm)")
    b2.set_ylabel("max line/transformer loading (%)", color="#2c7fb8")
    h1, l1 = b.get_legend_handles_labels()
    h2, l2 = b2.get_legend_handles_labels()
    b.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.08, 1), frameon=False)
    c = axes[2]
    styles = {"static": "--", "dynamic": "-"}
    for col in [x for x in intervals.columns if x.startswith("curtailed_")]:
        _, lim, method, _ = col.split("_")
        c.step(
            t,
            intervals[col],
            where="post",
            ls=styles[lim],
            color=METHOD_COLOURS.get(method),
            label=f"{lim} {method}: {summary['curtailed_kwh'][method][lim]:.1f} kWh",
        )
    c.set_ylabel("curtailed power (kW)")
    c.legend(loc="upper left", bbox_to_anchor=(1.08, 1), frameon=False)
    c.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    c.set_xlim(t.iloc[0], t.iloc[-1] + step)
    pol = summary["policy"]
    cap = (
        f"cap {pol['max_count']} x {pol['max_duration_min']:g} min"
        if pol["max_count"] is not None and pol["max_duration_min"] is not None
        else "no cap"
    )
    fig.suptitle(
        f"{summary['feeder']}: {summary['participants']} participants, {pol['activations']} activation(s), "
        f"longest {pol['longest_min']:g} min ({cap}: {'satisfied' if pol['satisfied'] else 'NOT satisfied'}); "
        f"limits {vmin:.2f}-{vmax:.2f} pu"
    )
    return _save(fig, target, "Activations")
