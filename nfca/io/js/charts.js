// The charts of report.html, drawn as inline SVG from the report's data (D.charts): bar charts
// (per end-user or per feeder, paged beyond `page` bars; a missing value with a reason marked x),
// box plots and small multiples of step lines (one y scale, or each panel its own `range`, with
// shaded `spans`). Python decides what is drawn (nfca/io/charts.py); this only draws it. No library.
(function(){
const D = JSON.parse(document.getElementById('nfca-data').textContent);
const host = document.getElementById('charts');
if (!host || !D.charts) return;
const NS = 'http://www.w3.org/2000/svg', W = 1000;
const el = (tag, attrs, parent, text) => { const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e); return e; };
const tip = (e, text) => { el('title', {}, e, text); return e; };
const num = x => x !== null && x !== undefined && Number.isFinite(x);
const fmt = (x, d) => num(x) ? x.toFixed(d) : '–';
const peak = xs => xs.reduce((m, v) => num(v) && v > m ? v : m, 1e-9);  // no spread: series can be long
function ticks(lo, hi, n){ const raw = (hi - lo) / Math.max(1, n), p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * p).find(s => s >= raw) || raw; const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(+v.toFixed(10)); return out; }
function svgOf(fig, h){ const s = el('svg', {viewBox: `0 0 ${W} ${h}`, class: 'chart', xmlns: NS, role: 'img'}, fig);
  const defs = el('defs', {}, s); const p = el('pattern', {id: 'hatch-' + fig.id, width: 6, height: 6,
    patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)'}, defs);
  el('rect', {width: 6, height: 6, fill: '#fff'}, p); el('line', {x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#999', 'stroke-width': 2.5}, p);
  return s; }
function legend(fig, items){ const d = document.createElement('div'); d.className = 'legend chart-legend';
  items.forEach(it => { const span = document.createElement('span'); const sw = document.createElement('i');
    sw.className = 'swatch' + (it.dash ? ' dashed' : '') + (it.line ? ' line' : '') + (it.mark ? ' mark' : '');
    if (it.mark) sw.textContent = it.mark;
    sw.style.background = it.mark ? 'none' : it.hatched ? 'repeating-linear-gradient(45deg,#fff 0 2px,#999 2px 4px)' : (it.line ? 'none' : it.colour);
    sw.style.borderColor = it.edge || it.colour || '#999'; span.appendChild(sw);
    span.appendChild(document.createTextNode(' ' + it.label)); d.appendChild(span); });
  fig.appendChild(d); }
function yAxis(g, x, top, h, lo, hi, label, fmtTick, right){ const ts = ticks(lo, hi, 5), y = v => top + h - (v - lo) / (hi - lo) * h;
  ts.forEach(v => { if (!right) el('line', {x1: x, x2: W - 60, y1: y(v), y2: y(v), stroke: '#e6e6e6'}, g);
    el('text', {x: right ? x + 6 : x - 6, y: y(v) + 4, 'text-anchor': right ? 'start' : 'end', class: 'tick'}, g, fmtTick(v)); });
  const lx = right ? x + 48 : x - 44;
  el('text', {x: lx, y: top + h / 2, transform: `rotate(-90 ${lx} ${top + h / 2})`, 'text-anchor': 'middle', class: 'axis'}, g, label);
  el('line', {x1: x, x2: x, y1: top, y2: top + h, stroke: '#888'}, g); }

function bars(fig, c){
  const n = c.categories.length, page = c.page || 60, pages = Math.max(1, Math.ceil(n / page)), size = Math.ceil(n / pages);
  const longest = Math.max(1, ...c.categories.map(s => String(s).length)), small = size > 40;
  const left = 70, right = c.right ? 70 : 20, ph = 210, bottom = Math.min(150, 14 + longest * (small ? 6 : 6.6)), gap = 18;
  const H = pages * (ph + bottom + gap) + (c.xlabel ? 16 : 0), s = svgOf(fig, H), slot = (W - left - right) / size;
  const all = [c.back, c.hatched, ...c.series].filter(Boolean).flatMap(x => x.values);
  const hi = peak(all) * 1.06, nser = c.series.length;
  for (let p = 0; p < pages; p++) {
    const g = el('g', {}, s), top = p * (ph + bottom + gap) + 8, y = v => top + ph - v / hi * ph;
    yAxis(g, left, top, ph, 0, hi, c.ylabel, v => String(v));
    if (c.right) yAxis(g, W - right, top, ph, 0, hi, c.right.label, v => (v / c.right.factor).toFixed(1), true);
    for (let k = p * size, i = 0; k < Math.min(n, (p + 1) * size); k++, i++) {
      const x = left + i * slot, name = c.categories[k], muted = c.muted && c.muted[k];
      if (c.back && num(c.back.values[k])) tip(el('rect', {x: x + 0.04 * slot, width: 0.92 * slot, y: y(c.back.values[k]),
        height: ph - (y(c.back.values[k]) - top), fill: c.back.colour, stroke: c.back.edge, 'stroke-width': 0.8}, g),
        `${name}: ${c.back.label} ${fmt(c.back.values[k], 2)}`);
      c.series.forEach((ser, j) => { const v = ser.values[k];
        const bx = c.stacked ? x + 0.1 * slot : x + 0.1 * slot + j * 0.8 * slot / nser, bw = c.stacked ? 0.8 * slot : 0.8 * slot / nser;
        if (!num(v)) { if (ser.gaps && ser.gaps[k]) tip(el('text', {x: bx + bw / 2, y: top + ph - 3, 'text-anchor': 'middle',
          fill: ser.colour, 'font-size': 15, 'font-weight': 'bold', class: 'gap', 'data-series': ser.label, 'data-category': name}, g, '×'),
          `${name}: ${ser.label}: ${ser.gaps[k]}`); return; }
        tip(el('rect', {x: bx, width: bw, y: y(v), height: Math.max(0, top + ph - y(v)), fill: ser.colour, class: 'chart-bar',
          'data-series': ser.label, 'data-category': name}, g),
          `${name}: ${ser.label} ${fmt(v, 2)}` + (ser.notes && ser.notes[k] ? ` (${ser.notes[k]})` : '')); });
      if (c.hatched && num(c.hatched.values[k])) tip(el('rect', {x: x + 0.1 * slot, width: 0.8 * slot, y: y(c.hatched.values[k]),
        height: top + ph - y(c.hatched.values[k]), fill: `url(#hatch-${fig.id})`, stroke: '#888', 'stroke-width': 0.8}, g),
        `${name}: ${c.hatched.label} ${fmt(c.hatched.values[k], 2)}`);
      const lx = x + slot / 2, ly = top + ph + 6;
      el('text', {x: lx, y: ly, transform: `rotate(-90 ${lx} ${ly})`, 'text-anchor': 'end', 'dominant-baseline': 'middle',
        class: 'tick' + (muted ? ' muted' : ''), 'font-size': small ? 9 : 10}, g, name);
    }
    el('line', {x1: left, x2: W - right, y1: top + ph, y2: top + ph, stroke: '#888'}, g);
  }
  if (c.xlabel) el('text', {x: (left + W - right) / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis'}, s, c.xlabel);
  legend(fig, [c.back && {label: c.back.label, colour: c.back.colour, edge: c.back.edge},
               ...c.series.map(x => ({label: x.label, colour: x.colour})),
               c.hatched && c.hatched.values.some(num) && {label: c.hatched.label, hatched: true},
               c.series.some(x => x.gaps && x.gaps.some(Boolean)) && {label: c.gap_label || 'no value', mark: '×', colour: '#555'}
              ].filter(Boolean));
}

function boxes(fig, c){
  const groups = c.groups, H = 330, top = 12, ph = 240, left = 70, gw = (W - left - 20) / groups.length, s = svgOf(fig, H);
  const vals = groups.flatMap(g => g.boxes.flatMap(b => b.stats || [])), hi = peak(vals) * 1.08;
  const y = v => top + ph - v / hi * ph;
  yAxis(s, left, top, ph, 0, hi, c.ylabel, v => String(v));
  groups.forEach((grp, gi) => { const g = el('g', {}, s), x0 = left + gi * gw, bw = Math.min(90, gw / (grp.boxes.length + 1));
    el('text', {x: x0 + gw / 2, y: top + 12, 'text-anchor': 'middle', class: 'axis'}, g, grp.title);
    grp.boxes.forEach((b, k) => { const cx = x0 + (k + 1) * gw / (grp.boxes.length + 1);
      el('text', {x: cx, y: top + ph + 18, 'text-anchor': 'middle', class: 'tick'}, g, b.label);
      el('text', {x: cx, y: top + ph + 34, 'text-anchor': 'middle', class: 'tick muted'}, g, b.sub);
      if (!b.stats) return;
      const [mn, q1, md, q3, mx] = b.stats, bg = el('g', {class: 'box', 'data-box': b.label}, g);
      tip(bg, `${grp.title} ${b.label}: min ${fmt(mn, 2)}, quartiles ${fmt(q1, 2)} / ${fmt(md, 2)} / ${fmt(q3, 2)}, max ${fmt(mx, 2)} kW`);
      el('line', {x1: cx, x2: cx, y1: y(mx), y2: y(mn), stroke: '#333'}, bg);
      [mn, mx].forEach(v => el('line', {x1: cx - bw / 4, x2: cx + bw / 4, y1: y(v), y2: y(v), stroke: '#333'}, bg));
      el('rect', {x: cx - bw / 2, width: bw, y: y(q3), height: Math.max(1, y(q1) - y(q3)), fill: b.colour, stroke: '#333'}, bg);
      el('line', {x1: cx - bw / 2, x2: cx + bw / 2, y1: y(md), y2: y(md), stroke: '#000', 'stroke-width': 2}, bg); });
    el('line', {x1: x0 + 8, x2: x0 + gw - 8, y1: top + ph, y2: top + ph, stroke: '#888'}, g); });
}

function steps(fig, c){
  const n = c.panels.length, cols = Math.min(c.columns || 6, Math.max(1, n)), rows = Math.ceil(n / cols);
  const left = 60, pw = (W - left - 10) / cols, ph = c.panel_height || 120, xh = 22;
  const keyRows = p => { let rows = 1, lx = 0; (p.legend || []).forEach(it => { const wi = 36 + 6 * it.label.length;  // a panel's own key, under its title
    if (lx && lx + wi > pw - 14) { rows++; lx = 0; } lx += wi; }); return p.legend ? rows : 0; };
  const th = 16 + 13 * Math.max(0, ...c.panels.map(keyRows));
  const H = rows * (ph + th + xh) + 20 + (c.xlabel ? 14 : 0), s = svgOf(fig, H);
  const all = c.panels.filter(p => !p.range)
    .flatMap(p => [peak(p.lines.flatMap(l => l.values)), peak(p.area || []), ...p.hlines.map(h => h.value)]);
  const hi = peak(all) * 1.06, x = c.x, end = c.end, xt = ticks(0, end, Math.max(2, Math.round(6 / Math.sqrt(cols))));
  c.panels.forEach((p, i) => {
    const r = Math.floor(i / cols), k = i % cols, ox = left + k * pw + 6, oy = 8 + r * (ph + th + xh) + th, w = pw - 14;
    const [lo, up] = p.range || [0, hi];  // a panel with its own range has its own y scale
    const g = el('g', {class: 'panel', 'data-panel': p.title}, s), X = h => ox + h / end * w, Y = v => oy + ph - (v - lo) / (up - lo) * ph;
    el('text', p.legend ? {x: ox, y: oy - th + 12, class: 'axis'} : {x: ox + w / 2, y: oy - 4, 'text-anchor': 'middle', class: 'tick'}, g, p.title);
    if (p.legend) { let lx = 0, ly = oy - th + 25;
      p.legend.forEach(it => { const wi = 36 + 6 * it.label.length; if (lx && lx + wi > w) { lx = 0; ly += 13; }
        el('line', {x1: ox + lx, x2: ox + lx + 16, y1: ly - 4, y2: ly - 4, stroke: it.colour, 'stroke-width': 2,
          'stroke-dasharray': it.dash ? '4 2' : ''}, g); el('text', {x: ox + lx + 20, y: ly, class: 'tick'}, g, it.label); lx += wi; }); }
    (c.spans || []).forEach(([a, b]) => tip(el('rect', {x: X(a), y: oy, width: Math.max(1, X(b) - X(a)), height: ph,
      fill: c.span_colour || '#f4a6a6', opacity: 0.45, class: 'span'}, g), `${fmt(a, 2)}–${fmt(b, 2)} h`));
    el('rect', {x: ox, y: oy, width: w, height: ph, fill: 'none', stroke: '#ccc'}, g);
    if (p.range) { const ts = ticks(lo, up, 4), d = ts.length > 1 ? (String(+(ts[1] - ts[0]).toFixed(10)).split('.')[1] || '').length : 0;
      ts.forEach(v => { el('line', {x1: ox, x2: ox + w, y1: Y(v), y2: Y(v), stroke: '#eee'}, g);
        el('text', {x: ox - 4, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick'}, g, v.toFixed(d)); }); }
    if (p.ylabel) el('text', {x: ox - 44, y: oy + ph / 2, transform: `rotate(-90 ${ox - 44} ${oy + ph / 2})`, 'text-anchor': 'middle',
      class: 'axis'}, g, p.ylabel);
    const path = vals => { let d = ''; vals.forEach((v, j) => { if (!num(v)) return;
      const a = X(x[j]), b = X(j + 1 < x.length ? x[j + 1] : end); d += `${d && num(vals[j - 1]) ? 'L' : 'M'}${a.toFixed(1)},${Y(v).toFixed(1)}H${b.toFixed(1)}`; });
      return d; };
    if (p.area) { const d = path(p.area); if (d) el('path', {d: `M${X(0)},${Y(0)}` + d.replace(/^M/, 'L') + `L${X(end)},${Y(0)}Z`,
      fill: c.area_colour || '#d0d0d0', stroke: 'none'}, g); }
    p.hlines.forEach(h => tip(el('line', {x1: ox, x2: ox + w, y1: Y(h.value), y2: Y(h.value), stroke: h.colour,
      'stroke-dasharray': h.dash ? '5 3' : '', 'stroke-width': 1.3}, g), `${p.title}: ${h.label} ${fmt(h.value, 2)}`));
    p.lines.forEach(l => tip(el('path', {d: path(l.values), fill: 'none', stroke: l.colour, 'stroke-width': 1.4, class: 'series',
      'stroke-dasharray': l.dash ? '6 3' : ''}, g), `${p.title}: ${l.label}`));
    if (k === 0 && !p.range) [0, hi / 2, hi].forEach(v => el('text', {x: ox - 4, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick'}, g, v.toFixed(1)));
    if (r === rows - 1 || i + cols >= n) xt.forEach(h => el('text', {x: X(h), y: oy + ph + 14, 'text-anchor': 'middle', class: 'tick'}, g, String(h)));
  });
  if (c.ylabel) el('text', {x: 14, y: H / 2, transform: `rotate(-90 14 ${H / 2})`, 'text-anchor': 'middle', class: 'axis'}, s, c.ylabel);
  if (c.xlabel) el('text', {x: left + (W - left) / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis'}, s, c.xlabel);
  legend(fig, c.legend);
}

const DRAW = {bars, boxes, steps};
D.charts.forEach((c, i) => { const fig = document.createElement('figure'); fig.id = c.id || 'chart' + i; fig.className = 'chart-figure';
  fig.dataset.kind = c.kind; const cap = document.createElement('figcaption'); cap.innerHTML = '<b></b> <span></span>';
  cap.firstChild.textContent = c.title; cap.lastChild.textContent = c.caption || ''; fig.appendChild(cap);
  host.appendChild(fig); DRAW[c.kind](fig, c); });
})();
