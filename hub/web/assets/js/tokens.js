// Tokens: list, issue (the raw token is shown once), revoke.
import {api, h, announce, timeEl, stateEl, errorEl, table, fmtTime} from './util.js';

function tokenState(t, now = Date.now()) {
  if (t.revoked) return 'revoked';
  if (t.expires && t.expires < now) return 'expired';
  return 'valid';
}

// tokensTable lists token records with a two-step Revoke on live ones.
export function tokensTable(caption, tokens, reload) {
  const cols = [{label: 'Token id (jti)'}, {label: 'Device'}, {label: 'State'}, {label: 'Issued'}, {label: 'Expires'}, {label: 'Grants'}, {label: 'Action'}];
  const rows = tokens.map((t) => {
    const st = tokenState(t);
    const action = h('span', {class: 'confirm'});
    const stateCell = h('span', {}, stateEl(st), t.revoked ? [' ', timeEl(t.revoked)] : '');
    const revokeBtn = h('button', {type: 'button', class: 'secondary', 'data-revoke': t.jti, 'aria-label': `Revoke token ${t.jti} of ${t.device}`}, 'Revoke');
    const ask = () => {
      const yes = h('button', {type: 'button', class: 'danger', 'data-confirm': t.jti}, 'Yes, revoke');
      const no = h('button', {type: 'button', class: 'secondary'}, 'Cancel');
      const q = h('span', {id: `q-${t.jti}`}, `Revoke ${t.jti.slice(0, 8)}…? Its connections are cut at once.`);
      yes.setAttribute('aria-describedby', q.id);
      no.addEventListener('click', () => { action.replaceChildren(revokeBtn); revokeBtn.focus(); });
      yes.addEventListener('click', async () => {
        yes.disabled = no.disabled = true;
        try {
          const r = await api(`/api/v1/tokens/${encodeURIComponent(t.jti)}`, {method: 'DELETE'});
          stateCell.replaceChildren(stateEl('revoked'), ' ', timeEl(r.token.revoked));
          const msg = h('span', {tabindex: -1, class: 'revoked-msg'}, `Revoked; ${r.connections_cut} connection${r.connections_cut === 1 ? '' : 's'} cut`);
          action.replaceChildren(msg);
          msg.focus();
          announce(`Token ${t.jti.slice(0, 8)} of ${t.device} revoked; ${r.connections_cut} connections cut`);
        } catch (err) {
          yes.disabled = no.disabled = false;
          action.append(errorEl(err));
        }
      });
      action.replaceChildren(q, yes, no);
      yes.focus();
    };
    revokeBtn.addEventListener('click', ask);
    if (st === 'valid') action.append(revokeBtn);
    let grants = '';
    try {
      const acl = typeof t.acl === 'string' ? JSON.parse(t.acl) : t.acl;
      grants = `pub ${(acl.pub || []).length}, sub ${(acl.sub || []).length}`;
      grants = h('span', {title: [...(acl.pub || []).map((x) => `pub ${x}`), ...(acl.sub || []).map((x) => `sub ${x}`)].join('\n')}, grants);
    } catch { /* unknown */ }
    return [h('code', {title: t.jti}, t.jti), t.device ? h('a', {href: `#/device/${encodeURIComponent(t.device)}`}, t.device) : '—',
      stateCell, t.issued ? fmtTime(t.issued) : '—', t.expires ? fmtTime(t.expires) : '—', grants, action];
  });
  const el = table(caption, cols, rows, {class: 'stack tokens-table'});
  el.dataset.reload = reload ? '1' : '';
  return el;
}

export async function mount(view) {
  const out = h('div', {id: 'issued', 'aria-live': 'polite'});
  const listBox = h('div', {id: 'tokens-box'});
  const devIn = h('input', {id: 't-device', name: 'device', required: true, pattern: '[A-Za-z0-9_][A-Za-z0-9._\\-]{0,63}', autocomplete: 'off', placeholder: 'gw-1'});
  const profSel = h('select', {id: 't-profile', name: 'profile'}, h('option', {value: 'gateway'}, 'gateway'), h('option', {value: ''}, 'none (grants below)'));
  const ttlIn = h('input', {id: 't-ttl', name: 'ttl', value: '720h', size: 8, 'aria-describedby': 't-ttl-help'});
  const pubIn = h('input', {id: 't-pub', name: 'pub', placeholder: 'outpost/v1/…', 'aria-describedby': 't-grants-help'});
  const subIn = h('input', {id: 't-sub', name: 'sub', placeholder: 'outpost/v1/…', 'aria-describedby': 't-grants-help'});
  const filterIn = h('input', {id: 't-filter', type: 'search', placeholder: 'device', autocomplete: 'off'});
  const err = h('div', {});
  const form = h('form', {id: 'issue-form', 'aria-labelledby': 'h-issue'},
    h('div', {class: 'form-row'},
      h('div', {}, h('label', {for: 't-device'}, 'Device id'), devIn),
      h('div', {}, h('label', {for: 't-profile'}, 'Profile'), profSel),
      h('div', {}, h('label', {for: 't-ttl'}, 'Lifetime'), ttlIn),
      h('div', {}, h('label', {for: 't-pub'}, 'Extra publish filters'), pubIn),
      h('div', {}, h('label', {for: 't-sub'}, 'Extra subscribe filters'), subIn),
      h('div', {}, h('button', {type: 'submit'}, 'Issue token'))),
    h('p', {class: 'muted', id: 't-ttl-help'}, 'Lifetime as a Go duration (720h = 30 days), capped by the hub\'s tokens.max_ttl.'),
    h('p', {class: 'muted', id: 't-grants-help'}, 'Filters are comma-separated MQTT topic filters, added to the profile\'s.'),
    err);
  view.append(h('h1', {}, 'Tokens'),
    h('section', {'aria-labelledby': 'h-issue'}, h('h2', {id: 'h-issue'}, 'Issue a channel token'), form, out),
    h('section', {'aria-labelledby': 'h-list'}, h('h2', {id: 'h-list'}, 'Issued tokens'),
      h('div', {class: 'filters'}, h('div', {}, h('label', {for: 't-filter'}, 'Device'), filterIn)), listBox));

  const split = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.replaceChildren();
    const body = {device: devIn.value.trim(), profile: profSel.value, ttl: ttlIn.value.trim()};
    if (split(pubIn.value).length) body.pub = split(pubIn.value);
    if (split(subIn.value).length) body.sub = split(subIn.value);
    try {
      const r = await api('/api/v1/tokens', {method: 'POST', body});
      const ta = h('textarea', {id: 'new-token', class: 'token-out', readonly: true, 'aria-label': `New token for ${r.device}`}, r.token);
      const copy = h('button', {type: 'button', class: 'secondary'}, 'Copy');
      copy.addEventListener('click', async () => {
        ta.select();
        try { await navigator.clipboard.writeText(r.token); announce('Token copied'); } catch { announce('Select the text and copy it'); }
      });
      out.replaceChildren(h('div', {class: 'notice'},
        h('p', {}, `Token for ${r.device} (jti ${r.jti}, key ${r.kid}), valid until ${fmtTime(Date.parse(r.expires))}. `,
          h('strong', {}, 'Copy it now: the hub does not show it again.')), ta, copy));
      ta.focus();
      load();
    } catch (e2) { err.replaceChildren(errorEl(e2)); }
  });

  let timer;
  async function load() {
    try {
      const dev = filterIn.value.trim();
      const r = await api(`/api/v1/tokens?limit=1000${dev ? `&device=${encodeURIComponent(dev)}` : ''}`);
      listBox.replaceChildren(r.tokens.length ? tokensTable(`${r.tokens.length} tokens, newest first`, r.tokens, load) : h('p', {class: 'muted'}, 'No tokens.'));
    } catch (e) { listBox.replaceChildren(errorEl(e)); }
  }
  filterIn.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(load, 250); });
  await load();
  return () => clearTimeout(timer);
}
