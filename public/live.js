// The live chart of a run in progress (fed by the Server-Sent Events in app.js).
import { state } from './api.js';
import { chart, line } from './charts.js';
import { $, css } from './dom.js';

export const live = { xs: [], ys: [], t0: 0, u: null };
export function liveStart(target) {
  $('#live').hidden = false;
  const t = state.status?.targets.find((x) => x.id === target);
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
