// MikroTik btest on the page: no ping figure, its served-server line, and a router as a target.
import { plural } from '../format.js';

export default {
  ping: false,
  /** our btest server's line in Served: its TCP port, UDP range and counters */
  served(s) {
    const u = s.udp_ports;
    const b = s.stats;
    return `btest on TCP ${s.port} (UDP ${u.start}${u.count > 1 ? `–${u.start + u.count - 1}` : ''}), ${plural(b.sessions, 'test', 'tests')}, ${b.refused + b.authFailed} refused${b.quota ? ` (${b.quota} by quota)` : ''}`;
  },
  setup: [
    {
      title: 'A MikroTik router (/tool bandwidth-server)',
      snippet:
        'targets:\n  - id: router\n    name: Router\n    type: btest\n    host: 192.168.88.1\n    user: admin\n    password: your-router-password\n    protocol: udp',
    },
  ],
};
