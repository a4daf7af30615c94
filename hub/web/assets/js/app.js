// The dashboard shell: a hash router (#/fleet, #/device/ID, #/alerts,
// #/tokens, #/rollouts[/ID]) that mounts one page module at a time, the live
// event stream and the alert badge.
import {events, alertBadge, errorEl, h} from './util.js';

const pages = {
  fleet: () => import('./fleet.js'),
  device: () => import('./device.js'),
  alerts: () => import('./alerts.js'),
  tokens: () => import('./tokens.js'),
  rollouts: () => import('./rollouts.js'),
};
const titles = {fleet: 'Fleet', device: 'Device', alerts: 'Alerts', tokens: 'Tokens', rollouts: 'Rollouts'};

const main = document.getElementById('main');
let unmount = null;
let seq = 0;

function parse() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const name = pages[parts[0]] ? parts[0] : 'fleet';
  return {name, args: parts.slice(1)};
}

async function route(focus) {
  if (location.hash && !location.hash.startsWith('#/')) return; // in-page anchors
  const {name, args} = parse();
  const mine = ++seq;
  if (unmount) { try { unmount(); } catch { /* ignore */ } unmount = null; }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === name || (name === 'device' && a.dataset.nav === 'fleet')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${titles[name]}${args[0] ? ' ' + args[0] : ''} · Outpost`;
  main.replaceChildren(h('p', {class: 'muted'}, 'Loading…'));
  try {
    const mod = await pages[name]();
    if (mine !== seq) return;
    const view = h('div', {class: `page page-${name}`});
    main.replaceChildren(view);
    unmount = (await mod.mount(view, args)) || null;
  } catch (err) {
    if (mine === seq) main.replaceChildren(errorEl(err));
  }
  if (focus && mine === seq) main.focus({preventScroll: false});
  alertBadge();
}

document.getElementById('skip')?.addEventListener('click', (e) => { e.preventDefault(); main.focus(); });
window.addEventListener('hashchange', () => route(true));
events.start();
setInterval(() => { if (!document.hidden) alertBadge(); }, 30000);
route(false);
