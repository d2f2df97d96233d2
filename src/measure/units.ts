/**
 * How a person reads a figure: three significant figures, Gbit/s from 1000 Mbit/s on, and
 * sub-millisecond times with two significant figures instead of "0.0". Only for text people read (CLI,
 * logs); MQTT and the JSON API stay in Mbit/s and ms, HA converts and its statistics keep one unit.
 * The page (public/app.js, no build step) applies the same rules in its own copy.
 */
export function sig3(x: number): string {
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  if (x >= 0.01 || x === 0) return x.toFixed(2);
  return '< 0.01';
}

export function rateText(mbps: number | null | undefined): string {
  if (mbps === null || mbps === undefined || !Number.isFinite(mbps)) return '–';
  return mbps >= 1000 ? `${sig3(mbps / 1000)} Gbit/s` : `${sig3(mbps)} Mbit/s`;
}

export function msText(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 1) return ms.toFixed(1);
  if (ms >= 0.001) return String(Number(ms.toPrecision(2)));
  return ms === 0 ? '0' : '< 0.001';
}
