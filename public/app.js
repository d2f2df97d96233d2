// Bandwidth Probe status page: ES modules, no build step; every URL is relative so the page works under
// Home Assistant ingress's prefix. Text from the server goes into the DOM as text, never as HTML.
import { api, state } from './api.js';
import { renderHeader, renderNow } from './cards.js';
import { charts } from './charts.js';
import { $, el } from './dom.js';
import { phaseText, rate } from './format.js';
import { renderHistory } from './history.js';
import { live, liveStart } from './live.js';
import { renderServed } from './served.js';
import { renderSelfTest } from './setup.js';

// Read-only handle on the charts for the page test (their axes are drawn on a canvas) and devtools.
window.bandwidthProbe = { charts };

async function refresh() {
  state.status = await api('api/status');
  renderHeader();
  renderSelfTest();
  renderNow(runNow);
}

async function runNow(target) {
  try {
    await api('api/run', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(target ? { target } : {}),
    });
  } catch (err) {
    alert(`Could not start the run: ${err.message}`);
  }
  await refresh();
}

function connectEvents() {
  const es = new EventSource('api/events');
  es.addEventListener('hello', (m) => {
    const h = JSON.parse(m.data);
    if (h.running) {
      liveStart(h.running.target);
      $('#live-phase').textContent = phaseText(h.running.phase);
    }
  });
  es.addEventListener('queued', () => refresh());
  es.addEventListener('postponed', () => refresh());
  es.addEventListener('started', (m) => {
    liveStart(JSON.parse(m.data).target);
    $('#live-phase').textContent = 'starting';
    refresh();
  });
  es.addEventListener('phase', (m) => {
    if ($('#live').hidden) liveStart(JSON.parse(m.data).target);
    $('#live-phase').textContent = phaseText(JSON.parse(m.data).phase);
  });
  es.addEventListener('progress', (m) => {
    const p = JSON.parse(m.data);
    if ($('#live').hidden) liveStart(p.target);
    const r = rate(p.mbps);
    $('#live-mbps').textContent = r.v;
    $('#live-unit').textContent = r.unit;
    $('#live-dir').textContent = p.direction;
    live.xs.push((Date.now() - live.t0) / 1000);
    live.ys.push(p.mbps);
    if (live.u) live.u.setData([live.xs, live.ys]);
  });
  es.addEventListener('finished', async () => {
    $('#live').hidden = true;
    await refresh();
    await renderHistory();
  });
  es.addEventListener('inbound', async () => {
    await refresh();
    await renderServed();
  });
}

$('#run-all').addEventListener('click', () => runNow(null));
$('#h-target').addEventListener('change', () => renderHistory());
for (const b of document.querySelectorAll('.seg button')) {
  b.addEventListener('click', () => {
    state.range = Number(b.dataset.days);
    for (const x of document.querySelectorAll('.seg button')) x.classList.toggle('on', x === b);
    renderHistory();
    renderServed();
  });
}
// Charts follow the width; a height change (a full-page screenshot, a phone's toolbar) redraws nothing.
let resizeTimer;
let lastWidth = window.innerWidth;
window.addEventListener('resize', () => {
  if (window.innerWidth === lastWidth) return;
  lastWidth = window.innerWidth;
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    renderHistory();
    renderServed();
  }, 200);
});
setInterval(() => state.status && renderNow(runNow), 30_000);
refresh()
  .then(renderHistory)
  .then(renderServed)
  .then(connectEvents)
  .catch((err) => {
    $('#now').replaceChildren(el('div', { class: 'panel err' }, `The probe did not answer: ${err.message}`));
  });
