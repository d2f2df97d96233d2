// The cards of the targets (the latest figures of each) and the header.
import { state } from './api.js';
import { $, el } from './dom.js';
import { flagPills, fmt, ms, rate, rel, when } from './format.js';
import { protocol } from './registry.js';

export function renderNow(runNow) {
  const box = $('#now');
  box.replaceChildren(
    ...state.status.targets.map((t) => {
      const last = t.last;
      const running = state.status.running && state.status.running.target === t.id;
      const queued = state.status.queued.includes(t.id);
      const badge = running
        ? el('span', { class: 'pill warn' }, 'running')
        : last
          ? el(
              'span',
              { class: `pill ${last.status === 'ok' ? 'ok' : last.status === 'skipped' ? 'warn' : 'bad'}` },
              last.status,
            )
          : el('span', { class: 'pill' }, 'no runs yet');
      return el(
        'article',
        { class: 'card', 'data-target': t.id },
        el(
          'div',
          { class: 'top' },
          el('h2', {}, t.name),
          badge,
          el(
            'button',
            {
              type: 'button',
              class: 'ghost run-now',
              disabled: running || queued,
              onclick: () => runNow(t.id),
            },
            queued ? 'Queued' : 'Run now',
          ),
        ),
        el(
          'div',
          { class: 'figures' },
          figure('down', rate(last?.download_mbps), 'down'),
          figure('up', rate(last?.upload_mbps), 'up'),
          // a protocol without pings: no figure that would stay "–" forever
          protocol(t.type)?.ping === false
            ? null
            : figure('ping', { v: ms(last?.ping_ms), unit: 'ms' }, 'ping'),
        ),
        last && (last.jitter_ms !== null || last.loss_percent !== null)
          ? el(
              'div',
              { class: 'meta' },
              last.jitter_ms !== null ? el('span', {}, `jitter ${ms(last.jitter_ms)} ms`) : null,
              last.loss_percent !== null ? el('span', {}, `loss ${fmt(last.loss_percent, 2)} %`) : null,
            )
          : null,
        last &&
          (last.download_latency_ms !== null || last.upload_latency_ms !== null || last.bufferbloat_grade)
          ? el(
              'div',
              { class: 'meta loaded' },
              last.download_latency_ms !== null || last.upload_latency_ms !== null
                ? el(
                    'span',
                    {},
                    `under load ${[
                      last.download_latency_ms !== null ? `↓ ${ms(last.download_latency_ms)} ms` : '',
                      last.upload_latency_ms !== null ? `↑ ${ms(last.upload_latency_ms)} ms` : '',
                    ]
                      .filter(Boolean)
                      .join(' ')}`,
                  )
                : null,
              last.bufferbloat_grade
                ? el(
                    'span',
                    { class: 'grade', title: 'Bufferbloat grade (DSLReports bounds)' },
                    `grade ${last.bufferbloat_grade}`,
                  )
                : null,
              last.responsiveness_rpm !== null ? el('span', {}, `${last.responsiveness_rpm} RPM`) : null,
            )
          : null,
        el('div', { class: 'flags' }, flagPills(last?.flags)),
        last && last.status !== 'ok'
          ? el('div', { class: 'err' }, `${last.error_code || ''} ${last.error || ''}`.trim())
          : null,
        el(
          'div',
          { class: 'meta' },
          el('span', {}, `last ${when(last?.finished_at)}`),
          el('span', {}, `next ${t.enabled ? rel(t.next_run) : 'off (disabled)'}`),
          el('span', { class: 'hide-narrow' }, `${protocol(t.type)?.label ?? t.type} · ${t.schedule}`),
        ),
      );
    }),
  );
}

export const figure = (cls, r, label) =>
  el('div', { class: `fig ${cls}` }, el('b', {}, r.v), el('span', {}, `${r.unit} ${label}`));

export function renderHeader() {
  const m = state.status.mqtt;
  const pill = $('#mqtt');
  pill.className = `pill ${m ? (m.connected ? 'ok' : 'bad') : ''}`;
  pill.textContent = m
    ? m.connected
      ? 'MQTT connected'
      : `MQTT: ${m.last_error ? m.last_error.code : 'offline'}`
    : state.status.self_test && !state.status.self_test_published
      ? 'MQTT: self-test not sent'
      : 'MQTT off';
  pill.title = m?.last_error
    ? m.last_error.message
    : m
      ? m.broker
      : state.status.self_test && !state.status.self_test_published
        ? 'the loopback self-test is not published to Home Assistant (service.publish_self_test)'
        : 'no broker configured';
  const se = state.status.store_error;
  const banner = $('#store-error');
  banner.hidden = !se;
  if (se)
    banner.textContent =
      se.code === 'BP_ERR_STORE_CORRUPT'
        ? `The history database is damaged (found ${when(se.at)}): ${se.message}`
        : `History not saved since ${when(se.at)}: ${se.code} — ${se.message}. ${se.lost_runs} run(s) shown live but not kept; runs are stored again once there is space.`;
  $('#run-all').disabled =
    Boolean(state.status.running) && state.status.queued.length + 1 >= state.status.targets.length;
  $('#footer').textContent =
    `bandwidth-probe ${state.status.version} · ${state.status.device_id} · engine ${state.status.engine}`;
  const sel = $('#h-target');
  if (sel.options.length !== state.status.targets.length + 1) {
    sel.replaceChildren(
      el('option', { value: '' }, 'All targets'),
      ...state.status.targets.map((t) => el('option', { value: t.id }, t.name)),
    );
  }
}
