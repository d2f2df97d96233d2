// One run's detail (a dialog): every figure, the latency table, its per-second chart and streams.
import { api, targetName } from './api.js';
import { chart, line, scaleFor } from './charts.js';
import { $, css, el } from './dom.js';
import {
  DIRECTION_TEXT,
  END_TEXT,
  FLAG_TEXT,
  fmt,
  hostText,
  ms,
  plural,
  rateText,
  stampFmt,
  TRIGGER_TEXT,
} from './format.js';
import { protocol } from './registry.js';

export async function showRun(id) {
  const r = await api(`api/runs/${id}`);
  const d = $('#detail');
  const noticeOf = (run) => {
    const n = protocol(run.target.kind)?.notice?.(run);
    return n
      ? el(
          'span',
          {},
          `${n.text} `,
          el('a', { href: n.href, target: '_blank', rel: 'noopener noreferrer' }, n.link),
        )
      : null;
  };
  const row = (k, v) =>
    v === undefined || v === null || v === '' ? null : [el('dt', {}, k), el('dd', {}, v)];
  const ib = r.inbound;
  $('#detail-body').replaceChildren(
    el(
      'h2',
      {},
      `${ib ? `Served to ${hostText(ib.peer)}` : targetName(r.target.id)} · ${stampFmt.format(new Date(r.started_at))}`,
    ),
    el(
      'dl',
      {},
      row(
        'Result',
        r.status === 'ok' ? 'ok' : `${r.status}: ${r.error ? `${r.error.code} — ${r.error.message}` : ''}`,
      ),
      row('Started', new Date(r.started_at).toLocaleString()),
      row('Started by', ib ? null : TRIGGER_TEXT[r.trigger] || r.trigger),
      row(
        'Server',
        ib
          ? null
          : `${r.server.name ? `${r.server.name} · ` : ''}${hostText(r.server.host)}:${r.server.port}${r.server.transport ? ` (${r.server.transport})` : ''}`,
      ),
      row('Peer', ib ? `${hostText(ib.peer)} port ${ib.peer_port}, to our port ${ib.local_port}` : null),
      row('User', ib?.user),
      row(
        'Protocol',
        ib
          ? `${protocol(r.target.kind)?.short ?? r.target.kind} ${ib.protocol}, ${DIRECTION_TEXT[ib.direction] || ib.direction}, ${plural(ib.connections, 'connection', 'connections')}`
          : null,
      ),
      row(
        'Moved',
        ib
          ? `${fmt(ib.bytes_sent / 1e6)} MB sent to the peer, ${fmt(ib.bytes_received / 1e6)} MB received, in ${fmt(ib.duration_ms / 1000)} s${ib.end !== 'done' ? ` (${END_TEXT[ib.end] || ib.end})` : ''}`
          : null,
      ),
      row(
        'Lost',
        ib?.lost_packets !== undefined && r.upload?.udp
          ? `${ib.lost_packets} of the peer's datagrams (${fmt(r.upload.udp.loss_percent, 2)} %)`
          : null,
      ),
      row('Engine', r.engine === 'native' ? 'native loop' : 'JavaScript'),
      row('Data policy', noticeOf(r)),
      row('TLS', r.server.tls ? `${r.server.tls.version}, ${r.server.tls.cipher}` : null),
      row(
        'Download',
        r.download
          ? `${rateText(r.download.mbps)}, ${plural(r.download.streams, 'stream', 'streams')}, timed by the ${r.download.timing}`
          : null,
      ),
      row(
        'Upload',
        r.upload
          ? `${rateText(r.upload.mbps)}, ${plural(r.upload.streams, 'stream', 'streams')}, timed by the ${r.upload.timing}`
          : null,
      ),
      row(
        'Ping',
        r.ping
          ? `median ${ms(r.ping.median_ms)} ms (min ${ms(r.ping.min_ms)}, p95 ${ms(r.ping.p95_ms)}${r.ping.stddev_ms !== undefined ? `, stddev ${ms(r.ping.stddev_ms)}` : ''}, ${plural(r.ping.count, 'ping', 'pings')})`
          : null,
      ),
      row('Latency', latencyTable(r.latency)),
      row('Bufferbloat', bloatText(r.latency)),
      row(
        'UDP',
        r.download?.udp
          ? `${r.download.udp.lost} of ${r.download.udp.packets + r.download.udp.lost} lost (${fmt(r.download.udp.loss_percent, 2)} %), jitter ${ms(r.download.udp.jitter_ms)} ms`
          : null,
      ),
      row(
        'CPU',
        [
          r.cpu.machine_percent !== undefined ? `machine ${r.cpu.machine_percent} %` : '',
          r.cpu.local_percent !== undefined && ib ? `ours ${r.cpu.local_percent} %` : '',
          r.cpu.remote_percent !== undefined ? `${ib ? 'peer' : 'server'} ${r.cpu.remote_percent} %` : '',
        ]
          .filter(Boolean)
          .join(', '),
      ),
      row('Before the run', r.pre ? (r.pre.busy ? `busy: ${r.pre.reasons.join('; ')}` : 'line quiet') : null),
      row('Flags', r.flags.length ? r.flags.map((f) => (FLAG_TEXT[f] || [f])[0]).join(', ') : null),
    ),
  );
  // Each direction against its own times (seconds into that direction), joined on one x axis.
  const dir = (x) => (x?.series.length ? x.series : null);
  const down = dir(r.download);
  const up = dir(r.upload);
  const sc = scaleFor([...(down || []), ...(up || [])].map((p) => p.mbps));
  const series = [];
  const tables = [];
  if (down) {
    series.push(line(`download ${sc.unit}`, css('--down'), { fill: true }));
    tables.push([down.map((p) => p.t_ms / 1000), down.map((p) => p.mbps / sc.div)]);
  }
  if (up) {
    series.push(line(`upload ${sc.unit}`, css('--up'), { fill: true }));
    tables.push([up.map((p) => p.t_ms / 1000), up.map((p) => p.mbps / sc.div)]);
  }
  d.showModal();
  if (series.length) {
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    chart('detail-chart', series, data, { time: false, height: 160, yLabel: sc.unit });
  } else $('#detail-chart').replaceChildren();
  const streams = [
    ...(r.download?.per_stream || []).map((s) => ['down', s]),
    ...(r.upload?.per_stream || []).map((s) => ['up', s]),
  ];
  $('#detail-streams').replaceChildren(
    streams.length
      ? el(
          'table',
          {},
          el(
            'thead',
            {},
            el(
              'tr',
              {},
              el('th', {}, 'Stream'),
              el('th', { class: 'num' }, 'Mbit/s'),
              el('th', { class: 'num' }, 'MB'),
            ),
          ),
          el(
            'tbody',
            {},
            streams.map(([k, s]) =>
              el(
                'tr',
                {},
                el('td', {}, `${k} ${s.stream}`),
                el('td', { class: 'num' }, fmt(s.mbps, s.mbps >= 100 ? 0 : 1)),
                el('td', { class: 'num' }, fmt(s.bytes / 1e6)),
              ),
            ),
          ),
        )
      : '',
  );
}

/** Idle, download and upload side by side: median, p90, p99, min–max and how many round trips. */
export function latencyTable(l) {
  if (!l) return null;
  const cols = [
    ['Idle', l.idle],
    ['Download', l.download],
    ['Upload', l.upload],
    ['Both ways', l.both],
  ].filter(([, v]) => v);
  if (!cols.length) return l.unavailable || null;
  const rowOf = (label, f) =>
    el('tr', {}, el('th', { scope: 'row' }, label), ...cols.map(([, v]) => el('td', { class: 'num' }, f(v))));
  const METHOD = {
    tcp_connect: 'TCP connect round trips',
    rmbt_ping: 'PING round trips on a connection of their own',
    tcp_info_rtt: "the server's TCP round-trip figure",
  };
  const method = [...new Set(cols.map(([, v]) => METHOD[v.method] || v.method))].join(' and ');
  return el(
    'div',
    {},
    el(
      'table',
      { class: 'latency' },
      el('thead', {}, el('tr', {}, el('th', {}, 'ms'), ...cols.map(([k]) => el('th', { class: 'num' }, k)))),
      el(
        'tbody',
        {},
        rowOf('median', (v) => ms(v.median_ms)),
        rowOf('p90', (v) => ms(v.p90_ms)),
        rowOf('p99', (v) => ms(v.p99_ms)),
        rowOf('min–max', (v) => `${ms(v.min_ms)}–${ms(v.max_ms)}`),
        rowOf('round trips', (v) => String(v.count)),
        cols.some(([, v]) => v.connect)
          ? rowOf('new connection', (v) => (v.connect ? ms(v.connect.median_ms) : '–'))
          : null,
      ),
    ),
    el('small', {}, `${method}${l.unavailable ? `; ${l.unavailable}` : ''}`),
  );
}
export function bloatText(l) {
  if (!l?.grade) return null;
  const b = l.bufferbloat_ms || {};
  const parts = [
    b.download !== undefined ? `+${ms(b.download)} ms download` : '',
    b.upload !== undefined ? `+${ms(b.upload)} ms upload` : '',
    b.both !== undefined ? `+${ms(b.both)} ms both ways` : '',
  ].filter(Boolean);
  return `grade ${l.grade} (${parts.join(', ')}), responsiveness ${l.responsiveness_rpm ?? '–'} RPM`;
}
