// uPlot charts: one helper for every chart on the page, series styles and units.
import { css } from './dom.js';
import { dayFmt, stampFmt, timeFmt } from './format.js';

export const charts = new Map();
export const axisStyle = () => ({
  stroke: css('--muted'),
  grid: { stroke: css('--line') },
  ticks: { stroke: css('--line') },
});
/**
 * One uPlot chart. opts.x: { min, max } fixes the x range (a time range: the chosen 24 h / 7 d / 30 d);
 * opts.unit scales the y values (Gbit/s); the y axis always starts at 0.
 */
export function chart(id, series, data, opts = {}) {
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
                  if (d.getHours() === 0 && d.getMinutes() === 0 && opts.x && opts.x.max - opts.x.min > 86400)
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
export const line = (label, color, o = {}) => ({
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
export const scaleFor = (values) => {
  const max = Math.max(0, ...values.filter((v) => typeof v === 'number'));
  return max >= 1000 ? { unit: 'Gbit/s', div: 1000 } : { unit: 'Mbit/s', div: 1 };
};
export const scaled = (arr, sc) => arr.map((v) => (typeof v === 'number' ? v / sc.div : v));
export const PALETTE = ['--down', '--up', '--ping', '--accent', '--bad', '--muted'];
