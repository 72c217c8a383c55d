// The feeder map of report.html: an inline SVG drawn from the report's data (D.map), no library.
// Lines coloured by their verified loading and end-users by their guaranteed kW for the chosen
// envelope set; hovering or clicking an end-user shows its envelopes. Drag to pan, wheel to zoom.
(function(){
const M = JSON.parse(document.getElementById('nfca-data').textContent).map;
const svg = document.getElementById('map');
if (!M || !svg) return;
const NS = 'http://www.w3.org/2000/svg';
const sel = document.getElementById('set'), panel = document.getElementById('panel');
const esc = s => String(s === null || s === undefined ? '' : s).replace(/[&<>"']/g,
  c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const xs = [], ys = [];
M.lines.forEach(l => { xs.push(l.a[0], l.b[0]); ys.push(l.a[1], l.b[1]); });
M.users.forEach(u => { xs.push(u.x); ys.push(u.y); });
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
const scale = M.marker_scale || 1, w = 0.004 * span * scale, r = 0.006 * span * scale;
const gl = el('g', {}), gu = el('g', {});
svg.appendChild(gl); svg.appendChild(gu);
const lineEls = M.lines.map(l => { const e = el('line', {x1: l.a[0], y1: -l.a[1], x2: l.b[0], y2: -l.b[1], 'stroke-width': w,
  'stroke-linecap': 'round', 'data-line': l.name}); const t = el('title', {}); e.appendChild(t); gl.appendChild(e); return [e, t, l]; });
(M.transformers || []).forEach(t => {
  const m = el('path', {d: `M ${t.x} ${-t.y - 1.6*r} l ${1.4*r} ${2.4*r} l ${-2.8*r} 0 z`, fill: '#111', class: 'transformer'});
  const tt = el('title', {}); tt.textContent = t.name; m.appendChild(tt); gu.appendChild(m);
  const lab = el('text', {x: t.x + 2 * r, y: -t.y - 2 * r, 'font-size': 3 * r, 'font-weight': 'bold', 'paint-order': 'stroke',
    stroke: '#fff', 'stroke-width': r / 2}); lab.textContent = t.label; gu.appendChild(lab); });
const userEls = M.users.map((u, i) => { const e = u.participant
    ? el('circle', {cx: u.x, cy: -u.y, r: r, stroke: '#333', 'stroke-width': r / 5, class: 'end-user', 'data-user': u.name})
    : el('rect', {x: u.x - r * 0.85, y: -u.y - r * 0.85, width: 1.7 * r, height: 1.7 * r, fill: '#bbb', stroke: '#555',
                  'stroke-width': r / 5, class: 'end-user', 'data-user': u.name});
  const t = el('title', {}); e.appendChild(t); e.addEventListener('click', ev => { ev.stopPropagation(); show(i); });
  gu.appendChild(e); return [e, t, u]; });
const UNITS = M.units;
function fmt(x, d){ return (x === null || x === undefined || Number.isNaN(x)) ? '–' : x.toFixed(d); }
const who = u => (u.feeder ? u.feeder + ' ' : '') + u.name;
function paint(){
  const s = sel.value, set = M.sets[s], cap = M.max_capacity || 1;
  document.getElementById('kwmax').textContent = fmt(cap, 1);
  lineEls.forEach(([e, t, l]) => { const v = l.loading[s]; e.setAttribute('stroke', v === undefined ? '#999' : ramp(v / 100, LOAD));
    t.textContent = `${l.name}: ${v === undefined ? 'no loading' : fmt(v, 1) + ' % loaded'} (${set.label}), ${fmt(l.length_m, 1)} m, ${fmt(l.ampacity_a, 0)} A`; });
  userEls.forEach(([e, t, u]) => { const v = u.sets[s];
    if (u.participant) e.setAttribute('fill', v && v.kw !== null ? ramp(v.kw / cap, KW) : '#fff');
    t.textContent = `${who(u)}: ${v && v.kw !== null ? fmt(v.kw, 2) + ' kW' : 'no envelope'} ${set.label}` +
      (u.participant ? `, ${v ? v.binding : ''}` : ' (non-participant, firm)') + `, ${fmt(u.distance_m, 0)} m`; });
}
function show(i){
  const u = M.users[i];
  userEls.forEach(([e], k) => e.setAttribute('stroke-width', k === i ? r / 1.5 : r / 5));
  let rows = '';
  Object.keys(M.sets).forEach(s => { const v = u.sets[s] || {};
    rows += `<tr><td>${esc(M.sets[s].label)}</td><td class="n">${v.kw === null || v.kw === undefined ? 'no envelope' : fmt(v.kw, 2)}</td>` +
            `<td>${esc(v.type)}</td><td>${esc(v.element)}${v.phase ? ' ' + esc(v.phase) : ''}</td>` +
            `<td class="n">${v.value === null || v.value === undefined ? '' : esc(v.value) + ' ' + esc(UNITS[v.type] || '')}</td></tr>`; });
  const feeder = u.feeder ? `<p>feeder <a href="${esc(u.report)}">${esc(u.feeder)}</a> (its report)</p>` : '';
  panel.innerHTML = `<h3 id="user-name">${esc(u.name)}</h3>${feeder}<p>connection point <b>${esc(u.cp)}</b>, phases ${esc(u.phases)}
    (${esc(u.connection)}), capacity ${fmt(u.capacity_kva, 1)} kVA, ${fmt(u.distance_m, 1)} m from the transformer, ` +
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
