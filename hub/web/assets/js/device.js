// Device: facts, a chart per sensor (1 h / 24 h / 7 d, downsampled by the
// hub), alerts, presence history and tokens.
import {api, h, events, timeEl, stateEl, errorEl, table, fmtNum, fmtTime, ago, loadScript, loadStyle} from './util.js';
import {alertsTable} from './alerts.js';
import {tokensTable} from './tokens.js';
import {updateHistory} from './rollouts.js';

const RANGES = [['1h', 'Last hour', 3600e3], ['24h', 'Last 24 hours', 86400e3], ['7d', 'Last 7 days', 7 * 86400e3]];
const UPLOT = '/assets/vendor/uplot/uPlot.iife.min.js';

export async function mount(view, [id]) {
  if (!id) { view.append(errorEl('no device named')); return null; }
  const range = {key: sessionStorage.getItem('device-range') || '1h'};
  const charts = [];
  const head = h('div', {});
  const chartBox = h('div', {class: 'charts', id: 'charts'});
  const alertsBox = h('div', {id: 'device-alerts'});
  const presenceBox = h('div', {id: 'device-presence'});
  const tokensBox = h('div', {id: 'device-tokens'});
  const updatesBox = h('div', {id: 'device-updates'});
  const seg = h('div', {class: 'seg', role: 'group', 'aria-label': 'Chart range'},
    RANGES.map(([k, label]) => h('button', {type: 'button', 'aria-pressed': String(k === range.key), 'data-range': k, title: label,
      onclick: () => { range.key = k; sessionStorage.setItem('device-range', k); for (const b of seg.children) b.setAttribute('aria-pressed', String(b.dataset.range === k)); drawCharts(); }}, k)));

  view.append(head,
    h('section', {'aria-labelledby': 'h-readings'},
      h('div', {class: 'form-row'}, h('h2', {id: 'h-readings'}, 'Readings'), seg), chartBox),
    h('section', {'aria-labelledby': 'h-alerts'}, h('h2', {id: 'h-alerts'}, 'Alerts'), alertsBox),
    h('section', {'aria-labelledby': 'h-presence'}, h('h2', {id: 'h-presence'}, 'Presence history'), presenceBox),
    h('section', {'aria-labelledby': 'h-updates'}, h('h2', {id: 'h-updates'}, 'Firmware updates'), updatesBox),
    h('section', {'aria-labelledby': 'h-tokens'}, h('h2', {id: 'h-tokens'}, 'Tokens'), tokensBox));

  const enc = encodeURIComponent(id);

  async function loadHead() {
    const d = await api(`/api/v1/devices/${enc}`);
    const hb = d.heartbeat || {};
    const sensors = Object.entries(hb.sensors || {});
    head.replaceChildren(
      h('p', {}, h('a', {href: '#/fleet'}, '← Fleet')),
      h('h1', {}, d.id, ' ', stateEl(d.state, d.reason)),
      h('dl', {class: 'facts'},
        h('dt', {}, 'State since'), h('dd', {}, timeEl(d.since), ` (${fmtTime(d.since)})`),
        h('dt', {}, 'Last heartbeat'), h('dd', {}, timeEl(d.last_heartbeat), d.heartbeat_interval_s ? ` · every ${d.heartbeat_interval_s} s` : ''),
        h('dt', {}, 'Firmware'), h('dd', {id: 'device-firmware'}, d.firmware || '—'),
        h('dt', {}, 'Uptime'), h('dd', {}, hb.uptime_s ? ago(Date.now() - hb.uptime_s * 1000).replace(' ago', '') : '—'),
        h('dt', {}, 'Outbox'), h('dd', {}, hb.outbox !== undefined ? `${hb.outbox} records waiting` : '—'),
        h('dt', {}, 'Sensors'), h('dd', {}, sensors.length ? sensors.map(([k, v]) => [h('span', {class: `state state-${v === 'ok' ? 'online' : 'failed'}`}, `${k}: ${v}`), ' ']) : '—'),
        h('dt', {}, 'CPU temperature'), h('dd', {}, hb.cpu_temp_c ? `${fmtNum(hb.cpu_temp_c, 1)} °C` : '—'),
        h('dt', {}, 'Remote address'), h('dd', {}, d.remote || '—'),
        h('dt', {}, 'Token expires'), h('dd', {}, d.token_expires ? fmtTime(d.token_expires) : '—'),
        h('dt', {}, 'Last seq'), h('dd', {}, String(d.last_seq)),
        h('dt', {}, 'Labels'), h('dd', {class: 'labels'}, Object.entries(d.labels || {}).map(([k, v]) => h('span', {}, `${k}=${v}`)))));
  }

  async function drawCharts() {
    const [, label, span] = RANGES.find((r) => r[0] === range.key) || RANGES[0];
    for (const c of charts.splice(0)) c.destroy();
    let sensors;
    try {
      [sensors] = await Promise.all([api(`/api/v1/devices/${enc}/sensors`).then((r) => r.sensors), loadScript(UPLOT)]);
    } catch (err) { chartBox.replaceChildren(errorEl(err)); return; }
    loadStyle('/assets/vendor/uplot/uPlot.min.css');
    if (!sensors.length) { chartBox.replaceChildren(h('p', {class: 'muted'}, 'No readings yet.')); return; }
    const to = Date.now();
    const from = to - span;
    chartBox.replaceChildren(...sensors.map((s) => h('figure', {class: 'chart', 'data-sensor': s},
      h('h3', {}, s), h('div', {class: 'chart-box', role: 'img', 'aria-label': `${s}: loading`}), h('figcaption', {}, 'Loading…'))));
    await Promise.all(sensors.map(async (s, i) => {
      const fig = chartBox.children[i];
      const box = fig.querySelector('.chart-box');
      const cap = fig.querySelector('figcaption');
      const points = Math.min(1000, Math.max(200, Math.round(box.clientWidth || 600)));
      const t0 = performance.now();
      let r;
      try {
        r = await api(`/api/v1/devices/${enc}/readings?sensor=${encodeURIComponent(s)}&from=${from}&to=${to}&points=${points}`);
      } catch (err) { cap.replaceChildren(errorEl(err)); return; }
      const ms = Math.round(performance.now() - t0);
      const ps = r.points;
      fig.dataset.points = String(ps.length);
      fig.dataset.queryMs = String(ms);
      if (!ps.length) { cap.textContent = `No readings in the ${label.toLowerCase()}.`; box.setAttribute('aria-label', `${s}: no readings`); return; }
      // A gap (device offline, sensor failing) is a step much longer than
      // the usual one between points: break the line there.
      const steps = ps.slice(1).map((p, k) => p.t - ps[k].t).sort((a, b) => a - b);
      const usual = steps.length ? steps[Math.floor(steps.length / 2)] : 0;
      const xs = [], avg = [], lo = [], hi = [];
      let n = 0, min = Infinity, max = -Infinity;
      for (let k = 0; k < ps.length; k++) {
        const p = ps[k];
        if (k > 0 && usual > 0 && p.t - ps[k - 1].t > 5 * usual) { xs.push((ps[k - 1].t + 1) / 1000); avg.push(null); lo.push(null); hi.push(null); }
        xs.push(p.t / 1000); avg.push(p.v); lo.push(p.min); hi.push(p.max);
        n += p.n; min = Math.min(min, p.min); max = Math.max(max, p.max);
      }
      const last = ps[ps.length - 1];
      const summary = `${s}, ${label.toLowerCase()}: ${n.toLocaleString()} readings in ${ps.length} points; ` +
        `range ${fmtNum(min)} to ${fmtNum(max)}; latest average ${fmtNum(last.v)} at ${fmtTime(last.t)}`;
      box.setAttribute('aria-label', summary);
      cap.textContent = `${n.toLocaleString()} readings → ${ps.length} points (avg with min–max band) · min ${fmtNum(min)} · max ${fmtNum(max)} · query ${ms} ms`;
      const opts = {
        width: Math.max(280, box.clientWidth), height: 240,
        scales: {x: {time: true, range: [from / 1000, to / 1000]}},
        legend: {live: false},
        cursor: {drag: {x: false, y: false}},
        series: [{},
          {label: 'min', stroke: 'rgba(11,92,173,0.35)', width: 1, points: {show: false}},
          {label: 'avg', stroke: '#0b5cad', width: 2, points: {show: false}},
          {label: 'max', stroke: 'rgba(11,92,173,0.35)', width: 1, points: {show: false}}],
        bands: [{series: [3, 1], fill: 'rgba(11,92,173,0.14)'}],
        axes: [{stroke: '#545b64'}, {stroke: '#545b64', size: 56}],
      };
      // global from the vendored IIFE build
      // eslint-disable-next-line no-undef
      const u = new uPlot(opts, [xs, lo, avg, hi], box);
      charts.push(u);
    }));
  }

  async function loadAlerts() {
    const r = await api(`/api/v1/alerts?device=${enc}&limit=50`);
    alertsBox.replaceChildren(r.alerts.length ? alertsTable(`Alerts of ${id}, newest first`, r.alerts, loadAlerts, {device: false})
      : h('p', {class: 'muted'}, 'No alerts.'));
  }

  async function loadPresence() {
    const r = await api(`/api/v1/devices/${enc}/presence?limit=50`);
    presenceBox.replaceChildren(table(`Last ${r.presence.length} presence changes, newest first`,
      [{label: 'Time'}, {label: 'State'}, {label: 'Reason'}, {label: 'Epoch', cls: 'num'}, {label: 'Remote'}],
      r.presence.map((p) => [h('span', {}, fmtTime(p.t), ' (', timeEl(p.t), ')'), stateEl(p.state), p.reason, String(p.epoch), p.remote || '—'])));
  }

  async function loadTokens() {
    const r = await api(`/api/v1/tokens?device=${enc}&limit=100`);
    tokensBox.replaceChildren(r.tokens.length ? tokensTable(`Tokens of ${id}`, r.tokens, loadTokens) : h('p', {class: 'muted'}, 'No tokens issued.'));
  }

  // Subscribed before the first load, so no transition falls in between.
  const reload = () => { loadHead().catch(() => {}); loadPresence().catch(() => {}); };
  const off = events.on('presence', (ev) => { if (ev.device === id) reload(); });
  const offSync = events.on('resync', reload);
  const guard = (p, box) => p.catch((err) => box.replaceChildren(errorEl(err)));
  await guard(loadHead(), head);
  const loadUpdates = async () => updatesBox.replaceChildren(await updateHistory(id));
  await Promise.all([drawCharts(), guard(loadAlerts(), alertsBox), guard(loadPresence(), presenceBox), guard(loadTokens(), tokensBox),
    guard(loadUpdates(), updatesBox)]);

  const ro = new ResizeObserver(() => { for (const c of charts) c.setSize({width: Math.max(280, c.root.parentElement.clientWidth), height: 240}); });
  ro.observe(chartBox);
  return () => { off(); offSync(); ro.disconnect(); for (const c of charts) c.destroy(); };
}
