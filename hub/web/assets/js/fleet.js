// Fleet: every device with presence, since, last heartbeat, firmware and
// open alerts; filters by state, label and name; live presence over SSE.
import {api, h, events, announce, timeEl, stateEl, refreshTimes, errorEl, row, table} from './util.js';

const PAGE = 200;
const cols = [
  {label: 'Device'}, {label: 'State'}, {label: 'Since'}, {label: 'Last heartbeat'},
  {label: 'Firmware'}, {label: 'Open alerts', cls: 'num'}, {label: 'Labels'},
];
const saved = () => JSON.parse(sessionStorage.getItem('fleet-filters') || '{}');

export async function mount(view) {
  const f = {state: '', label: '', q: '', page: 0, ...saved()};
  let devs = [];
  const byId = new Map();
  const rows = new Map(); // visible device id → tr
  let shown = [];

  const summary = h('ul', {class: 'summary', 'aria-label': 'Fleet summary'});
  const stateSel = h('select', {id: 'f-state', name: 'state'},
    ['', 'online', 'stale', 'offline'].map((s) => h('option', {value: s, selected: f.state === s}, s || 'any')));
  const labelIn = h('input', {id: 'f-label', name: 'label', type: 'search', value: f.label, placeholder: 'site=north', list: 'label-list', autocomplete: 'off'});
  const labelList = h('datalist', {id: 'label-list'});
  const qIn = h('input', {id: 'f-q', name: 'q', type: 'search', value: f.q, placeholder: 'gw-', autocomplete: 'off'});
  const count = h('p', {id: 'fleet-count', class: 'muted', 'aria-live': 'polite'});
  const prev = h('button', {type: 'button', class: 'secondary', onclick: () => { f.page--; render(); }}, '← Previous');
  const next = h('button', {type: 'button', class: 'secondary', onclick: () => { f.page++; render(); }}, 'Next →');
  const pageInfo = h('span', {class: 'muted'});
  const tbody = h('tbody', {});
  const tableEl = h('table', {class: 'stack', id: 'fleet-table'},
    h('caption', {}, 'Devices, by name. Presence updates live.'),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', {scope: 'col', class: c.cls}, c.label)))), tbody);

  // Devices that claimed a place and wait for an operator (claims.auto_accept: false).
  const pendingBox = h('section', {id: 'pending', 'aria-labelledby': 'pending-h', hidden: true});
  const pcols = [{label: 'Device'}, {label: 'Asked'}, {label: 'Firmware'}, {label: 'Board'}, {label: 'From'}, {label: 'Labels'}, {label: 'Decision'}];
  async function decide(id, accept) {
    try {
      await api(`/api/v1/devices/${encodeURIComponent(id)}/${accept ? 'accept' : 'reject'}`, {method: 'POST'});
      announce(`${id} ${accept ? 'accepted: it gets its token at its next announcement' : 'rejected'}`);
    } catch (err) {
      pendingBox.append(errorEl(err));
    }
    await loadPending();
    if (accept) load().catch(() => {});
  }
  async function loadPending() {
    let r;
    try { r = await api('/api/v1/devices?state=pending'); } catch { return; }
    const ps = r.devices || [];
    pendingBox.hidden = ps.length === 0;
    const btn = (id, accept) => h('button', {type: 'button', class: accept ? '' : 'secondary', 'data-action': accept ? 'accept' : 'reject', 'data-device': id,
      onclick: () => decide(id, accept)}, accept ? `Accept ${id}` : `Reject ${id}`);
    pendingBox.replaceChildren(
      h('h2', {id: 'pending-h'}, `Waiting for approval (${ps.length})`),
      table('Devices that announced themselves with a claim token and wait for an operator.', pcols, ps.map((p) => [
        p.id, timeEl(p.requested), p.firmware || '', p.board || '', p.remote || '',
        Object.entries(p.labels || {}).map(([k, v]) => `${k}=${v}`).join(' '),
        h('span', {class: 'actions'}, btn(p.id, true), ' ', btn(p.id, false)),
      ])));
  }

  view.append(
    h('h1', {}, 'Fleet'), summary, pendingBox,
    h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter devices', onsubmit: (e) => e.preventDefault()},
      h('div', {}, h('label', {for: 'f-state'}, 'State'), stateSel),
      h('div', {}, h('label', {for: 'f-label'}, 'Label'), labelIn, labelList),
      h('div', {}, h('label', {for: 'f-q'}, 'Name contains'), qIn)),
    count,
    h('div', {class: 'table-wrap', role: 'region', 'aria-label': 'Devices', tabindex: 0}, tableEl),
    h('div', {class: 'pager'}, prev, pageInfo, next));

  const matchLabel = (d) => {
    const want = f.label.trim().toLowerCase();
    if (!want) return true;
    const labels = Object.entries(d.labels || {});
    if (want.includes('=')) {
      const [k, v] = want.split('=', 2).map((s) => s.trim());
      return labels.some(([lk, lv]) => lk.toLowerCase() === k && (v === '' || lv.toLowerCase() === v));
    }
    return labels.some(([lk, lv]) => lk.toLowerCase().includes(want) || lv.toLowerCase().includes(want));
  };
  const matches = (d) => (!f.state || d.state === f.state) && (!f.q || d.id.toLowerCase().includes(f.q.toLowerCase())) && matchLabel(d);

  function cells(d) {
    const labels = Object.entries(d.labels || {});
    return [
      h('a', {href: `#/device/${encodeURIComponent(d.id)}`}, d.id),
      stateEl(d.state, d.reason),
      timeEl(d.since),
      timeEl(d.last_heartbeat),
      d.firmware || h('span', {class: 'muted'}, '—'),
      d.open_alerts ? h('a', {href: '#/alerts', class: 'state state-active'}, String(d.open_alerts)) : '0',
      labels.length ? h('span', {class: 'labels'}, labels.map(([k, v]) => h('span', {}, `${k}=${v}`))) : '',
    ];
  }
  const rowFor = (d) => row(cols, cells(d), {'data-device': d.id, 'data-state': d.state});

  function updateSummary() {
    const n = {online: 0, stale: 0, offline: 0};
    let alerting = 0;
    for (const d of devs) { n[d.state] = (n[d.state] || 0) + 1; if (d.open_alerts) alerting++; }
    summary.replaceChildren(
      h('li', {}, h('strong', {id: 'n-online'}, n.online), 'online'),
      h('li', {}, h('strong', {id: 'n-stale'}, n.stale), 'stale'),
      h('li', {}, h('strong', {id: 'n-offline'}, n.offline), 'offline'),
      h('li', {}, h('strong', {}, alerting), 'with open alerts'),
      h('li', {}, h('strong', {}, devs.length), 'devices'));
  }

  function render() {
    shown = devs.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    f.page = Math.min(Math.max(0, f.page), pages - 1);
    sessionStorage.setItem('fleet-filters', JSON.stringify(f));
    const start = f.page * PAGE;
    const slice = shown.slice(start, start + PAGE);
    rows.clear();
    const frag = document.createDocumentFragment();
    for (const d of slice) { const tr = rowFor(d); rows.set(d.id, tr); frag.append(tr); }
    tbody.replaceChildren(frag);
    if (!slice.length) tbody.append(h('tr', {}, h('td', {colspan: cols.length, class: 'muted'}, devs.length ? 'No device matches the filters.' : 'No devices yet: issue a token and start a gateway.')));
    const plural = (n) => `${n.toLocaleString()} device${n === 1 ? '' : 's'}`;
    count.textContent = shown.length === devs.length ? plural(devs.length) : `${shown.length.toLocaleString()} of ${plural(devs.length)} match`;
    pageInfo.textContent = shown.length ? `${start + 1}–${start + slice.length} of ${shown.length}` : '';
    prev.disabled = f.page === 0;
    next.disabled = f.page >= pages - 1;
    updateSummary();
  }

  function fillLabels() {
    const seen = new Set();
    for (const d of devs) for (const [k, v] of Object.entries(d.labels || {})) { if (seen.size < 200) seen.add(`${k}=${v}`); }
    labelList.replaceChildren(...[...seen].sort().map((s) => h('option', {value: s})));
  }

  async function load() {
    const r = await api('/api/v1/devices');
    for (const d of r.devices) {
      // A presence event newer than this answer keeps its state.
      const cur = byId.get(d.id);
      if (cur && cur.since > d.since) Object.assign(d, {state: cur.state, since: cur.since, reason: cur.reason});
    }
    devs = r.devices;
    byId.clear();
    for (const d of devs) byId.set(d.id, d);
    render();
    fillLabels();
  }

  let timer;
  const later = (fn) => { clearTimeout(timer); timer = setTimeout(fn, 200); };
  stateSel.addEventListener('change', () => { f.state = stateSel.value; f.page = 0; render(); });
  labelIn.addEventListener('input', () => later(() => { f.label = labelIn.value; f.page = 0; render(); }));
  qIn.addEventListener('input', () => later(() => { f.q = qIn.value; f.page = 0; render(); }));

  // Live presence: update the model, the row in place, and tell readers.
  let pending = [];
  let speakTimer;
  let rerender;
  const off = events.on('presence', async (ev) => {
    let d = byId.get(ev.device);
    if (!d) {
      try { d = await api(`/api/v1/devices/${encodeURIComponent(ev.device)}`); } catch { return; }
      if (byId.has(d.id)) d = byId.get(d.id);
      else { devs.push(d); devs.sort((a, b) => (a.id < b.id ? -1 : 1)); byId.set(d.id, d); }
    }
    d.state = ev.state; d.since = ev.t; d.reason = ev.reason;
    if (rows.has(d.id)) {
      // A visible row also gets its heartbeat, firmware and alert count.
      api(`/api/v1/devices/${encodeURIComponent(d.id)}`).then((fresh) => {
        if (fresh.since >= d.since) Object.assign(d, fresh);
        const cur = rows.get(d.id);
        if (cur && matches(d)) { const tr = rowFor(d); cur.replaceWith(tr); rows.set(d.id, tr); updateSummary(); }
      }).catch(() => {});
    }
    const tr = rows.get(d.id);
    if (tr && matches(d)) {
      const fresh = rowFor(d);
      fresh.classList.add('flash');
      tr.replaceWith(fresh);
      rows.set(d.id, fresh);
      updateSummary();
    } else {
      clearTimeout(rerender);
      rerender = setTimeout(render, 250);
    }
    pending.push(`${d.id} is now ${ev.state}`);
    clearTimeout(speakTimer);
    speakTimer = setTimeout(() => {
      announce(pending.length > 3 ? `${pending.length} devices changed state` : pending.join('; '));
      pending = [];
    }, 800);
  });

  const offSync = events.on('resync', () => { load().catch(() => {}); });
  loadPending();
  try {
    await load();
    performance.mark('outpost:fleet-rendered');
    document.documentElement.dataset.fleetRendered = String(Math.round(performance.now()));
  } catch (err) {
    view.append(errorEl(err));
  }
  const tick = setInterval(() => { if (!document.hidden) refreshTimes(tbody); }, 15000);
  // Heartbeats and alert counts are not pushed: refresh them now and then.
  const poll = setInterval(() => { if (!document.hidden) load().catch(() => {}); }, 60000);
  const pollPending = setInterval(() => { if (!document.hidden) loadPending(); }, 10000);
  return () => { off(); offSync(); clearInterval(tick); clearInterval(poll); clearInterval(pollPending); clearTimeout(timer); clearTimeout(rerender); clearTimeout(speakTimer); };
}
