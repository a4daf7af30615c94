// Alerts: active and recent alerts, with acknowledge.
import {api, h, announce, timeEl, stateEl, errorEl, table, fmtNum, fmtTime, alertBadge, refreshTimes} from './util.js';

function ackedEl(a) {
  return h('span', {class: 'acked', tabindex: -1}, `Acknowledged by ${a.acked_by} `, timeEl(a.acked));
}

// alertsTable lists alerts with an Acknowledge button on each open one.
export function alertsTable(caption, alerts, reload, {device = true} = {}) {
  const cols = [
    ...(device ? [{label: 'Device'}] : []), {label: 'Sensor'}, {label: 'Rule'}, {label: 'State'}, {label: 'Severity'},
    {label: 'Value', cls: 'num'}, {label: 'Message'}, {label: 'Raised'}, {label: 'Cleared'}, {label: 'Acknowledged'},
  ];
  const rows = alerts.map((a) => {
    const cell = h('span', {});
    if (a.acked) cell.append(ackedEl(a));
    else {
      const b = h('button', {type: 'button', class: 'secondary', 'data-ack': `${a.device}/${a.rule}/${a.sensor}/${a.raised}`,
        'aria-label': `Acknowledge ${a.rule} on ${a.device} ${a.sensor}`}, 'Acknowledge');
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          const r = await api('/api/v1/alerts/ack', {method: 'POST', body: {device: a.device, rule: a.rule, sensor: a.sensor, raised: a.raised, by: 'dashboard'}});
          const done = ackedEl(r.alert);
          cell.replaceChildren(done);
          done.focus();
          announce(`Alert ${a.rule} on ${a.device} acknowledged`);
          alertBadge();
        } catch (err) {
          b.disabled = false;
          cell.append(errorEl(err));
        }
      });
      cell.append(b);
    }
    return [
      ...(device ? [h('a', {href: `#/device/${encodeURIComponent(a.device)}`}, a.device)] : []),
      a.sensor, a.rule, stateEl(a.state), a.severity ? stateEl(a.severity) : '—', fmtNum(a.value), a.message || '—',
      h('span', {title: fmtTime(a.raised)}, timeEl(a.raised)), a.cleared ? timeEl(a.cleared) : '—', cell,
    ];
  });
  const t = table(caption, cols, rows, {class: 'stack alerts-table'});
  t.dataset.reload = reload ? '1' : '';
  return t;
}

export async function mount(view) {
  let which = sessionStorage.getItem('alerts-tab') || 'active';
  const box = h('div', {id: 'alerts-box'});
  const tabs = h('div', {class: 'seg', role: 'group', 'aria-label': 'Which alerts'},
    [['active', 'Active'], ['recent', 'Recent (24 h)']].map(([k, label]) =>
      h('button', {type: 'button', 'data-tab': k, 'aria-pressed': String(k === which),
        onclick: () => { which = k; sessionStorage.setItem('alerts-tab', k); for (const b of tabs.children) b.setAttribute('aria-pressed', String(b.dataset.tab === k)); load(); }}, label)));
  view.append(h('h1', {}, 'Alerts'), h('div', {class: 'form-row'}, tabs), box);

  async function load() {
    try {
      const r = await api(`/api/v1/alerts?state=${which}&limit=1000`);
      const caption = which === 'active'
        ? `${r.total} active alert${r.total === 1 ? '' : 's'}, newest first`
        : `${r.total} alert${r.total === 1 ? '' : 's'} active or changed in the last 24 hours, newest first`;
      box.replaceChildren(r.alerts.length ? alertsTable(caption, r.alerts, load)
        : h('p', {class: 'muted'}, which === 'active' ? 'No active alerts.' : 'No alerts in the last 24 hours.'));
    } catch (err) { box.replaceChildren(errorEl(err)); }
  }
  await load();
  // Refresh unless the user is in the middle of the table (focus would jump).
  const poll = setInterval(() => {
    if (document.hidden) return;
    if (box.contains(document.activeElement)) refreshTimes(box);
    else load();
  }, 15000);
  return () => clearInterval(poll);
}
