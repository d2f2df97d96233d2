// RMBT on the page: its served-server line and the public deployments a new user can set up.
import { plural } from '../format.js';

export default {
  ping: true,
  /** our RMBT server's line in Served: its listeners, control port and counters */
  served(s) {
    const r = s.stats;
    const ports = s.listeners.map((l) => `${l.port}${l.tls ? ' TLS' : ''}`).join(', ');
    return `RMBT on ${ports}${s.control_port ? ` · control ${s.control_port}` : ''}, ${plural(r.sessions, 'connection', 'connections')}, ${r.refused} refused${r.quota ? ` (${r.quota} by quota)` : ''}`;
  },
  setup: [
    {
      title: 'RTR-Netztest (Austria)',
      terms: 'https://www.rtr.at/en/tk/rtrnetztesttermsofuse',
      snippet:
        'targets:\n  - id: isp\n    name: ISP\n    control_url: https://c01.netztest.at/RMBTControlServer\n    accept_terms: true',
    },
    {
      title: 'NetMetr (Czechia, CZ.NIC)',
      terms: 'https://netmetr.cz/cs/podminky.html',
      snippet:
        'targets:\n  - id: isp\n    name: ISP\n    control_url: https://control.netmetr.cz/RMBTControlServer\n    accept_terms: true',
    },
  ],
};
