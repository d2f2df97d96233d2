// Figures, units, times and the words for codes, as the page shows them.
import { el } from './dom.js';

export const fmt = (v, digits = 1) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));
// Three significant figures, Gbit/s from 1000 Mbit/s on. MQTT and the API stay in Mbit/s.
export const sig3 = (x) =>
  x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 0.01 || x === 0 ? x.toFixed(2) : '< 0.01';
export const rate = (mbps) =>
  mbps === null || mbps === undefined
    ? { v: '–', unit: 'Mbit/s' }
    : mbps >= 1000
      ? { v: sig3(mbps / 1000), unit: 'Gbit/s' }
      : { v: sig3(mbps), unit: 'Mbit/s' };
export const rateText = (mbps) => {
  const r = rate(mbps);
  return r.v === '–' ? '–' : `${r.v} ${r.unit}`;
};
// Loopback pings are tens of microseconds: below 1 ms two significant figures, never "0.0".
export const ms = (v) =>
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
export const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
export const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
export const stampFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
export const when = (iso) => {
  if (!iso) return '–';
  const d = new Date(iso);
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : stampFmt.format(d);
};
export const rel = (iso) => {
  if (!iso) return 'not scheduled';
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (s <= 0) return 'due now';
  if (s < 90) return `in ${s} s`;
  if (s < 5400) return `in ${Math.round(s / 60)} min`;
  return `in ${(s / 3600).toFixed(1)} h`;
};
export const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
export const TRIGGER_TEXT = {
  schedule: 'the schedule',
  start: 'the service start',
  manual: 'hand (Run now, CLI)',
  mqtt: 'Home Assistant (MQTT button)',
};
export const PHASE_TEXT = {
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
export const phaseText = (p) => PHASE_TEXT[p] || String(p).replace(/_/g, ' ');
export const FLAG_TEXT = {
  below_threshold: ['below threshold', 'bad'],
  link_busy: ['line was busy', 'warn'],
  cpu_limited: ['probe CPU-limited', 'warn'],
  single_thread_fallback: ['one connection only', 'warn'],
  udp_ramp: ['UDP rate still rising', 'warn'],
  latency_limited: ['latency inflated by the probe', 'warn'],
};
export const flagPills = (flags) =>
  (flags || []).map((f) =>
    el('span', { class: `pill ${(FLAG_TEXT[f] || [f, ''])[1]}` }, (FLAG_TEXT[f] || [f])[0]),
  );

export const hostText = (h) => (String(h).includes(':') && !String(h).startsWith('[') ? `[${h}]` : String(h));
export const DIRECTION_TEXT = { receive: 'peer downloads', send: 'peer uploads', both: 'both ways' };
export const END_TEXT = {
  quota: 'ended by a daily quota',
  limit: 'ended at max_bytes',
  error: 'ended by an error',
};
