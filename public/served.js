// Served: the tests other clients ran against our servers, with each server's ports and counters.
import { api, state } from './api.js';
import { chart, line, scaled, scaleFor } from './charts.js';
import { showRun } from './detail.js';
import { $, css, el } from './dom.js';
import { DIRECTION_TEXT, END_TEXT, fmt, hostText, rateText, when } from './format.js';
import { protocol, protocols } from './registry.js';

export async function renderServed() {
  const box = $('#served');
  const sv = state.status?.served;
  box.hidden = !sv;
  if (!sv) return;
  $('#served-servers').replaceChildren(
    protocols
      .filter((p) => sv[p.type] && p.served)
      .map((p) => p.served(sv[p.type]))
      .join(' · '),
    ...(sv.errors || []).map((e) =>
      el(
        'span',
        { class: 'err', role: 'alert' },
        ` The ${e.server} server did not start: ${e.code} — ${e.message}`,
      ),
    ),
  );
  const nowS = Date.now() / 1000;
  const since = new Date((nowS - state.range * 86400) * 1000).toISOString();
  const { runs } = await api(`api/runs?${new URLSearchParams({ since, limit: '10000', scope: 'inbound' })}`);
  const exp = new URLSearchParams({ since, scope: 'inbound' });
  $('#served-csv').href = `api/export.csv?${exp}`;
  $('#served-json').href = `api/export.json?${exp}`;
  const asc = runs.slice().reverse();
  const sc = scaleFor(asc.flatMap((r) => [r.download_mbps, r.upload_mbps]));
  chart(
    'chart-served',
    [
      line(`peer download ${sc.unit}`, css('--down'), { points: true }),
      line(`peer upload ${sc.unit}`, css('--up'), { points: true }),
    ],
    [
      asc.map((r) => Date.parse(r.finished_at) / 1000),
      scaled(
        asc.map((r) => r.download_mbps ?? null),
        sc,
      ),
      scaled(
        asc.map((r) => r.upload_mbps ?? null),
        sc,
      ),
    ],
    { yLabel: sc.unit, height: 140, x: { min: nowS - state.range * 86400, max: nowS } },
  );
  const open = (id) => ({
    tabindex: 0,
    onclick: () => showRun(id),
    onkeydown: (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        showRun(id);
      }
    },
  });
  $('#served-runs tbody').replaceChildren(
    ...runs.slice(0, 50).map((r) => {
      const i = r.inbound || {};
      const proto = `${protocol(r.kind)?.short ?? r.kind} ${i.protocol || ''}`;
      return el(
        'tr',
        {
          'data-run': r.id,
          'aria-label': `Test from ${hostText(i.peer)} at ${when(r.finished_at)}: open details`,
          ...open(r.id),
        },
        el('td', {}, when(r.finished_at)),
        el('td', { title: i.user ? `user ${i.user}` : '' }, hostText(i.peer || r.server)),
        el('td', {}, proto),
        el('td', {}, DIRECTION_TEXT[i.direction] || i.direction || ''),
        el('td', { class: 'num' }, rateText(r.download_mbps)),
        el('td', { class: 'num' }, rateText(r.upload_mbps)),
        el('td', { class: 'num' }, fmt(((i.bytes_sent || 0) + (i.bytes_received || 0)) / 1e6)),
        el('td', { class: 'num' }, `${fmt((i.duration_ms || 0) / 1000)} s`),
        el('td', { class: 'num' }, i.lost_packets ?? '–'),
        el(
          'td',
          { class: 'num' },
          i.remote_cpu_percent === null || i.remote_cpu_percent === undefined
            ? '–'
            : `${i.remote_cpu_percent} %`,
        ),
        el(
          'td',
          { class: `status-${r.status}`, title: r.error || '' },
          r.status === 'ok'
            ? i.end && i.end !== 'done'
              ? END_TEXT[i.end] || i.end
              : ''
            : `${r.status} ${r.error_code || ''}`,
        ),
      );
    }),
  );
  if (!runs.length)
    $('#served-runs tbody').append(
      el('tr', {}, el('td', { colspan: 11 }, 'No client has tested against this probe in this range.')),
    );
}
