// Bandwidth Probe status page. Plain browser JS, no build step; every URL is relative so the page works
// under Home Assistant ingress's prefix. Text from the server goes into the DOM as text, never as HTML.
(() => {
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs = {}, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') n.className = v;
      else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat())
      if (c !== null && c !== undefined) n.append(c instanceof Node ? c : String(c));
    return n;
  };
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const fmt = (v, digits = 1) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));
  const when = (iso) => {
    if (!iso) return '–';
    const d = new Date(iso);
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay
      ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
  };
  const rel = (iso) => {
    if (!iso) return 'not scheduled';
    const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (s <= 0) return 'due now';
    if (s < 90) return `in ${s} s`;
    if (s < 5400) return `in ${Math.round(s / 60)} min`;
    return `in ${(s / 3600).toFixed(1)} h`;
  };
  const FLAG_TEXT = {
    below_threshold: ['below threshold', 'bad'],
    link_busy: ['line was busy', 'warn'],
    cpu_limited: ['probe CPU-limited', 'warn'],
    single_thread_fallback: ['one connection only', 'warn'],
    udp_ramp: ['UDP rate still rising', 'warn'],
  };
  const flagPills = (flags) =>
    (flags || []).map((f) =>
      el('span', { class: `pill ${(FLAG_TEXT[f] || [f, ''])[1]}` }, (FLAG_TEXT[f] || [f])[0]),
    );

  async function api(path, opts) {
    const r = await fetch(path, { headers: { accept: 'application/json' }, ...opts });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.message || `HTTP ${r.status}`);
    return body;
  }

  let status = null;
  let range = 1;

  // ---- now: one card per target ------------------------------------------------------------------
  function renderNow() {
    const box = $('#now');
    box.replaceChildren(
      ...status.targets.map((t) => {
        const last = t.last;
        const running = status.running && status.running.target === t.id;
        const queued = status.queued.includes(t.id);
        const badge = running
          ? el('span', { class: 'pill warn' }, 'running')
          : last
            ? el('span', { class: `pill ${last.status === 'ok' ? 'ok' : 'bad'}` }, last.status)
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
            el(
              'div',
              { class: 'fig down' },
              el('b', {}, fmt(last?.download_mbps)),
              el('span', {}, 'Mbit/s down'),
            ),
            el('div', { class: 'fig up' }, el('b', {}, fmt(last?.upload_mbps)), el('span', {}, 'Mbit/s up')),
            el('div', { class: 'fig ping' }, el('b', {}, fmt(last?.ping_ms)), el('span', {}, 'ms ping')),
          ),
          last && (last.jitter_ms !== null || last.loss_percent !== null)
            ? el(
                'div',
                { class: 'meta' },
                last.jitter_ms !== null ? el('span', {}, `jitter ${fmt(last.jitter_ms, 2)} ms`) : null,
                last.loss_percent !== null ? el('span', {}, `loss ${fmt(last.loss_percent, 2)} %`) : null,
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
            el('span', { class: 'hide-narrow' }, `${t.type.toUpperCase()} · ${t.schedule}`),
          ),
        );
      }),
    );
  }

  function renderHeader() {
    const m = status.mqtt;
    const pill = $('#mqtt');
    pill.className = `pill ${m ? (m.connected ? 'ok' : 'bad') : ''}`;
    pill.textContent = m
      ? m.connected
        ? 'MQTT connected'
        : `MQTT: ${m.last_error ? m.last_error.code : 'offline'}`
      : 'MQTT off';
    pill.title = m?.last_error ? m.last_error.message : m ? m.broker : 'no broker configured';
    const se = status.store_error;
    const banner = $('#store-error');
    banner.hidden = !se;
    if (se)
      banner.textContent =
        se.code === 'BP_ERR_STORE_CORRUPT'
          ? `The history database is damaged (found ${when(se.at)}): ${se.message}`
          : `History not saved since ${when(se.at)}: ${se.code} — ${se.message}. ${se.lost_runs} run(s) shown live but not kept; runs are stored again once there is space.`;
    $('#run-all').disabled = Boolean(status.running) && status.queued.length + 1 >= status.targets.length;
    $('#footer').textContent =
      `bandwidth-probe ${status.version} · ${status.device_id} · engine ${status.engine}`;
    const sel = $('#h-target');
    if (sel.options.length !== status.targets.length + 1) {
      sel.replaceChildren(
        el('option', { value: '' }, 'All targets'),
        ...status.targets.map((t) => el('option', { value: t.id }, t.name)),
      );
    }
  }

  async function refresh() {
    status = await api('api/status');
    renderHeader();
    renderNow();
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

  // ---- charts ---------------------------------------------------------------------------------------
  const charts = new Map();
  function chart(id, series, data, opts = {}) {
    const box = document.getElementById(id);
    const old = charts.get(id);
    if (old) old.destroy();
    const width = Math.max(260, box.clientWidth || 600);
    const u = new uPlot(
      {
        width,
        height: opts.height || 180,
        series: [{}, ...series],
        axes: [
          { stroke: css('--muted'), grid: { stroke: css('--line') }, ticks: { stroke: css('--line') } },
          {
            stroke: css('--muted'),
            grid: { stroke: css('--line') },
            ticks: { stroke: css('--line') },
            size: 56,
            // 12,500 → 12.5k: long figures must not be clipped by the axis
            values: (_u, vals) =>
              vals.map((v) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(2)}`)),
            label: opts.yLabel,
            labelSize: 16,
          },
        ],
        scales: { x: { time: opts.time !== false } },
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      },
      data,
      box,
    );
    charts.set(id, u);
    return u;
  }
  const line = (label, color, fill) => ({
    label,
    stroke: color,
    width: 2,
    fill: fill ? `${color}22` : undefined,
    spanGaps: false,
    points: { size: 4 },
  });

  async function renderHistory() {
    const target = $('#h-target').value;
    const since = new Date(Date.now() - range * 86400e3).toISOString();
    const q = new URLSearchParams({ since, limit: '10000' });
    if (target) q.set('target', target);
    const { runs } = await api(`api/runs?${q}`);
    const exp = new URLSearchParams({ since });
    if (target) exp.set('target', target);
    $('#export-csv').href = `api/export.csv?${exp}`;
    $('#export-json').href = `api/export.json?${exp}`;
    const asc = runs.slice().reverse();
    const xs = asc.map((r) => Date.parse(r.finished_at) / 1000);
    chart(
      'chart-speed',
      [line('Download Mbit/s', css('--down'), true), line('Upload Mbit/s', css('--up'), true)],
      [xs, asc.map((r) => r.download_mbps), asc.map((r) => r.upload_mbps)],
      { yLabel: 'Mbit/s' },
    );
    chart(
      'chart-ping',
      [line('Ping ms', css('--ping')), line('Jitter ms', css('--muted'))],
      [xs, asc.map((r) => r.ping_ms), asc.map((r) => r.jitter_ms)],
      { yLabel: 'ms', height: 140 },
    );
    const names = new Map(status.targets.map((t) => [t.id, t.name]));
    $('#runs tbody').replaceChildren(
      ...runs
        .slice(0, 50)
        .map((r) =>
          el(
            'tr',
            { 'data-run': r.id, onclick: () => showRun(r.id) },
            el('td', {}, when(r.finished_at)),
            el('td', {}, names.get(r.target) || r.target),
            el(
              'td',
              { class: `status-${r.status}`, title: r.error || '' },
              r.status === 'ok' ? 'ok' : `${r.status} ${r.error_code || ''}`,
            ),
            el('td', { class: 'num' }, fmt(r.download_mbps)),
            el('td', { class: 'num' }, fmt(r.upload_mbps)),
            el('td', { class: 'num' }, fmt(r.ping_ms)),
            el('td', {}, flagPills(r.flags)),
          ),
        ),
    );
    if (!runs.length)
      $('#runs tbody').append(el('tr', {}, el('td', { colspan: 7 }, 'No runs in this range yet.')));
  }

  async function showRun(id) {
    const r = await api(`api/runs/${id}`);
    const d = $('#detail');
    const row = (k, v) =>
      v === undefined || v === null || v === '' ? null : [el('dt', {}, k), el('dd', {}, v)];
    $('#detail-body').replaceChildren(
      el('h2', {}, `Run ${r.id} · ${r.target.id}`),
      el(
        'dl',
        {},
        row(
          'Result',
          r.status === 'ok' ? 'ok' : `${r.status}: ${r.error ? `${r.error.code} — ${r.error.message}` : ''}`,
        ),
        row('Started', new Date(r.started_at).toLocaleString()),
        row(
          'Server',
          `${r.server.name ? `${r.server.name} · ` : ''}${r.server.host}:${r.server.port}${r.server.transport ? ` (${r.server.transport})` : ''}`,
        ),
        row('Engine', r.engine),
        row(
          'Download',
          r.download
            ? `${fmt(r.download.mbps)} Mbit/s, ${r.download.streams} streams, timed by the ${r.download.timing}`
            : null,
        ),
        row(
          'Upload',
          r.upload
            ? `${fmt(r.upload.mbps)} Mbit/s, ${r.upload.streams} streams, timed by the ${r.upload.timing}`
            : null,
        ),
        row(
          'Ping',
          r.ping
            ? `median ${fmt(r.ping.median_ms, 2)} ms (min ${fmt(r.ping.min_ms, 2)}, p95 ${fmt(r.ping.p95_ms, 2)}, ${r.ping.count} pings)`
            : null,
        ),
        row(
          'UDP',
          r.download?.udp
            ? `${r.download.udp.lost} of ${r.download.udp.packets + r.download.udp.lost} lost (${fmt(r.download.udp.loss_percent, 2)} %), jitter ${fmt(r.download.udp.jitter_ms, 2)} ms`
            : null,
        ),
        row(
          'CPU',
          [
            r.cpu.machine_percent !== undefined ? `machine ${r.cpu.machine_percent} %` : '',
            r.cpu.remote_percent !== undefined ? `server ${r.cpu.remote_percent} %` : '',
          ]
            .filter(Boolean)
            .join(', '),
        ),
        row(
          'Before the run',
          r.pre ? (r.pre.busy ? `busy: ${r.pre.reasons.join('; ')}` : 'line quiet') : null,
        ),
        row('Flags', r.flags.length ? r.flags.join(', ') : null),
      ),
    );
    const series = [];
    const data = [];
    const dir = (x) => (x?.series.length ? x.series : null);
    const down = dir(r.download);
    const up = dir(r.upload);
    const xs = (down || up || []).map((p) => p.t_ms / 1000);
    if (down) {
      series.push(line('Download Mbit/s', css('--down'), true));
      data.push(down.map((p) => p.mbps));
    }
    if (up) {
      series.push(line('Upload Mbit/s', css('--up'), true));
      data.push(xs.map((_, i) => (up[i] ? up[i].mbps : null)));
    }
    d.showModal();
    if (series.length)
      chart('detail-chart', series, [xs, ...data], { time: false, height: 160, yLabel: 'Mbit/s' });
    else $('#detail-chart').replaceChildren();
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
                  el('td', { class: 'num' }, fmt(s.mbps)),
                  el('td', { class: 'num' }, fmt(s.bytes / 1e6)),
                ),
              ),
            ),
          )
        : '',
    );
  }

  // ---- live progress over Server-Sent Events ---------------------------------------------------------
  const live = { xs: [], ys: [], t0: 0, u: null };
  function liveStart(target) {
    $('#live').hidden = false;
    const t = status?.targets.find((x) => x.id === target);
    $('#live-target').textContent = t ? t.name : target;
    $('#live-mbps').textContent = '–';
    $('#live-dir').textContent = '';
    live.xs = [];
    live.ys = [];
    live.t0 = Date.now();
    live.u = chart('live-chart', [line('Mbit/s', css('--accent'), true)], [[], []], {
      time: false,
      height: 140,
    });
  }
  function connectEvents() {
    const es = new EventSource('api/events');
    es.addEventListener('hello', (m) => {
      const h = JSON.parse(m.data);
      if (h.running) {
        liveStart(h.running.target);
        $('#live-phase').textContent = h.running.phase;
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
      $('#live-phase').textContent = JSON.parse(m.data).phase;
    });
    es.addEventListener('progress', (m) => {
      const p = JSON.parse(m.data);
      if ($('#live').hidden) liveStart(p.target);
      $('#live-mbps').textContent = fmt(p.mbps);
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
  }

  // ---- wiring ---------------------------------------------------------------------------------------
  $('#run-all').addEventListener('click', () => runNow(null));
  $('#h-target').addEventListener('change', () => renderHistory());
  for (const b of document.querySelectorAll('.seg button')) {
    b.addEventListener('click', () => {
      range = Number(b.dataset.days);
      for (const x of document.querySelectorAll('.seg button')) x.classList.toggle('on', x === b);
      renderHistory();
    });
  }
  let resizeTimer;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => renderHistory(), 200);
  });
  setInterval(() => status && renderNow(), 30_000);
  refresh()
    .then(renderHistory)
    .then(connectEvents)
    .catch((err) => {
      $('#now').replaceChildren(
        el('div', { class: 'panel err' }, `The probe did not answer: ${err.message}`),
      );
    });
})();
