"""report.html: one self-contained file a planner opens in a browser (no network at view time).

It holds the feeder map (an inline SVG drawn by a few lines of plain JavaScript in the file: no
library to fetch, so a report stays ~100 kB and a batch of thousands of feeders stays small),
the summary per method and direction with the limiting elements ranked, every end-user's
envelopes, the figures (PNG, embedded) and the run's provenance. On the map, lines are coloured
by their verified loading and end-users by their guaranteed kW for the chosen envelope set;
hovering or clicking an end-user shows its import and export per method, the binding limit and
its element, and its distance from the transformer.
"""

from __future__ import annotations

import base64
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
"""

SCRIPT = r"""
(function(){
const D = JSON.parse(document.getElementById('nfca-data').textContent);
const svg = document.getElementById('map'), NS = 'http://www.w3.org/2000/svg';
const sel = document.getElementById('set'), panel = document.getElementById('panel');
const xs = [], ys = [];
D.lines.forEach(l => { xs.push(l.a[0], l.b[0]); ys.push(l.a[1], l.b[1]); });
D.users.forEach(u => { xs.push(u.x); ys.push(u.y); });
const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
const span = Math.max(x1 - x0, y1 - y0, 1), pad = 0.05 * span;
let vb = [x0 - pad, -(y1 + pad), x1 - x0 + 2 * pad, y1 - y0 + 2 * pad];
const setVB = () => svg.setAttribute('viewBox', vb.join(' '));
svg.style.height = Math.round(Math.max(260, Math.min(640, svg.clientWidth * vb[3] / vb[2]))) + 'px';
setVB();
function ramp(t, stops){ t = Math.max(0, Math.min(1, t)); const k = Math.min(stops.length - 2, Math.floor(t * (stops.length - 1)));
  const f = t * (stops.length - 1) - k, a = stops[k], b = stops[k + 1];
  return 'rgb(' + [0,1,2].map(i => Math.round(a[i] + f * (b[i] - a[i]))).join(',') + ')'; }
const KW = [[215,48,39],[252,141,89],[254,224,139],[145,207,96],[26,152,80]];
const LOAD = [[189,189,189],[116,169,207],[43,140,190],[253,141,60],[215,25,28]];
const el = (tag, attrs) => { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; };
const w = 0.004 * span, r = 0.006 * span;
const gl = el('g', {}), gu = el('g', {});
svg.appendChild(gl); svg.appendChild(gu);
const lineEls = D.lines.map(l => { const e = el('line', {x1: l.a[0], y1: -l.a[1], x2: l.b[0], y2: -l.b[1], 'stroke-width': w,
  'stroke-linecap': 'round', 'data-line': l.name}); const t = el('title', {}); e.appendChild(t); gl.appendChild(e); return [e, t, l]; });
if (D.transformer) { const t = D.transformer; const m = el('path', {d: `M ${t.x} ${-t.y - 1.6*r} l ${1.4*r} ${2.4*r} l ${-2.8*r} 0 z`,
  fill: '#111', class: 'transformer'}); const tt = el('title', {}); tt.textContent = t.name; m.appendChild(tt); gu.appendChild(m);
  const lab = el('text', {x: t.x + 2 * r, y: -t.y - 2 * r, 'font-size': 3 * r, 'font-weight': 'bold'}); lab.textContent = D.feeder; gu.appendChild(lab); }
const userEls = D.users.map((u, i) => { const e = u.participant
    ? el('circle', {cx: u.x, cy: -u.y, r: r, stroke: '#333', 'stroke-width': r / 5, class: 'end-user', 'data-user': u.name})
    : el('rect', {x: u.x - r * 0.85, y: -u.y - r * 0.85, width: 1.7 * r, height: 1.7 * r, fill: '#bbb', stroke: '#555',
                  'stroke-width': r / 5, class: 'end-user', 'data-user': u.name});
  const t = el('title', {}); e.appendChild(t); e.addEventListener('click', ev => { ev.stopPropagation(); show(i); });
  gu.appendChild(e); return [e, t, u]; });
const UNITS = D.units;
function fmt(x, d){ return (x === null || x === undefined || Number.isNaN(x)) ? '–' : x.toFixed(d); }
function paint(){
  const s = sel.value, set = D.sets[s], cap = D.max_capacity || 1;
  document.getElementById('kwmax').textContent = fmt(cap, 1);
  lineEls.forEach(([e, t, l]) => { const v = l.loading[s]; e.setAttribute('stroke', v === undefined ? '#999' : ramp(v / 100, LOAD));
    t.textContent = `${l.name}: ${v === undefined ? 'no loading' : fmt(v, 1) + ' % loaded'} (${set.label}), ${fmt(l.length_m, 1)} m, ${fmt(l.ampacity_a, 0)} A`; });
  userEls.forEach(([e, t, u]) => { const v = u.sets[s];
    if (u.participant) e.setAttribute('fill', v && v.kw !== null ? ramp(v.kw / cap, KW) : '#fff');
    t.textContent = `${u.name}: ${v && v.kw !== null ? fmt(v.kw, 2) + ' kW' : 'no envelope'} ${set.label}` +
      (u.participant ? `, ${v ? v.binding : ''}` : ' (non-participant, firm)') + `, ${fmt(u.distance_m, 0)} m`; });
}
function show(i){
  const u = D.users[i];
  userEls.forEach(([e], k) => e.setAttribute('stroke-width', k === i ? r / 1.5 : r / 5));
  let rows = '';
  Object.keys(D.sets).forEach(s => { const v = u.sets[s] || {};
    rows += `<tr><td>${D.sets[s].label}</td><td class="n">${v.kw === null || v.kw === undefined ? 'no envelope' : fmt(v.kw, 2)}</td>` +
            `<td>${v.type || ''}</td><td>${v.element || ''}${v.phase ? ' ' + v.phase : ''}</td><td class="n">${v.value === null || v.value === undefined ? '' : v.value + ' ' + (UNITS[v.type] || '')}</td></tr>`; });
  panel.innerHTML = `<h3 id="user-name">${u.name}</h3><p>connection point <b>${u.cp}</b>, phases ${u.phases} (${u.connection}),
    capacity ${fmt(u.capacity_kva, 1)} kVA, ${fmt(u.distance_m, 1)} m from the transformer, ` +
    (u.participant ? 'NFCA participant' : `non-participant (firm ${fmt(u.firm_kw, 2)} kW)`) + `</p>
    <table id="user-values"><tr><th>set</th><th>guaranteed kW</th><th>binding</th><th>element</th><th>limit</th></tr>${rows}</table>`;
}
sel.addEventListener('change', paint);
let drag = null;
svg.addEventListener('mousedown', e => { drag = [e.clientX, e.clientY, vb[0], vb[1]]; svg.style.cursor = 'grabbing'; });
window.addEventListener('mouseup', () => { drag = null; svg.style.cursor = 'grab'; });
svg.addEventListener('mousemove', e => { if (!drag) return; const k = vb[2] / svg.clientWidth;
  vb[0] = drag[2] - (e.clientX - drag[0]) * k; vb[1] = drag[3] - (e.clientY - drag[1]) * k; setVB(); });
svg.addEventListener('wheel', e => { e.preventDefault(); const f = e.deltaY > 0 ? 1.2 : 1 / 1.2, b = svg.getBoundingClientRect();
  const px = vb[0] + (e.clientX - b.left) / b.width * vb[2], py = vb[1] + (e.clientY - b.top) / b.height * vb[3];
  vb = [px - (px - vb[0]) * f, py - (py - vb[1]) * f, vb[2] * f, vb[3] * f]; setVB(); }, {passive: false});
paint();
})();
"""


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
    loading = {f"{e.direction.value}_{e.method.value}": v.line_loading_pct for e, v in zip(study.envelopes, study.verifications)}
    lines = [{"name": ln.name, "a": pos[ln.bus_from], "b": pos[ln.bus_to], "length_m": ln.length_m,
              "ampacity_a": ln.ampacity_a, "loading": {k: round(v[ln.name], 2) for k, v in loading.items() if ln.name in v}}
             for ln in feeder.lines if ln.bus_from in pos and ln.bus_to in pos]
    users = []
    rows = {(r.end_user, f"{r.direction}_{r.method}"): r for r in table.itertuples(index=False)}
    for u in feeder.end_users:
        first = rows[(u.name, next(iter(sets)))]
        per = {}
        for key in sets:
            r = rows[(u.name, key)]
            per[key] = {"kw": _clean(float(r.guaranteed_kw)), "binding": r.binding, "type": r.binding_type,
                        "element": r.binding_element, "phase": r.binding_phase, "value": _clean(float(r.binding_value))}
        users.append({"name": u.name, "x": xy[u.name][0], "y": xy[u.name][1], "cp": u.bus, "phases": u.phases,
                      "connection": u.connection, "capacity_kva": u.capacity_kva, "firm_kw": _clean(float(first.firm_kw)),
                      "participant": bool(first.participant), "distance_m": float(first.distance_m), "sets": per})
    tr = next((el for el in feeder.elements if el.kind == "transformer"), None)
    tr_bus = list(dict.fromkeys(b for b, _ in tr.terminals))[-1] if tr is not None else feeder.source.bus
    transformer = {"name": tr.name if tr is not None else feeder.source.name, "x": pos[tr_bus][0], "y": pos[tr_bus][1]} \
        if tr_bus in pos else None
    from nfca.io.schema import BINDING_UNITS

    return {"feeder": feeder.name, "sets": sets, "units": BINDING_UNITS, "lines": lines, "users": users, "transformer": transformer,
            "max_capacity": max((u.capacity_kva for u in feeder.end_users), default=1.0)}


def _summary_table(summary: dict) -> str:
    head = ("<tr><th>method</th><th>direction</th><th>status</th><th>total kW</th><th>min kW</th><th>max kW</th>"
            "<th>Jain</th><th>V min pu</th><th>V max pu</th><th>max loading %</th><th>verified</th>"
            "<th>limiting elements (end-users bound)</th></tr>")
    rows = []
    for m, per in summary["methods"].items():
        for d, s in per.items():
            if s["status"] != "ok":
                rows.append(f"<tr><td>{_esc(m)}</td><td>{_esc(d)}</td><td class='bad'>infeasible</td>"
                            f"<td colspan='9'>{_esc(s['reason'])}</td></tr>")
                continue
            lim = ", ".join(f"{_esc(x['type'])} <b>{_esc(x['element'])}</b> ({x['end_users']})" for x in s["limiting"][:6]) \
                or "none: every participant at capacity"
            ver = "<span class='ok'>yes</span>" if s["verified"] else "<span class='bad'>NO</span>"
            rows.append(f"<tr><td>{_esc(m)}</td><td>{_esc(d)}</td><td>ok</td><td class='n'>{_num(s['total_kw'], 1)}</td>"
                        f"<td class='n'>{_num(s['min_kw'])}</td><td class='n'>{_num(s['max_kw'])}</td>"
                        f"<td class='n'>{_num(s['jain_index'], 3)}</td><td class='n'>{_num(s['v_min_pu'], 3)}</td>"
                        f"<td class='n'>{_num(s['v_max_pu'], 3)}</td><td class='n'>{_num(s['max_loading_pct'], 1)}</td>"
                        f"<td>{ver}</td><td>{lim}</td></tr>")
    return f"<table id='summary'>{head}{''.join(rows)}</table>"


def _users_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>no envelope exists</p>"
    wide = table.pivot_table(index="end_user", columns=["direction", "method"], values="guaranteed_kw", sort=False)
    base = table.drop_duplicates("end_user").set_index("end_user").sort_values(["distance_m"])
    cols = list(wide.columns)
    head = "<tr><th>end-user</th><th>connection point</th><th>phases</th><th>distance m</th><th>capacity kVA</th>" \
           "<th>participant</th>" + "".join(f"<th>{_esc(m)} {_esc(d)} kW</th>" for d, m in cols) + "</tr>"
    body = []
    for name, r in base.iterrows():
        vals = "".join(f"<td class='n'>{_num(wide.loc[name, c]) if name in wide.index else '–'}</td>" for c in cols)
        body.append(f"<tr><td>{_esc(name)}</td><td>{_esc(r['connection_point'])}</td><td>{_esc(r['phases'])}</td>"
                    f"<td class='n'>{_num(r['distance_m'], 1)}</td><td class='n'>{_num(r['capacity_kva'], 1)}</td>"
                    f"<td>{'yes' if r['participant'] else 'no (firm)'}</td>{vals}</tr>")
    return f"<div class='scroll'><table id='users'>{head}{''.join(body)}</table></div>"


def _provenance(summary: dict) -> str:
    o, p = summary.get("options", {}), summary.get("provenance", {})
    items = [("nfca version", p.get("nfca_version", "")), ("command", p.get("command", "")),
             ("feeder file", summary.get("path", ""))]
    items += [(f"sha256 {k}", v) for k, v in p.get("inputs", {}).items()]
    items += [("participants", p.get("participants", {}).get("rule", "")), ("seed", p.get("participants", {}).get("seed", "")),
              ("firm values", o.get("firm", ""))]
    items += [(k, v) for k, v in o.items() if k != "firm"]
    items += [("computed in", f"{summary.get('seconds', 0):.1f} s"), ("written", p.get("time", ""))]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>" for k, v in items if v not in ("", None))
    return f"<table id='provenance'>{rows}</table>"


def _notices(summary: dict) -> str:
    items = "".join(f"<li class='{'bad' if n.get('level') == 'warning' else ''}'>{_esc(n['message'])}</li>"
                    for n in summary.get("notices", []))
    return f"<section><h2>What nfca assumed</h2><ul id='notices'>{items}</ul></section>" if items else ""


def render(study, table: pd.DataFrame, figures=(), summary: dict | None = None, note: str = "") -> str:
    """The report as one HTML string."""
    s = summary or study.summary
    o = s["options"]
    data = json.dumps(map_data(study, table), allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    from nfca.io.geo import has_coordinates

    keys = table[table["status"] == "ok"][["direction", "method"]].drop_duplicates().itertuples(index=False)
    sets = "".join(f"<option value='{_esc(d)}_{_esc(m)}'>{_esc(m)} {_esc(d)}</option>" for d, m in keys)
    where = "bus coordinates of the feeder file" if has_coordinates(study.feeder) else \
        "schematic: x is the cable distance from the transformer, branches one above the other (no bus coordinates in the feeder file)"
    status = "<span class='ok'>every envelope set verified by OpenDSS</span>" if s["verified"] and s.get("complete", True) else \
        ("<span class='bad'>partial: some method/direction has no envelope (see the summary)</span>" if s["verified"]
         else "<span class='bad'>NOT verified</span>")
    figs = "".join(f"<figure><img alt='{_esc(f.title)}' src='data:image/png;base64,{base64.b64encode(f.png).decode()}'>"
                   f"<figcaption>{_esc(f.title)} ({_esc(f.name)})</figcaption></figure>" for f in figures)
    firm = o.get("firm", "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>nfca report: {_esc(s['feeder'])}</title><style>{STYLE}</style></head>
<body><header><h1>Guaranteed capacity under non-firm connection agreements: {_esc(s['feeder'])}</h1>
<p>{s['participants']} of {s['end_users']} end-users with an NFCA; limits {o['vmin_pu']:.2f}-{o['vmax_pu']:.2f} pu,
source {o['source_pu']} pu, power factor {o['power_factor']:g}; non-participants: {_esc(firm)}. {status}</p>
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
<section><h2>End-users (nearest the transformer first)</h2>{_users_table(table[table['status'] == 'ok'])}</section>
<section><h2>Figures</h2>{figs or '<p>none</p>'}</section>
{_notices(s)}<section><h2>Provenance</h2>{_provenance(s)}</section>
</main>
<script type="application/json" id="nfca-data">{data}</script>
<script>{SCRIPT}</script>
</body></html>
"""


def write_report(study, table: pd.DataFrame, target: Path, figures=(), summary: dict | None = None,
                 note: str = "") -> Path:
    """Write report.html for one envelope study (`summary`: its summary.json, default study.summary)."""
    return write_text(target, render(study, table, figures, summary, note))


def write_batch_report(results: Path, types: pd.DataFrame, figures: list[Path] = (),
                       incomplete: dict[str, str] | None = None) -> Path:
    """RESULTS/report.html: every feeder with its type and totals, linking its own report.html,
    the feeders that could not be typed (`incomplete`: name -> why), and the batch's figures."""
    results = Path(results)
    rows = []
    cols = ["end_users", "connection_points", "length_m", "capacity_kw", "optimal_import_kw", "fair_import_kw",
            "optimal_export_kw", "fair_export_kw", "fair_over_optimal"]
    for r in types.sort_values(["type", "feeder"]).to_dict(orient="records") if len(types) else []:
        link = f"feeders/{r['feeder']}/report.html"
        name = f"<a href='{_esc(link)}'>{_esc(r['feeder'])}</a>" if (results / link).exists() else _esc(r["feeder"])
        rows.append(f"<tr><td>{name}</td><td>{r['type']}</td>" +
                    "".join(f"<td class='n'>{_num(r.get(c), 0 if c in ('end_users', 'connection_points') else 2)}</td>"
                            for c in cols) + "</tr>")
    untyped = "".join(f"<tr><td><a href='feeders/{_esc(n)}/report.html'>{_esc(n)}</a></td><td>{_esc(r)}</td></tr>"
                      for n, r in (incomplete or {}).items())
    failures = results / "failures.csv"
    failed = pd.read_csv(failures) if failures.exists() and failures.stat().st_size else pd.DataFrame()
    fail_rows = "".join(f"<tr><td>{_esc(f.feeder)}</td><td>{_esc(f.error)}</td></tr>" for f in failed.itertuples()) \
        if len(failed) else ""
    figs = "".join(f"<figure><img alt='{_esc(p.name)}' src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
                   f"<figcaption>{_esc(p.name)}</figcaption></figure>" for p in figures if Path(p).exists())
    counts = types["type"].value_counts().sort_index().to_dict() if len(types) else {}
    head = "".join(f"<th>{_esc(c.replace('_', ' '))}</th>" for c in cols)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nfca batch report: {_esc(results.name)}</title><style>{STYLE}</style></head>
<body><header><h1>Guaranteed capacity per feeder: {len(types)} feeders</h1>
<p>Types (ALEXANDER D3.3 section 5.2): {', '.join(f'type {k}: {v}' for k, v in counts.items()) or 'none'}.
Type 1: optimal and fair both reach the connection capacity; type 2: fair within a few % of optimal; type 3: fair well below.</p></header>
<main><section><h2>Feeders (click a name for its report)</h2><div class='scroll'><table id='feeders'>
<tr><th>feeder</th><th>type</th>{head}</tr>{''.join(rows)}</table></div></section>
{f"<section><h2>Feeders without every envelope (not typed)</h2><table id='incomplete'><tr><th>feeder</th><th>no envelope</th></tr>{untyped}</table></section>" if untyped else ''}
{f"<section><h2>Failed feeders</h2><table id='failures'><tr><th>feeder</th><th>error</th></tr>{fail_rows}</table></section>" if fail_rows else ''}
<section><h2>Figures</h2>{figs or '<p>none</p>'}</section></main></body></html>
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


def write_page(target: Path, title: str, lead: str, sections: list[tuple[str, str]], figures: list[Path] = (),
               summary: dict | None = None) -> Path:
    """A self-contained report page for the other commands (activations, sweep-participation):
    a header, sections of HTML (heading, body), the figures embedded and the provenance."""
    figs = "".join(f"<figure><img alt='{_esc(Path(p).name)}' src='data:image/png;base64,"
                   f"{base64.b64encode(Path(p).read_bytes()).decode()}'><figcaption>{_esc(Path(p).name)}</figcaption>"
                   f"</figure>" for p in figures)
    body = "".join(f"<section><h2>{_esc(h)}</h2>{html_}</section>" for h, html_ in sections)
    prov = f"<section><h2>Provenance</h2>{_provenance(summary)}</section>" if summary else ""
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nfca report: {_esc(title)}</title><style>{STYLE}</style></head>
<body><header><h1>{_esc(title)}</h1><p>{_esc(lead)}</p></header>
<main>{body}<section><h2>Figures</h2>{figs or '<p>none</p>'}</section>{prov}</main></body></html>
"""
    return write_text(target, text)
