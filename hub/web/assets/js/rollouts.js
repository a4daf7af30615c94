// Rollouts: firmware rollouts, their waves and per-device status, with
// pause / resume / abort (the OTA API, /api/v1/ota/rollouts). A hub without
// the OTA API answers 404 and the page says so.
import {api, h, announce, timeEl, stateEl, errorEl, table, fmtTime, fmtNum, fmtBytes, APIError} from './util.js';

const ENDED = ['completed', 'aborted'];

function notAvailable(view) {
  view.append(h('h1', {}, 'Rollouts'), h('p', {class: 'note', id: 'ota-unavailable', role: 'status'},
    'OTA is not available on this hub: its OTA API (/api/v1/ota/rollouts) answered 404. ',
    'Rollouts appear here once the hub serves firmware updates.'));
}

function progressEl(r) {
  const pct = Math.round(Number(r.progress) || 0);
  return h('span', {class: 'progress-cell'},
    h('progress', {max: 100, value: pct, 'aria-label': `${pct} percent of devices finished`}),
    ` ${r.succeeded ?? 0}/${r.total ?? 0} updated`, r.failures ? h('strong', {class: 'bad'}, ` · ${r.failures} failed`) : '');
}

function releaseOf(r) {
  return `${r.release || '—'}${r.target ? ` (${r.target})` : ''}`;
}

export async function mount(view, [id]) {
  if (id) return detail(view, id);
  let r;
  try {
    r = await api('/api/v1/ota/rollouts');
  } catch (err) {
    if (err instanceof APIError && err.status === 404) { notAvailable(view); return null; }
    view.append(h('h1', {}, 'Rollouts'), errorEl(err));
    return null;
  }
  const box = h('div', {id: 'rollouts-box'});
  view.append(h('h1', {}, 'Rollouts'), box);
  const render = (list) => {
    if (!list.length) { box.replaceChildren(h('p', {class: 'muted'}, 'No rollouts yet. Upload a release and create one with outpostctl ota rollout create.')); return; }
    box.replaceChildren(table(`${list.length} rollout${list.length === 1 ? '' : 's'}, newest first`,
      [{label: 'Rollout'}, {label: 'Release'}, {label: 'State'}, {label: 'Wave'}, {label: 'Progress'}, {label: 'Created'}],
      list.map((x) => [h('a', {href: `#/rollouts/${encodeURIComponent(x.id)}`}, x.id), releaseOf(x), stateEl(x.state, x.reason, 'rollout'),
        x.waves?.length ? `${x.current_wave || 0} of ${x.waves.length}` : '—', progressEl(x), x.created ? timeEl(x.created) : '—'])));
  };
  render(r.rollouts || []);
  const poll = setInterval(async () => {
    if (document.hidden || box.contains(document.activeElement)) return;
    try { render((await api('/api/v1/ota/rollouts')).rollouts || []); } catch { /* keep the last view */ }
  }, 5000);
  return () => clearInterval(poll);
}

async function detail(view, id) {
  const enc = encodeURIComponent(id);
  const box = h('div', {id: 'rollout'});
  const msg = h('div', {'aria-live': 'polite'});
  view.append(h('p', {}, h('a', {href: '#/rollouts'}, '← Rollouts')), box, msg);

  const render = (r) => {
    const act = (verb, label, cls) => h('button', {type: 'button', class: cls, 'data-action': verb,
      onclick: async (e) => {
        e.currentTarget.disabled = true;
        try {
          render(await api(`/api/v1/ota/rollouts/${enc}/${verb}`, {method: 'POST'}));
          announce(`Rollout ${id}: ${label.toLowerCase()} done`);
          msg.replaceChildren(h('p', {class: 'notice'}, `${label}: done.`));
          box.querySelector('[data-action]')?.focus();
        } catch (err) { msg.replaceChildren(errorEl(err)); load(); }
      }}, label);
    const actions = ENDED.includes(r.state) ? h('p', {class: 'muted'}, `This rollout has ${r.state === 'aborted' ? 'been aborted' : 'completed'}.`)
      : [r.state === 'paused' ? act('resume', 'Resume', '') : act('pause', 'Pause', 'secondary'), act('abort', 'Abort', 'danger')];
    const counts = Object.entries(r.counts || {}).filter(([, n]) => n > 0);
    const devs = r.devices || [];
    box.replaceChildren(
      h('h1', {}, `Rollout ${r.id} `, stateEl(r.state, null, 'rollout')),
      r.reason ? h('p', {class: r.state === 'paused' ? 'error' : 'muted', role: 'status'}, r.reason) : '',
      h('dl', {class: 'facts'},
        h('dt', {}, 'Release'), h('dd', {}, releaseOf(r)),
        h('dt', {}, 'Artifact'), h('dd', {}, r.sha256 ? h('code', {title: r.sha256}, `${r.sha256.slice(0, 16)}…`) : '—'),
        h('dt', {}, 'Progress'), h('dd', {}, progressEl(r)),
        h('dt', {}, 'Devices by state'), h('dd', {}, counts.length ? counts.map(([s, n]) => [stateEl(s, String(n)), ' ']) : '—'),
        h('dt', {}, 'Failure limit'), h('dd', {}, `${r.max_failures || '—'}${r.accepted_failures ? ` (${r.accepted_failures} accepted on resume)` : ''}`),
        h('dt', {}, 'Selector'), h('dd', {}, r.selector || 'device list'),
        h('dt', {}, 'Created'), h('dd', {}, r.created ? [fmtTime(r.created), ' (', timeEl(r.created), ')'] : '—'),
        h('dt', {}, 'Updated'), h('dd', {}, r.updated ? timeEl(r.updated) : '—'),
        r.finished ? [h('dt', {}, 'Finished'), h('dd', {}, fmtTime(r.finished))] : ''),
      h('div', {class: 'form-row', role: 'group', 'aria-label': 'Rollout actions'}, actions),
      h('h2', {}, 'Waves'),
      (r.waves || []).length ? table(`${r.waves.length} waves; wave ${r.current_wave || 0} is the last started`,
        [{label: 'Wave'}, {label: 'Cumulative size'}, {label: 'Devices', cls: 'num'}, {label: 'Started'}, {label: 'Finished', cls: 'num'}],
        r.waves.map((w) => [String(w.wave), w.size, String(w.devices), w.started ? 'yes' : 'not yet', `${w.done}/${w.devices}`])) : h('p', {class: 'muted'}, 'No waves.'),
      h('h2', {}, 'Devices'),
      devs.length ? table(`${devs.length} devices`, [{label: 'Device'}, {label: 'Wave', cls: 'num'}, {label: 'Status'}, {label: 'Download'}, {label: 'Firmware'}, {label: 'Reason'}, {label: 'Updated'}],
        devs.map((d) => [h('a', {href: `#/device/${encodeURIComponent(d.device)}`}, d.device), String(d.wave), stateEl(d.state),
          d.total ? `${fmtNum((100 * (d.bytes || 0)) / d.total, 0)} % of ${fmtBytes(d.total)}` : '—',
          d.fw || '—', d.reason || '—', d.updated ? timeEl(d.updated) : '—'])) : h('p', {class: 'muted'}, 'No per-device status yet.'));
  };

  async function load() {
    try { render(await api(`/api/v1/ota/rollouts/${enc}`)); } catch (err) {
      if (err instanceof APIError && err.status === 404) box.replaceChildren(h('p', {class: 'note', role: 'status'}, `Rollout ${id} not found, or OTA is not available on this hub.`));
      else box.replaceChildren(errorEl(err));
    }
  }
  await load();
  const poll = setInterval(() => { if (!document.hidden && !box.contains(document.activeElement)) load(); }, 5000);
  return () => clearInterval(poll);
}

// updateHistory lists the recent rollouts that include device (for the device page).
export async function updateHistory(device, limit = 10) {
  let list;
  try { list = (await api('/api/v1/ota/rollouts')).rollouts || []; } catch (err) {
    if (err instanceof APIError && err.status === 404) return h('p', {class: 'muted'}, 'OTA is not available on this hub.');
    throw err;
  }
  const details = await Promise.all(list.slice(0, limit).map((r) => api(`/api/v1/ota/rollouts/${encodeURIComponent(r.id)}`).catch(() => null)));
  const rows = [];
  for (const r of details) {
    const d = r && (r.devices || []).find((x) => x.device === device);
    if (d) rows.push([h('a', {href: `#/rollouts/${encodeURIComponent(r.id)}`}, r.id), releaseOf(r), stateEl(d.state), d.fw || '—', d.reason || '—', d.updated ? timeEl(d.updated) : '—']);
  }
  if (!list.length) return h('p', {class: 'muted'}, 'No rollouts yet.');
  if (!rows.length) return h('p', {class: 'muted'}, `Not in the last ${Math.min(limit, list.length)} rollout${list.length === 1 ? '' : 's'}.`);
  return table(`Firmware updates of ${device}, newest rollout first`, [{label: 'Rollout'}, {label: 'Release'}, {label: 'Status'}, {label: 'Firmware'}, {label: 'Reason'}, {label: 'Updated'}], rows);
}
