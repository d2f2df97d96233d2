import type { LoadPeer } from '../load/load.js';
import { splitHostPort } from '../net/hostport.js';
import { measureBtest } from './measure.js';
import type { BtestSettings } from './settings.js';

/** `load btest`: clients without latency probes (one more connection each). */
export function btestLoadPeer(s: BtestSettings): LoadPeer {
  const settings: BtestSettings = { ...s, loaded_latency: false };
  return {
    server: s.host ?? '',
    host: splitHostPort(s.host ?? '').host,
    perClientS: s.duration + 4 * s.io_timeout,
    measure: (ctx) => measureBtest(settings, ctx),
  };
}
