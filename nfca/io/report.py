"""report.html: one self-contained file a planner opens in a browser (no network at view time).

It holds the feeder map and the charts (inline SVG drawn by plain JavaScript in the file,
`nfca/io/js/`, from the data the file embeds: no library to fetch and nothing rendered when the
report is written, so a report stays ~100 kB, costs milliseconds, and a batch of thousands of
feeders stays small), the summary per method and direction with the limiting elements ranked,
every end-user's envelopes and the run's provenance. On the map, lines are coloured
by their verified loading and end-users by their guaranteed kW for the chosen envelope set;
hovering or clicking an end-user shows its import and export per method, the binding limit and
its element, and its distance from the transformer.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from nfca.io.atomic import write_text

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:14px 24px}header h1{margin:0;font-size:1.35em}
header p{margin:4px 0 0;opacity:.9}main{padding:12px 24px;max-width:1500px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 16px;margin:12px 0}
h2{font-size:1.1em;margin:0 0 8px}table{border-collapse:collapse;font-size:.85em}
td,th{border-bottom:1px solid #e4e4e4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f7;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020;font-weight:600}.ok{color:#1f7a3a;font-weight:600}
#mapwrap{display:flex;gap:12px;flex-wrap:wrap}#map{border:1px solid #ccc;background:#fff;cursor:grab;flex:1 1 640px;
height:560px;min-width:320px}#panel{flex:0 1 360px;font-size:.85em}#panel table{width:100%}
.legend{display:flex;gap:18px;align-items:center;font-size:.8em;margin:6px 0}.bar{width:140px;height:10px;display:inline-block;
vertical-align:middle;border:1px solid #aaa}figure{margin:10px 0}figure img{max-width:100%;border:1px solid #eee}
.scroll{max-height:420px;overflow:auto}code{font-size:.85em}select{font-size:.9em}
svg.chart{width:100%;height:auto;display:block}svg.chart text{font-family:inherit}.tick{font-size:10px;fill:#333}
.axis{font-size:11px;fill:#222}.tick.muted{fill:#999}.chart-figure{margin:6px 0 18px}.chart-figure figcaption{font-size:.9em}
.chart-figure figcaption span{color:#555}.chart-legend{flex-wrap:wrap;margin:2px 0 0 60px}
.swatch{display:inline-block;width:14px;height:10px;border:1px solid #999;vertical-align:middle}
.swatch.line{height:0;border-width:2px 0 0 0;border-style:solid}.swatch.line.dashed{border-style:dashed}
.swatch.mark{border:none;width:auto;height:auto;font-weight:bold;color:#555}
"""

JS = Path(__file__).with_name("js")  # the report's scripts: the map and the charts


@functools.cache
def script(name: str) -> str:
    """One of the report's scripts (nfca/io/js/NAME.js), to inline."""
    return (JS / f"{name}.js").read_text(encoding="utf-8")


def _data_and_scripts(data: dict) -> str:
    """The report's data as JSON in the page, then the scripts that draw from it."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    return (
        f'<script type="application/json" id="nfca-data">{text}</script>\n'
        f"<script>{script('map')}</script>\n<script>{script('charts')}</script>"
    )


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:,.{digits}f}" if isinstance(x, (int, float)) else _esc(x)


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def map_data(study, table: pd.DataFrame) -> dict:
    """Everything the map script draws, as plain JSON."""
    from nfca.io.geo import bus_xy, end_user_xy

    feeder = study.feeder
    pos, xy = bus_xy(feeder), end_user_xy(feeder)
    sets = {}
    for d, m in table[["direction", "method"]].drop_duplicates().itertuples(index=False):
        sets[f"{d}_{m}"] = {"label": f"{m} {d}", "direction": d, "method": m}
    loading = {
        f"{e.direction.value}_{e.method.value}": v.line_loading_pct
        for e, v in zip(study.envelopes, study.verifications)
    }
    lines = [
        {
            "name": ln.name,
            "a": pos[ln.bus_from],
            "b": pos[ln.bus_to],
            "length_m": ln.length_m,
            "ampacity_a": ln.ampacity_a,
            "loading": {k: round(v[ln.name], 2) for k, v in loading.items() if ln.name in v},
        }
        for ln in feeder.lines
        if ln.bus_from in pos and ln.bus_to in pos
    ]
    users = []
    rows = {(r.end_user, f"{r.direction}_{r.method}"): r for r in table.itertuples(index=False)}
    for u in feeder.end_users:
        first = rows[(u.name, next(iter(sets)))]
        per = {}
        for key in sets:
            r = rows[(u.name, key)]
            per[key] = {
                "kw": _clean(float(r.guaranteed_kw)),
                "binding": r.binding,
                "type": r.binding_type,
                "element": r.binding_element,
                "phase": r.binding_phase,
                "value": _clean(float(r.binding_value)),
            }
        users.append(
            {
                "name": u.name,
                "x": xy[u.name][0],
                "y": xy[u.name][1],
                "cp": u.bus,
                "phases": u.phases,
                "connection": u.connection,
                "capacity_kva": u.capacity_kva,
                "firm_kw": _clean(float(first.firm_kw)),
                "participant": bool(first.participant),
                "distance_m": float(first.distance_m),
                "sets": per,
            }
        )
    tr = next((el for el in feeder.elements if el.kind == "transformer"), None)
    tr_bus = list(dict.fromkeys(b for b, _ in tr.terminals))[-1] if tr is not None else feeder.source.bus
    transformers = (
        [
            {
                "name": tr.name if tr is not None else feeder.source.name,
                "label": feeder.name,
                "x": pos[tr_bus][0],
                "y": pos[tr_bus][1],
            }
        ]
        if tr_bus in pos
        else []
    )
    from nfca.io.schema import BINDING_UNITS

    return {
        "feeder": feeder.name,
        "sets": sets,
        "units": BINDING_UNITS,
        "lines": lines,
        "users": users,
        "transformers": transformers,
        "max_capacity": max((u.capacity_kva for u in feeder.end_users), default=1.0),
    }


def _summary_table(summary: dict) -> str:
    head = (
        "<tr><th>method</th><th>direction</th><th>status</th><th>total kW</th><th>min kW</th><th>max kW</th>"
        "<th>Jain</th><th>V min pu</th><th>V max pu</th><th>max loading %</th><th>verified</th>"
        "<th>limiting elements (end-users bound)</th></tr>"
    )
    rows = []
    for m, per in summary["methods"].items():
        for d, s in per.items():
            if s["status"] != "ok":
                rows.append(
                    f"<tr><td>{_esc(m)}</td><td>{_esc(d)}</td><td class='bad'>infeasible</td>"
                    f"<td colspan='9'>{_esc(s['reason'])}</td></tr>"
                )
                continue
            lim = (
                ", ".join(
                    f"{_esc(x['type'])} <b>{_esc(x['element'])}</b> ({x['end_users']})" for x in s["limiting"][:6]
                )
                or "none: every participant at capacity"
            )
            ver = "<span class='ok'>yes</span>" if s["verified"] else "<span class='bad'>NO</span>"
            rows.append(
                f"<tr><td>{_esc(m)}</td><td>{_esc(d)}</td><td>ok</td><td class='n'>{_num(s['total_kw'], 1)}</td>"
                f"<td class='n'>{_num(s['min_kw'])}</td><td class='n'>{_num(s['max_kw'])}</td>"
                f"<td class='n'>{_num(s['jain_index'], 3)}</td><td class='n'>{_num(s['v_min_pu'], 3)}</td>"
                f"<td class='n'>{_num(s['v_max_pu'], 3)}</td><td class='n'>{_num(s['max_loading_pct'], 1)}</td>"
                f"<td>{ver}</td><td>{lim}</td></tr>"
            )
    return f"<table id='summary'>{head}{''.join(rows)}</table>"


def _users_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>no envelope exists</p>"
    wide = table.pivot_table(index="end_user", columns=["direction", "method"], values="guaranteed_kw", sort=False)
    base = table.drop_duplicates("end_user").set_index("end_user").sort_values(["distance_m"])
    cols = list(wide.columns)
    head = (
        "<tr><th>end-user</th><th>connection point</th><th>phases</th><th>distance m</th><th>capacity kVA</th>"
        "<th>participant</th>" + "".join(f"<th>{_esc(m)} {_esc(d)} kW</th>" for d, m in cols) + "</tr>"
    )
    body = []
    for name, r in base.iterrows():
        vals = "".join(f"<td class='n'>{_num(wide.loc[name, c]) if name in wide.index else '–'}</td>" for c in cols)
        body.append(
            f"<tr><td>{_esc(name)}</td><td>{_esc(r['connection_point'])}</td><td>{_esc(r['phases'])}</td>"
            f"<td class='n'>{_num(r['distance_m'], 1)}</td><td class='n'>{_num(r['capacity_kva'], 1)}</td>"
            f"<td>{'yes' if r['participant'] else 'no (firm)'}</td>{vals}</tr>"
        )
    return f"<div class='scroll'><table id='users'>{head}{''.join(body)}</table></div>"


def _provenance(summary: dict) -> str:
    o, p = summary.get("options", {}), summary.get("provenance", {})
    items = [
        ("nfca version", p.get("nfca_version", "")),
        ("command", p.get("command", "")),
        ("feeder file", summary.get("path", "")),
    ]
    items += [(f"sha256 {k}", v) for k, v in p.get("inputs", {}).items()]
    items += [
        ("participants", p.get("participants", {}).get("rule", "")),
        ("seed", p.get("participants", {}).get("seed", "")),
        ("firm values", o.get("firm", "")),
    ]
    items += [(k, v) for k, v in o.items() if k != "firm"]
    items += [("computed in", f"{summary.get('seconds', 0):.1f} s"), ("written", p.get("time", ""))]
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>" for k, v in items if v not in ("", None)
    )
    return f"<table id='provenance'>{rows}</table>"


def _notices(summary: dict) -> str:
    items = "".join(
        f"<li class='{'bad' if n.get('level') == 'warning' else ''}'>{_esc(n['message'])}</li>"
        for n in summary.get("notices", [])
    )
    return f"<section><h2>What nfca assumed</h2><ul id='notices'>{items}</ul></section>" if items else ""


def render(
    study,
    table: pd.DataFrame,
    figures=(),
    summary: dict | None = None,
    note: str = "",
    charts: list[dict] | None = None,
) -> str:
    """The report as one HTML string; `charts` (`nfca.io.charts` specs) default to the study's;
    `figures` (`nfca.io.plots.Figure`, optional) are embedded as PNG below them."""
    from nfca.io.charts import study_charts

    s = summary or study.summary
    o = s["options"]
    if charts is None:
        charts = study_charts(table, study.options.power_factor, chart_caption(s))
    data = {"map": map_data(study, table), "charts": charts}
    from nfca.io.geo import has_coordinates

    keys = table[table["status"] == "ok"][["direction", "method"]].drop_duplicates().itertuples(index=False)
    sets = "".join(f"<option value='{_esc(d)}_{_esc(m)}'>{_esc(m)} {_esc(d)}</option>" for d, m in keys)
    where = (
        "bus coordinates of the feeder file"
        if has_coordinates(study.feeder)
        else "schematic: x is the cable distance from the transformer, branches one above the other (no bus coordinates in the feeder file)"
    )
    status = (
        "<span class='ok'>every envelope set verified by OpenDSS</span>"
        if s["verified"] and s.get("complete", True)
        else (
            "<span class='bad'>partial: some method/direction has no envelope (see the summary)</span>"
            if s["verified"]
            else "<span class='bad'>NOT verified</span>"
        )
    )
    firm = o.get("firm", "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>nfca report: {_esc(s["feeder"])}</title><style>{STYLE}</style></head>
<body><header><h1>Guaranteed capacity under non-firm connection agreements: {_esc(s["feeder"])}</h1>
<p>{s["participants"]} of {s["end_users"]} end-users with an NFCA; limits {o["vmin_pu"]:.2f}-{o["vmax_pu"]:.2f} pu,
source {o["source_pu"]} pu, power factor {o["power_factor"]:g}; non-participants: {_esc(firm)}. {status}</p>
{f"<p>{_esc(note)}</p>" if note else ""}</header>
<main>
<section><h2>Summary per method and direction</h2>{_summary_table(s)}
<p>Limiting elements: the line (current), transformer (rating) or bus (voltage) that stops the participants short of their
capacity, with the number of end-users it binds: what to reinforce first.</p></section>
<section><h2>Feeder map</h2>
<div class="legend"><label>envelope set <select id="set">{sets}</select></label>
<span>guaranteed kW <span class="bar" style="background:linear-gradient(90deg,#d73027,#fc8d59,#fee08b,#91cf60,#1a9850)"></span>
0–<span id="kwmax"></span></span>
<span>line loading <span class="bar" style="background:linear-gradient(90deg,#bdbdbd,#74a9cf,#2b8cbe,#fd8d3c,#d7191c)"></span> 0–100 %</span>
<span>● participant ■ non-participant ▲ transformer</span></div>
<div id="mapwrap"><svg id="map" xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet"></svg>
<div id="panel"><p>Click an end-user for its envelopes. Drag to pan, wheel to zoom. Positions: {_esc(where)}.</p></div></div>
</section>
<section><h2>End-users (nearest the transformer first)</h2>{_users_table(table[table["status"] == "ok"])}</section>
<section><h2>Charts</h2><p>Hover a bar or a box for its values.</p><div id="charts"></div>{_figures(figures)}</section>
{_notices(s)}<section><h2>Provenance</h2>{_provenance(s)}</section>
</main>
{_data_and_scripts(data)}
</body></html>
"""


def write_report(
    study,
    table: pd.DataFrame,
    target: Path,
    figures=(),
    summary: dict | None = None,
    note: str = "",
    charts: list[dict] | None = None,
) -> Path:
    """Write report.html for one envelope study (`summary`: its summary.json, default study.summary;
    `charts`: default the study's; `figures`: PNG figures to embed as well, none by default)."""
    return write_text(target, render(study, table, figures, summary, note, charts))


def _figures(figures) -> str:
    """PNG figures (`nfca.io.plots.Figure` or paths) embedded in the page."""
    out = []
    for f in figures:
        png, name = (f.png, f"{f.title} ({f.name})") if hasattr(f, "png") else (Path(f).read_bytes(), Path(f).name)
        out.append(
            f"<figure><img alt='{_esc(name)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"<figcaption>{_esc(name)}</figcaption></figure>"
        )
    return "".join(out)


def chart_caption(summary: dict) -> str:
    """Feeder, participation and limits, under each chart."""
    o = summary.get("options", {})
    lo, hi = (
        f"{o[f'{k}_v']:g} V" if o.get(f"{k}_v") is not None else f"{o.get(f'{k}_pu', d):.2f} pu"
        for k, d in (("vmin", 0.9), ("vmax", 1.1))
    )
    limits = f"{lo} to {hi}"
    if o.get("source_pu") is not None:
        limits += f", source {o['source_pu']:.3g} pu"
    guarantees = dict.fromkeys(
        v["guarantee"] for per in summary.get("methods", {}).values() for v in per.values() if v.get("guarantee")
    )
    return (
        f"{summary['feeder']}: {summary['participants']} of {summary['end_users']} end-users with an NFCA, "
        f"limits {limits}" + (f"; guarantee: {', '.join(guarantees)}" if guarantees else "")
    )


def write_batch_report(
    results: Path,
    types: pd.DataFrame,
    figures: list[Path] = (),
    incomplete: dict[str, str] | None = None,
    charts: list[dict] = (),
) -> Path:
    """RESULTS/report.html: every feeder with its type and totals, linking its own report.html,
    the feeders that could not be typed (`incomplete`: name -> why), the batch's charts
    (`nfca.io.charts` specs, drawn in the page) and PNG figures (written with --format png)."""
    results = Path(results)
    rows = []
    cols = [
        "end_users",
        "connection_points",
        "length_m",
        "capacity_kw",
        "optimal_import_kw",
        "fair_import_kw",
        "optimal_export_kw",
        "fair_export_kw",
        "fair_over_optimal",
    ]
    for r in types.sort_values(["type", "feeder"]).to_dict(orient="records") if len(types) else []:
        link = f"feeders/{r['feeder']}/report.html"
        name = f"<a href='{_esc(link)}'>{_esc(r['feeder'])}</a>" if (results / link).exists() else _esc(r["feeder"])
        rows.append(
            f"<tr><td>{name}</td><td>{r['type']}</td>"
            + "".join(
                f"<td class='n'>{_num(r.get(c), 0 if c in ('end_users', 'connection_points') else 2)}</td>"
                for c in cols
            )
            + "</tr>"
        )
    untyped = "".join(
        f"<tr><td><a href='feeders/{_esc(n)}/report.html'>{_esc(n)}</a></td><td>{_esc(r)}</td></tr>"
        for n, r in (incomplete or {}).items()
    )
    failures = results / "failures.csv"
    failed = pd.read_csv(failures) if failures.exists() and failures.stat().st_size else pd.DataFrame()
    fail_rows = (
        "".join(f"<tr><td>{_esc(f.feeder)}</td><td>{_esc(f.error)}</td></tr>" for f in failed.itertuples())
        if len(failed)
        else ""
    )
    figs = _figures(p for p in figures if Path(p).exists())
    counts = types["type"].value_counts().sort_index().to_dict() if len(types) else {}
    head = "".join(f"<th>{_esc(c.replace('_', ' '))}</th>" for c in cols)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nfca batch report: {_esc(results.name)}</title><style>{STYLE}</style></head>
<body><header><h1>Guaranteed capacity per feeder: {len(types)} feeders</h1>
<p>Types (ALEXANDER D3.3 section 5.2): {", ".join(f"type {k}: {v}" for k, v in counts.items()) or "none"}.
Type 1: optimal and fair both reach the connection capacity; type 2: fair within a few % of optimal; type 3: fair well below.</p></header>
<main><section><h2>Feeders (click a name for its report)</h2><div class='scroll'><table id='feeders'>
<tr><th>feeder</th><th>type</th>{head}</tr>{"".join(rows)}</table></div></section>
{f"<section><h2>Feeders without every envelope (not typed)</h2><table id='incomplete'><tr><th>feeder</th><th>no envelope</th></tr>{untyped}</table></section>" if untyped else ""}
{f"<section><h2>Failed feeders</h2><table id='failures'><tr><th>feeder</th><th>error</th></tr>{fail_rows}</table></section>" if fail_rows else ""}
<section><h2>Charts</h2><p>Hover a bar for its values.</p><div id="charts"></div>{figs}</section></main>
{_data_and_scripts({"charts": list(charts)})}
</body></html>
"""
    return write_text(results / "report.html", text)


def table_html(df: pd.DataFrame, table_id: str = "", digits: int = 2) -> str:
    """A DataFrame as an HTML table (numbers right-aligned, missing values as –)."""
    head = "".join(f"<th>{_esc(str(c).replace('_', ' '))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for x in row:
            if x is None or isinstance(x, str):
                cells.append(f"<td>{_esc('' if x is None else x)}</td>")
            elif isinstance(x, (bool, np.bool_)):
                cells.append(f"<td>{'yes' if x else 'no'}</td>")
            elif isinstance(x, (int, np.integer)):
                cells.append(f"<td class='n'>{int(x):,}</td>")
            else:
                cells.append(f"<td class='n'>{_num(float(x), digits)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<div class='scroll'><table id='{_esc(table_id)}'><tr>{head}</tr>{''.join(body)}</table></div>"


def write_page(
    target: Path,
    title: str,
    lead: str,
    sections: list[tuple[str, str]],
    charts: list[dict] = (),
    summary: dict | None = None,
) -> Path:
    """A self-contained report page for the other commands (activations, sweep-participation):
    a header, sections of HTML (heading, body), the charts (`nfca.io.charts` specs, drawn in the
    page) and the provenance."""
    body = "".join(f"<section><h2>{_esc(h)}</h2>{html_}</section>" for h, html_ in sections)
    figs = (
        '<section><h2>Charts</h2><p>Hover a bar, a line or a shaded span for what it is.</p><div id="charts"></div></section>'
        if charts
        else ""
    )
    prov = f"<section><h2>Provenance</h2>{_provenance(summary)}</section>" if summary else ""
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>nfca report: {_esc(title)}</title><style>{STYLE}</style></head>
<body><header><h1>{_esc(title)}</h1><p>{_esc(lead)}</p></header>
<main>{body}{figs}{prov}</main>
{_data_and_scripts({"charts": list(charts)})}
</body></html>
"""
    return write_text(target, text)
