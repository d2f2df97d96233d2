import type { LoadPeer } from '../load/load.js';
import { splitHostPort, urlHostPort } from '../net/hostport.js';
import { measureRmbt } from './measure.js';
import type { RmbtSettings } from './settings.js';

/**
 * `load rmbt`: clients in direct mode (each its own token) or through a control server, without
 * latency probes (one more connection each) and without submitting results.
 */
export function rmbtLoadPeer(s: RmbtSettings): LoadPeer {
  const server = s.server ?? s.control_url ?? '';
  const settings: RmbtSettings = { ...s, loaded_latency: false, submit_results: false };
  return {
    server,
    host: s.server ? splitHostPort(s.server).host : urlHostPort(s.control_url!).host,
    perClientS: 2 * s.duration + 2 * s.pretest_duration + s.ping_duration + 6 * s.io_timeout,
    measure: (ctx) => measureRmbt(settings, ctx),
  };
}
