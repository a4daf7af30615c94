// Shared helpers: DOM building (never innerHTML with data), the API client
// (CSRF header on every change), formatting, announcements and live events.

export const csrf = document.querySelector('meta[name="csrf-token"]')?.content || '';

// h('a', {href: '#/x', class: 'y'}, 'text', child) builds an element.
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the hub's API with the session cookie; non-GET requests carry
// the session's CSRF token. A 401 means the session ended: back to login.
export async function api(path, {method = 'GET', body} = {}) {
  const headers = {Accept: 'application/json'};
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf;
  let payload;
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  const r = await fetch(path, {method, headers, body: payload, credentials: 'same-origin', cache: 'no-store'});
  let data = null;
  try { data = await r.json(); } catch { /* not JSON */ }
  if (r.status === 401) {
    location.assign('/login?m=expired');
    throw new APIError(401, 'session ended');
  }
  if (!r.ok) throw new APIError(r.status, (data && (data.detail || data.error)) || r.statusText);
  return data;
}

const announcer = () => document.getElementById('announce');
let announceTimer;
// announce speaks msg through the polite live region.
export function announce(msg) {
  const a = announcer();
  if (!a) return;
  clearTimeout(announceTimer);
  a.textContent = '';
  announceTimer = setTimeout(() => { a.textContent = msg; }, 50);
}

const pad = (n) => String(n).padStart(2, '0');
export function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(ms, now = Date.now()) {
  if (!ms) return '—';
  let s = Math.round((now - ms) / 1000);
  const future = s < 0;
  s = Math.abs(s);
  let out;
  if (s < 5) return 'just now';
  if (s < 60) out = `${s} s`;
  else if (s < 3600) out = `${Math.floor(s / 60)} min`;
  else if (s < 86400) out = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else out = `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  return future ? `in ${out}` : `${out} ago`;
}

// timeEl shows "5 min ago" with the exact time on hover and for readers.
export function timeEl(ms) {
  if (!ms) return h('span', {class: 'muted'}, '—');
  return h('time', {datetime: new Date(ms).toISOString(), title: fmtTime(ms), dataset: {t: ms}}, ago(ms));
}

// refreshTimes re-renders every relative time under root.
export function refreshTimes(root) {
  const now = Date.now();
  for (const t of root.querySelectorAll('time[data-t]')) t.textContent = ago(Number(t.dataset.t), now);
}

// stateEl is a state badge; kind namespaces states whose colour differs
// (an "active" rollout is good news, an "active" alert is not).
export function stateEl(s, extra, kind) {
  const k = String(s || 'unknown').replace(/[^a-z_]/gi, '');
  return h('span', {class: `state state-${k}${kind ? ` state-${kind}-${k}` : ''}`}, s || 'unknown', extra ? ` · ${extra}` : '');
}

export function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return Number(v).toLocaleString(undefined, {maximumFractionDigits: digits});
}

export function fmtBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${fmtNum(n / 1024 ** i, i ? 1 : 0)} ${units[i]}`;
}

export function errorEl(err) {
  return h('p', {class: 'error', role: 'alert'}, err instanceof Error ? err.message : String(err));
}

// table builds an accessible table: cols = [{label, cls}], rows = arrays of
// cell content. Cells get data-label for the phone layout.
export function table(caption, cols, rows, attrs = {}) {
  const t = h('table', {class: 'stack', ...attrs},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', {scope: 'col', class: c.cls}, c.label)))),
    h('tbody', {}, rows.map((r) => row(cols, r))));
  return h('div', {class: 'table-wrap', role: 'region', 'aria-label': caption, tabindex: 0}, t);
}

export function row(cols, cells, attrs = {}) {
  return h('tr', attrs, cells.map((c, i) => h('td', {class: cols[i].cls, 'data-label': cols[i].label}, c)));
}

// Live events: one EventSource for the whole app; pages subscribe.
const listeners = new Map();
let source;
export const events = {
  on(type, fn) {
    if (!listeners.has(type)) {
      listeners.set(type, new Set());
      source?.addEventListener(type, dispatch);
    }
    listeners.get(type).add(fn);
    return () => listeners.get(type)?.delete(fn);
  },
  start() {
    const live = document.getElementById('live');
    const set = (state, text) => { if (live) { live.dataset.state = state; live.textContent = text; } };
    source = new EventSource('/api/v1/events');
    for (const type of listeners.keys()) source.addEventListener(type, dispatch);
    // Events before the stream opened (or while it reconnected) were not
    // delivered: pages subscribed to 'resync' fetch their state again. The
    // hub subscribes a stream before it answers, so nothing falls between.
    source.addEventListener('open', () => {
      set('live', 'Live');
      for (const fn of listeners.get('resync') || []) fn();
    });
    source.addEventListener('error', async () => {
      set('down', source.readyState === EventSource.CLOSED ? 'Offline' : 'Reconnecting…');
      if (source.readyState === EventSource.CLOSED) {
        // Closed for good: the session may have ended (api() then goes to login).
        try { await api('/api/v1/alerts?state=active&limit=1'); setTimeout(() => events.start(), 3000); } catch { /* handled */ }
      }
    });
  },
};

function dispatch(ev) {
  let data;
  try { data = JSON.parse(ev.data); } catch { return; }
  for (const fn of listeners.get(ev.type) || []) fn(data);
}

// loadScript adds a classic script once (the vendored chart library).
const scripts = new Map();
export function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const s = h('script', {src});
      s.addEventListener('load', resolve);
      s.addEventListener('error', () => reject(new Error(`could not load ${src}`)));
      document.head.append(s);
    }));
  }
  return scripts.get(src);
}

export function loadStyle(href) {
  if (!document.querySelector(`link[href="${href}"]`)) document.head.append(h('link', {rel: 'stylesheet', href}));
}

// alertBadge refreshes the nav's count of active, unacknowledged alerts.
export async function alertBadge() {
  const b = document.getElementById('alert-badge');
  if (!b) return;
  try {
    const r = await api('/api/v1/alerts?state=active&acked=false&limit=1');
    const n = r.total;
    b.hidden = n === 0;
    b.textContent = String(n);
    b.setAttribute('aria-label', `${n} unacknowledged`);
  } catch { /* the page shows errors */ }
}
