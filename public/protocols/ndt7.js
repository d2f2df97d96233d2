// ndt7 (M-Lab) on the page: its served-server line, the data-policy notice, and M-Lab as a first target.
import { plural } from '../format.js';

export default {
  ping: true,
  /** our ndt7 server's line in Served: its ports and counters */
  served(s) {
    const n = s.stats;
    const refused = n.busy + n.quota + n.bad_request;
    return `ndt7 on ${s.port}${s.tls_port ? `, TLS ${s.tls_port}` : ''}, ${plural(n.sessions, 'test', 'tests')}, ${refused} refused${n.quota ? ` (${n.quota} by quota)` : ''}`;
  },
  /** beside an M-Lab run: what its consent agreed to */
  notice(r) {
    if (!r.ndt7?.located) return null;
    const where = [r.ndt7.city, r.ndt7.country].filter(Boolean).join(', ');
    return {
      text: `M-Lab ${r.ndt7.machine || ''}${where ? ` (${where})` : ''}: M-Lab publishes this result with your public IP address as open data.`,
      href: 'https://www.measurementlab.net/privacy/',
      link: 'data policy',
    };
  },
  setup: [
    {
      title: "M-Lab's nearest server, anywhere in the world (ndt7)",
      terms: 'https://www.measurementlab.net/privacy/',
      termsLabel: 'data policy',
      snippet:
        'targets:\n  - id: mlab\n    name: Internet (M-Lab)\n    type: ndt7\n    accept_data_policy: true',
    },
  ],
};
