import type { LatencyMethod } from '../measure/latency.js';
import { type RunResult, serverLabel } from '../measure/result.js';
import { msText, rateText } from '../measure/units.js';

const METHOD_TEXT: Record<LatencyMethod, string> = {
  tcp_connect: 'TCP connect round trips',
  rmbt_ping: 'PING round trips on a probe connection',
  tcp_info_rtt: "the server's TCP round-trip figure",
};

/**
 * What a protocol adds to the summary (its descriptor's `summary`): the words in brackets after the
 * server (how it was reached), and lines of its own before the status line.
 */

export interface SummaryHooks {
  server?(r: RunResult): string | undefined;
  lines?(r: RunResult): string[];
}

/** The human summary printed after a run. */
export function summaryText(r: RunResult, hooks: SummaryHooks = {}): string {
  const lines: string[] = [];
  const s = r.server;
  const proto = hooks.server?.(r) ?? s.transport ?? '?';
  const where = s.name ? `${s.name} ${serverLabel({ ...s, name: undefined })}` : serverLabel(s);
  // a run that failed before reaching a server has no address to show (never "Server :0")
  if (where) lines.push(`Server    ${where} (${proto})`);
  if (r.ping) {
    lines.push(
      `Ping      ${msText(r.ping.median_ms)} ms median (min ${msText(r.ping.min_ms)}, max ${msText(r.ping.max_ms)}, ` +
        `avg ${msText(r.ping.mean_ms)}, stddev ${msText(r.ping.stddev_ms)}, ` +
        `jitter ${msText(r.ping.jitter_ms)}, p95 ${msText(r.ping.p95_ms)}; ${r.ping.count} ping${r.ping.count === 1 ? '' : 's'})`,
    );
  }
  for (const [name, d] of [
    ['Download', r.download],
    ['Upload  ', r.upload],
  ] as const) {
    if (d) {
      lines.push(
        `${name}  ${rateText(d.mbps)} (${d.streams} stream${d.streams > 1 ? 's' : ''}, ` +
          `${(d.bytes / 1e6).toFixed(1)} MB in ${(d.duration_ms / 1000).toFixed(2)} s${d.chunk_size ? `, chunk ${d.chunk_size} B` : ''}, ${d.timing} timing)`,
      );
      if (d.udp) {
        lines.push(
          `          UDP loss ${d.udp.loss_percent} % (${d.udp.lost} of ${d.udp.packets + d.udp.lost}), jitter ${msText(d.udp.jitter_ms)} ms (${d.udp.jitter_kind})`,
        );
      }
    }
  }
  lines.push(...latencyLines(r));
  if (r.connections?.length) {
    const c = r.connections[0]!;
    lines.push(
      `Connect   tcp ${c.connect_ms} ms${c.tls_ms !== undefined ? `, tls ${c.tls_ms} ms` : ''}` +
        `${c.upgrade_ms !== undefined ? `, upgrade ${c.upgrade_ms} ms` : ''}, ready ${c.ready_ms} ms (first of ${r.connections.length})`,
    );
  }
  if (r.server.tls) lines.push(`TLS       ${r.server.tls.version}, ${r.server.tls.cipher}`);
  lines.push(
    `Engine    ${r.engine}, local CPU ${r.cpu.local_percent ?? '?'} %` +
      `${r.cpu.remote_percent !== undefined ? `, remote CPU ${r.cpu.remote_percent} %` : ''}` +
      `${r.flags.length ? `, flags: ${r.flags.join(', ')}` : ''}`,
  );
  lines.push(...(hooks.lines?.(r) ?? []));
  lines.push(`Status    ${r.status}${r.error ? ` — ${r.error.code}: ${r.error.message}` : ''}`);
  return lines.join('\n');
}

/**
 * Latency under load: idle, download and upload medians side by side with their p90, the
 * increase, the grade and the responsiveness; or why it is missing.
 */
export function latencyLines(r: RunResult): string[] {
  const l = r.latency;
  if (!l) return [];
  const how = [...new Set([l.idle, l.download, l.upload, l.both].map((x) => x?.method).filter(Boolean))];
  const sets = (
    [
      ['idle', l.idle],
      ['download', l.download],
      ['upload', l.upload],
      ['both ways', l.both],
    ] as const
  ).filter(([, v]) => v);
  const out: string[] = [];
  if (sets.length)
    out.push(
      `Latency   ${sets.map(([k, v]) => `${k} ${msText(v!.median_ms)} ms (p90 ${msText(v!.p90_ms)})`).join(', ')}` +
        ` — ${how.map((m) => METHOD_TEXT[m!]).join(' and ')}`,
    );
  const bloat = l.bufferbloat_ms;
  if (l.grade && bloat) {
    const parts = (['download', 'upload', 'both'] as const)
      .filter((k) => bloat[k] !== undefined)
      .map((k) => `+${msText(bloat[k]!)} ms ${k === 'both' ? 'both ways' : k}`);
    out.push(
      `          bufferbloat grade ${l.grade} (${parts.join(', ')}), responsiveness ${l.responsiveness_rpm ?? '?'} RPM`,
    );
  }
  if (l.limited) {
    const d = Math.max(...[l.download, l.upload, l.both].map((x) => x?.loop_delay_ms ?? 0));
    out.push(
      `          upper bounds: this process's event loop added about ${msText(d)} ms to each round trip (engine ${r.engine})`,
    );
  }
  if (l.unavailable) out.push(`          latency under load: ${l.unavailable}`);
  return out;
}
