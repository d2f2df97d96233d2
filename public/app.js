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
  // Three significant figures, Gbit/s from 1000 Mbit/s on (issue 15). MQTT and the API stay in Mbit/s.
  const sig3 = (x) =>
    x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 0.01 || x === 0 ? x.toFixed(2) : '< 0.01';
  const rate = (mbps) =>
    mbps === null || mbps === undefined
      ? { v: '–', unit: 'Mbit/s' }
      : mbps >= 1000
        ? { v: sig3(mbps / 1000), unit: 'Gbit/s' }
        : { v: sig3(mbps), unit: 'Mbit/s' };
  const rateText = (mbps) => {
    const r = rate(mbps);
    return r.v === '–' ? '–' : `${r.v} ${r.unit}`;
  };
  // Loopback pings are tens of microseconds: below 1 ms two significant figures, never "0.0".
  const ms = (v) =>
    v === null || v === undefined
      ? '–'
      : v >= 100
        ? v.toFixed(0)
        : v >= 1
          ? v.toFixed(1)
          : v >= 0.001
            ? Number(v.toPrecision(2)).toString()
            : v === 0
              ? '0'
              : '< 0.001';
  // Dates and times in the browser's locale (24-hour where the locale is).
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  const stampFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
  const when = (iso) => {
    if (!iso) return '–';
    const d = new Date(iso);
    return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : stampFmt.format(d);
  };
  const rel = (iso) => {
    if (!iso) return 'not scheduled';
    const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (s <= 0) return 'due now';
    if (s < 90) return `in ${s} s`;
    if (s < 5400) return `in ${Math.round(s / 60)} min`;
    return `in ${(s / 3600).toFixed(1)} h`;
  };
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const targetName = (id) => status?.targets.find((t) => t.id === id)?.name || id;
  const TRIGGER_TEXT = {
    schedule: 'the schedule',
    start: 'the service start',
    manual: 'hand (Run now, CLI)',
    mqtt: 'Home Assistant (MQTT button)',
  };
  const PHASE_TEXT = {
    starting: 'starting',
    init: 'connecting',
    pretest_download: 'download pre-test',
    ping: 'ping',
    download: 'download',
    pretest_upload: 'upload pre-test',
    upload: 'upload',
    end: 'finishing',
    connect: 'connecting',
    auth: 'logging in',
    test: 'measuring',
  };
  const phaseText = (p) => PHASE_TEXT[p] || String(p).replace(/_/g, ' ');
  const FLAG_TEXT = {
    below_threshold: ['below threshold', 'bad'],
    link_busy: ['line was busy', 'warn'],
    cpu_limited: ['probe CPU-limited', 'warn'],
    single_thread_fallback: ['one connection only', 'warn'],
    udp_ramp: ['UDP rate still rising', 'warn'],
    latency_limited: ['latency inflated by the probe', 'warn'],
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
            figure('down', rate(last?.download_mbps), 'down'),
            figure('up', rate(last?.upload_mbps), 'up'),
            // btest has no ping: no figure that would stay "–" forever
            t.type === 'btest' ? null : figure('ping', { v: ms(last?.ping_ms), unit: 'ms' }, 'ping'),
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
            el(
              'span',
              { class: 'hide-narrow' },
              `${t.type === 'btest' ? 'MikroTik btest' : 'RMBT'} · ${t.schedule}`,
            ),
          ),
        );
      }),
    );
  }

  const figure = (cls, r, label) =>
    el('div', { class: `fig ${cls}` }, el('b', {}, r.v), el('span', {}, `${r.unit} ${label}`));

  // ---- first run: the built-in loopback self-test, and what to set up next ----------------------
  const NEXT_STEPS = [
    {
      title: 'RTR-Netztest (Austria)',
      terms: 'https://www.rtr.at/en/tk/rtrnetztesttermsofuse',
      snippet:
        'targets:\n  - id: isp\n    name: ISP\n    control_url: https://c01.netztest.at/RMBTControlServer\n    accept_terms: true',
    },
    {
      title: 'NetMetr (Czechia, CZ.NIC)',
      terms: 'https://netmetr.cz/cs/podminky.html',
      snippet:
        'targets:\n  - id: isp\n    name: ISP\n    control_url: https://control.netmetr.cz/RMBTControlServer\n    accept_terms: true',
    },
    {
      title: 'A MikroTik router (/tool bandwidth-server)',
      snippet:
        'targets:\n  - id: router\n    name: Router\n    type: btest\n    host: 192.168.88.1\n    user: admin\n    password: your-router-password\n    protocol: udp',
    },
  ];
  function renderSelfTest() {
    const box = $('#selftest');
    box.hidden = !status.self_test;
    if (!status.self_test || box.childElementCount) return;
    const copy = (text, btn) => {
      const done = () => {
        btn.textContent = 'Copied';
        setTimeout(() => {
          btn.textContent = 'Copy';
        }, 1500);
      };
      // The Clipboard API needs a secure context; plain-HTTP pages fall back to selecting the text.
      if (navigator.clipboard && window.isSecureContext)
        navigator.clipboard.writeText(text).then(done, () => {});
      else {
        const pre = btn.parentElement.querySelector('pre');
        const r = document.createRange();
        r.selectNodeContents(pre);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        btn.textContent = 'Selected: press Ctrl+C';
      }
    };
    box.replaceChildren(
      el('h2', {}, "Loopback self-test: shows this machine's speed, not your line"),
      el(
        'p',
        {},
        'No targets are set, so the probe measures its own built-in RMBT servers on this machine. ',
        status.self_test_published
          ? 'Its results are published to Home Assistant (service.publish_self_test is on).'
          : 'Its results are not sent to Home Assistant. ',
        "To measure your line, add a target in the add-on's Configuration tab (YAML mode) and restart it:",
      ),
      el(
        'ul',
        { class: 'steps' },
        NEXT_STEPS.map((n) => {
          const btn = el('button', { type: 'button', class: 'ghost copy' }, 'Copy');
          btn.addEventListener('click', () => copy(n.snippet, btn));
          return el(
            'li',
            {},
            el(
              'div',
              { class: 'step-head' },
              el('b', {}, n.title),
              n.terms
                ? el('a', { href: n.terms, target: '_blank', rel: 'noopener noreferrer' }, 'terms of use')
                : null,
              btn,
            ),
            el('pre', {}, n.snippet),
          );
        }),
      ),
      el(
        'p',
        { class: 'meta' },
        "Read an operator's terms before you schedule runs against it; the documentation lists the other public deployments and every target option.",
      ),
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
      : status.self_test && !status.self_test_published
        ? 'MQTT: self-test not sent'
        : 'MQTT off';
    pill.title = m?.last_error
      ? m.last_error.message
      : m
        ? m.broker
        : status.self_test && !status.self_test_published
          ? 'the loopback self-test is not published to Home Assistant (service.publish_self_test)'
          : 'no broker configured';
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
    renderSelfTest();
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
  // Read-only handle on the charts for the page test (their axes are drawn on a canvas) and devtools.
  window.bandwidthProbe = { charts };
  const axisStyle = () => ({
    stroke: css('--muted'),
    grid: { stroke: css('--line') },
    ticks: { stroke: css('--line') },
  });
  /**
   * One uPlot chart. opts.x: { min, max } fixes the x range (a time range: the chosen 24 h / 7 d / 30 d);
   * opts.unit scales the y values (Gbit/s); the y axis always starts at 0.
   */
  function chart(id, series, data, opts = {}) {
    const box = document.getElementById(id);
    const old = charts.get(id);
    if (old) old.destroy();
    const width = Math.max(260, box.clientWidth || 600);
    const time = opts.time !== false;
    const u = new uPlot(
      {
        width,
        height: opts.height || 180,
        series: [
          {
            label: time ? 'Time' : 'Seconds',
            value: (_u, v) =>
              v === null || v === undefined ? '–' : time ? stampFmt.format(v * 1000) : `${+v.toFixed(2)} s`,
          },
          ...series,
        ],
        axes: [
          {
            ...axisStyle(),
            space: 70,
            values: time
              ? (_u, splits, _ax, _space, incr) =>
                  splits.map((v) => {
                    const d = new Date(v * 1000);
                    // day ticks show the date; finer ticks the time, with the date at midnight
                    if (incr >= 86400) return dayFmt.format(d);
                    if (
                      d.getHours() === 0 &&
                      d.getMinutes() === 0 &&
                      opts.x &&
                      opts.x.max - opts.x.min > 86400
                    )
                      return `${timeFmt.format(d)}\n${dayFmt.format(d)}`;
                    return timeFmt.format(d);
                  })
              : (_u, splits) => splits.map((v) => `${+v.toFixed(1)} s`),
          },
          {
            ...axisStyle(),
            size: 56,
            values: (_u, vals) => vals.map((v) => `${+v.toFixed(2)}`),
            label: opts.yLabel,
            labelSize: 16,
          },
        ],
        scales: {
          x: {
            time,
            ...(opts.x ? { range: () => [opts.x.min, opts.x.max] } : {}),
          },
          // rates and times start at 0, so a change of a few percent does not look like a collapse
          y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.08 : 1] },
        },
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      },
      data,
      box,
    );
    charts.set(id, u);
    return u;
  }
  const line = (label, color, o = {}) => ({
    label,
    stroke: color,
    width: 2,
    fill: o.fill ? `${color}22` : undefined,
    dash: o.dash,
    // null is a failed run (a gap); undefined only means "another target's time" and is spanned
    spanGaps: false,
    // points only (the Served chart: one point per session, no line between unrelated tests)
    ...(o.points ? { paths: () => null } : {}),
    points: o.points ? { show: true, size: 7 } : { size: 4 },
    value: (_u, v) => (v === null || v === undefined ? '–' : `${+v.toFixed(3)}`),
  });
  /** The unit for a set of Mbit/s figures: Gbit/s when the largest is 1000 or more. */
  const scaleFor = (values) => {
    const max = Math.max(0, ...values.filter((v) => typeof v === 'number'));
    return max >= 1000 ? { unit: 'Gbit/s', div: 1000 } : { unit: 'Mbit/s', div: 1 };
  };
  const scaled = (arr, sc) => arr.map((v) => (typeof v === 'number' ? v / sc.div : v));
  const PALETTE = ['--down', '--up', '--ping', '--accent', '--bad', '--muted'];

  async function renderHistory() {
    const target = $('#h-target').value;
    const nowS = Date.now() / 1000;
    const since = new Date((nowS - range * 86400) * 1000).toISOString();
    // the tests others ran against our servers are in Served, not here (issue 18)
    const q = new URLSearchParams({ since, limit: '10000', scope: 'measured' });
    if (target) q.set('target', target);
    const { runs } = await api(`api/runs?${q}`);
    const exp = new URLSearchParams({ since, scope: 'measured' });
    if (target) exp.set('target', target);
    $('#export-csv').href = `api/export.csv?${exp}`;
    $('#export-json').href = `api/export.json?${exp}`;
    const asc = runs.slice().reverse();
    const xs = asc.map((r) => Date.parse(r.finished_at) / 1000);
    const x = { min: nowS - range * 86400, max: nowS };
    const sc = scaleFor(asc.flatMap((r) => [r.download_mbps, r.upload_mbps]));
    // One series per target and direction: lines never join figures of different targets.
    const ids = target ? [target] : [...new Set(asc.map((r) => r.target))];
    const names = new Map(status.targets.map((t) => [t.id, t.name]));
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
      // latency under load (issue 17): the median round trip while each direction filled the line
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
      $('#runs tbody').append(el('tr', {}, el('td', { colspan: 7 }, 'No runs in this range yet.')));
    if (focused) document.querySelector(`#runs tr[data-run="${CSS.escape(focused)}"]`)?.focus();
  }

  async function showRun(id) {
    const r = await api(`api/runs/${id}`);
    const d = $('#detail');
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
            ? `${r.target.kind === 'btest-server' ? 'btest' : 'RMBT'} ${ib.protocol}, ${DIRECTION_TEXT[ib.direction] || ib.direction}, ${plural(ib.connections, 'connection', 'connections')}`
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
        row(
          'Before the run',
          r.pre ? (r.pre.busy ? `busy: ${r.pre.reasons.join('; ')}` : 'line quiet') : null,
        ),
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

  // ---- Served: tests other clients ran against our servers (issue 18) --------------------------------
  const hostText = (h) => (String(h).includes(':') && !String(h).startsWith('[') ? `[${h}]` : String(h));
  const DIRECTION_TEXT = { receive: 'peer downloads', send: 'peer uploads', both: 'both ways' };
  const END_TEXT = {
    quota: 'ended by a daily quota',
    limit: 'ended at max_bytes',
    error: 'ended by an error',
  };
  function servedServers(sv) {
    const parts = [];
    if (sv.btest) {
      const u = sv.btest.udp_ports;
      const b = sv.btest.stats;
      parts.push(
        `btest on TCP ${sv.btest.port} (UDP ${u.start}${u.count > 1 ? `–${u.start + u.count - 1}` : ''}), ${plural(b.sessions, 'test', 'tests')}, ${b.refused + b.authFailed} refused${b.quota ? ` (${b.quota} by quota)` : ''}`,
      );
    }
    if (sv.rmbt) {
      const r = sv.rmbt.stats;
      const ports = sv.rmbt.listeners.map((l) => `${l.port}${l.tls ? ' TLS' : ''}`).join(', ');
      parts.push(
        `RMBT on ${ports}${sv.rmbt.control_port ? ` · control ${sv.rmbt.control_port}` : ''}, ${plural(r.sessions, 'connection', 'connections')}, ${r.refused} refused${r.quota ? ` (${r.quota} by quota)` : ''}`,
      );
    }
    return parts.join(' · ');
  }
  async function renderServed() {
    const box = $('#served');
    const sv = status?.served;
    box.hidden = !sv;
    if (!sv) return;
    $('#served-servers').replaceChildren(
      servedServers(sv),
      ...(sv.errors || []).map((e) =>
        el(
          'span',
          { class: 'err', role: 'alert' },
          ` The ${e.server} server did not start: ${e.code} — ${e.message}`,
        ),
      ),
    );
    const nowS = Date.now() / 1000;
    const since = new Date((nowS - range * 86400) * 1000).toISOString();
    const { runs } = await api(
      `api/runs?${new URLSearchParams({ since, limit: '10000', scope: 'inbound' })}`,
    );
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
      { yLabel: sc.unit, height: 140, x: { min: nowS - range * 86400, max: nowS } },
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
        const proto = `${r.kind === 'btest-server' ? 'btest' : 'RMBT'} ${i.protocol || ''}`;
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

  // ---- latency under load in the run detail (issue 17) ----------------------------------------------
  /** Idle, download and upload side by side: median, p90, p99, min–max and how many round trips. */
  function latencyTable(l) {
    if (!l) return null;
    const cols = [
      ['Idle', l.idle],
      ['Download', l.download],
      ['Upload', l.upload],
      ['Both ways', l.both],
    ].filter(([, v]) => v);
    if (!cols.length) return l.unavailable || null;
    const rowOf = (label, f) =>
      el(
        'tr',
        {},
        el('th', { scope: 'row' }, label),
        ...cols.map(([, v]) => el('td', { class: 'num' }, f(v))),
      );
    const method =
      cols[0][1].method === 'tcp_connect'
        ? 'TCP connect round trips'
        : 'PING round trips on a connection of their own';
    return el(
      'div',
      {},
      el(
        'table',
        { class: 'latency' },
        el(
          'thead',
          {},
          el('tr', {}, el('th', {}, 'ms'), ...cols.map(([k]) => el('th', { class: 'num' }, k))),
        ),
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
  function bloatText(l) {
    if (!l?.grade) return null;
    const b = l.bufferbloat_ms || {};
    const parts = [
      b.download !== undefined ? `+${ms(b.download)} ms download` : '',
      b.upload !== undefined ? `+${ms(b.upload)} ms upload` : '',
      b.both !== undefined ? `+${ms(b.both)} ms both ways` : '',
    ].filter(Boolean);
    return `grade ${l.grade} (${parts.join(', ')}), responsiveness ${l.responsiveness_rpm ?? '–'} RPM`;
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
    live.u = chart('live-chart', [line('Mbit/s', css('--accent'), { fill: true })], [[], []], {
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

  // ---- wiring ---------------------------------------------------------------------------------------
  $('#run-all').addEventListener('click', () => runNow(null));
  $('#h-target').addEventListener('change', () => renderHistory());
  for (const b of document.querySelectorAll('.seg button')) {
    b.addEventListener('click', () => {
      range = Number(b.dataset.days);
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
  setInterval(() => status && renderNow(), 30_000);
  refresh()
    .then(renderHistory)
    .then(renderServed)
    .then(connectEvents)
    .catch((err) => {
      $('#now').replaceChildren(
        el('div', { class: 'panel err' }, `The probe did not answer: ${err.message}`),
      );
    });
})();
