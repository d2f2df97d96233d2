import type { SummaryHooks } from '../cli/summary.js';
import { msText } from '../measure/units.js';

/** ndt7 in the CLI summary: the scheme, M-Lab's machine and city, retransmissions and the upload's source. */
export const ndt7Summary: SummaryHooks = {
  server: (r) => {
    const n = r.ndt7;
    if (!n) return undefined;
    const where = [n.city, n.country].filter(Boolean).join(', ');
    return `ndt7 ${r.server.transport ?? ''}${n.located ? `, M-Lab${where ? ` ${where}` : ''}` : ''}`.trim();
  },
  lines: (r) => {
    const n = r.ndt7;
    if (!n || r.status !== 'ok') return [];
    const out: string[] = [];
    const parts: string[] = [];
    if (n.min_rtt_ms !== undefined) parts.push(`MinRTT ${msText(n.min_rtt_ms)} ms (the server's)`);
    if (n.retrans_percent !== undefined)
      parts.push(`retransmitted ${n.retrans_percent.toFixed(2)} % of the download`);
    if (parts.length) out.push(`TCP       ${parts.join(', ')}`);
    if (n.upload_source === 'client') out.push(`          upload from our own count: ${n.upload_note ?? ''}`);
    out.push(
      `Data      ${(n.bytes_used / 1e6).toFixed(1)} MB moved in all (one TCP connection per direction)`,
    );
    return out;
  },
};
