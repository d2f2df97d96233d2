// The history: speed and latency charts over the chosen range, and the table of the last runs.
import { api, state } from './api.js';
import { chart, charts, line, PALETTE, scaled, scaleFor } from './charts.js';
import { showRun } from './detail.js';
import { $, css, el } from './dom.js';
import { flagPills, ms, rateText, when } from './format.js';

export async function renderHistory() {
  const target = $('#h-target').value;
  const nowS = Date.now() / 1000;
  const since = new Date((nowS - state.range * 86400) * 1000).toISOString();
  // the tests others ran against our servers are in Served, not here
  const q = new URLSearchParams({ since, limit: '10000', scope: 'measured' });
  if (target) q.set('target', target);
  const { runs } = await api(`api/runs?${q}`);
  const exp = new URLSearchParams({ since, scope: 'measured' });
  if (target) exp.set('target', target);
  $('#export-csv').href = `api/export.csv?${exp}`;
  $('#export-json').href = `api/export.json?${exp}`;
  const asc = runs.slice().reverse();
  const xs = asc.map((r) => Date.parse(r.finished_at) / 1000);
  const x = { min: nowS - state.range * 86400, max: nowS };
  const sc = scaleFor(asc.flatMap((r) => [r.download_mbps, r.upload_mbps]));
  // One series per target and direction: lines never join figures of different targets.
  const ids = target ? [target] : [...new Set(asc.map((r) => r.target))];
  const names = new Map(state.status.targets.map((t) => [t.id, t.name]));
  const speedSeries = [];
  const speedData = [xs];
  const pingSeries = [];
  const pingData = [xs];
  ids.forEach((id, k) => {
    const mine = (key) => asc.map((r) => (r.target === id ? (r[key] ?? null) : undefined));
    const name = ids.length > 1 ? `${names.get(id) || id} ` : '';
    const c = ids.length > 1 ? css(PALETTE[k % PALETTE.length]) : null;
    speedSeries.push(line(`${name}download ${sc.unit}`, c || css('--down'), { fill: ids.length === 1 }));
    speedData.push(scaled(mine('download_mbps'), sc));
    speedSeries.push(
      line(`${name}upload ${sc.unit}`, c || css('--up'), {
        fill: ids.length === 1,
        dash: c ? [6, 4] : undefined,
      }),
    );
    speedData.push(scaled(mine('upload_mbps'), sc));
    const pings = mine('ping_ms');
    if (pings.some((v) => typeof v === 'number')) {
      pingSeries.push(line(`${name}ping ms`, c || css('--ping')));
      pingData.push(pings);
      if (ids.length === 1) {
        pingSeries.push(line('jitter ms', css('--muted')));
        pingData.push(mine('jitter_ms'));
      }
    }
    // latency under load: the median round trip while each direction filled the line
    for (const [key, label, color, dash] of [
      ['download_latency_ms', 'download latency ms', '--down', [2, 3]],
      ['upload_latency_ms', 'upload latency ms', '--up', [8, 3]],
    ]) {
      const v = mine(key);
      if (!v.some((x) => typeof x === 'number')) continue;
      pingSeries.push(line(`${name}${label}`, c || css(color), { dash }));
      pingData.push(v);
    }
  });
  chart('chart-speed', speedSeries, speedData, { yLabel: sc.unit, x });
  if (pingSeries.length) chart('chart-ping', pingSeries, pingData, { yLabel: 'ms', height: 140, x });
  else {
    charts.get('chart-ping')?.destroy();
    charts.delete('chart-ping');
    $('#chart-ping').replaceChildren();
  }
  // A keyboard user's place survives the refresh after a run: the row with the same run id gets the
  // focus back.
  const focused = document.activeElement?.closest?.('#runs tr[data-run]')?.dataset.run;
  $('#runs tbody').replaceChildren(
    ...runs.slice(0, 50).map((r) =>
      el(
        'tr',
        {
          'data-run': r.id,
          // a row opens its detail by mouse and by keyboard (Tab to it, Enter or Space)
          tabindex: 0,
          'aria-label': `Run of ${names.get(r.target) || r.target} at ${when(r.finished_at)}: open details`,
          onclick: () => showRun(r.id),
          onkeydown: (e) => {
            if (e.key === 'Enter' || e.key === ' ') {
              e.preventDefault();
              showRun(r.id);
            }
          },
        },
        el('td', {}, when(r.finished_at)),
        el('td', {}, names.get(r.target) || r.target),
        el(
          'td',
          { class: `status-${r.status}`, title: r.error || '' },
          r.status === 'ok' ? 'ok' : `${r.status} ${r.error_code || ''}`,
        ),
        el('td', { class: 'num' }, rateText(r.download_mbps)),
        el('td', { class: 'num' }, rateText(r.upload_mbps)),
        el(
          'td',
          { class: 'num' },
          r.ping_ms === null || r.ping_ms === undefined ? '–' : `${ms(r.ping_ms)} ms`,
        ),
        el('td', {}, flagPills(r.flags)),
      ),
    ),
  );
  if (!runs.length)
    $('#runs tbody').append(el('tr', {}, el('td', { colspan: 7 }, 'No runs in this state.range yet.')));
  if (focused) document.querySelector(`#runs tr[data-run="${CSS.escape(focused)}"]`)?.focus();
}
