import type { BtestEvent } from './client.js';

/** btest: one line per second (receive, send, loss, the router's CPU). */
export function btestProgress(out: NodeJS.WriteStream = process.stderr): (e: BtestEvent) => void {
  if (!out.isTTY) return () => {};
  return (e) => {
    if (e.type === 'phase') {
      out.write(`\r\x1b[2K${e.phase === 'end' ? '' : `${e.phase} …`}`);
    } else {
      const cpu = e.remote_cpu !== undefined ? `, remote CPU ${e.remote_cpu} %` : '';
      out.write(
        `\r\x1b[2K${String(e.seq).padStart(3)} s  rx ${e.rx_mbps.toFixed(1)} Mbit/s  tx ${e.tx_mbps.toFixed(1)} Mbit/s  lost ${e.lost}${cpu}`,
      );
    }
  };
}

/** btest-rs's rate format: two decimals, in Gbps from 1 Gbit/s up, else Mbps (or Kbps below 1 Mbit/s). */
export function btestRate(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1e9) return `${(bitsPerSecond / 1e9).toFixed(2)} Gbps`;
  if (bitsPerSecond >= 1e6) return `${(bitsPerSecond / 1e6).toFixed(2)} Mbps`;
  return `${(bitsPerSecond / 1e3).toFixed(2)} Kbps`;
}

/**
 * `--interval`: one line per second and direction, as btest-rs prints them
 * (`[   3]  TX  285.47 Mbps (35684352 bytes)  cpu: 20%/62%`, RX lines with `lost:` for UDP), so logs of
 * both tools read alike. CPU is this machine's / the peer's.
 */
export function btestLines(
  direction: 'receive' | 'send' | 'both',
  udp: boolean,
  out: NodeJS.WritableStream = process.stderr,
): (e: BtestEvent) => void {
  return (e) => {
    if (e.type !== 'second') return;
    const n = `[${String(e.seq).padStart(4)}]`;
    const cpu = `cpu: ${Math.round(e.local_cpu)}%/${e.remote_cpu ?? 0}%`;
    if (direction !== 'receive')
      out.write(`${n}  TX  ${btestRate(e.tx_mbps * 1e6)} (${e.tx_bytes} bytes)  ${cpu}\n`);
    if (direction !== 'send')
      out.write(
        `${n}  RX  ${btestRate(e.rx_mbps * 1e6)} (${e.rx_bytes} bytes)${udp ? `  lost: ${e.lost}` : ''}  ${cpu}\n`,
      );
  };
}
