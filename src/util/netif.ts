import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';

/**
 * The kind of access network behind a local address, as RMBT operators file it (open-rmbt-database
 * `network_type.sql`: 98 LAN, 99 WLAN, 106 Ethernet; research F10). Read from Linux sysfs: a wireless
 * interface has `wireless` or `phy80211`; a physical Ethernet port has a `device` link and ARP type 1.
 * Anything else (loopback, bridges, veth, VPNs, the add-on container's own interface) is LAN, the
 * operators' generic wired value and what the reference clients send when they cannot know.
 */
export type AccessNetwork = 'lan' | 'ethernet' | 'wlan';

export const NETWORK_TYPE_CODE: Readonly<Record<AccessNetwork, number>> = {
  lan: 98,
  wlan: 99,
  ethernet: 106,
};

/** An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how a dual-stack socket reports IPv4) as plain IPv4. */
export function unmapIp<T extends string | undefined>(address: T): T {
  return address?.replace(/^::ffff:(?=\d+\.)/i, '') as T;
}

export function interfaceOf(address: string | undefined): string | undefined {
  if (!address) return undefined;
  const bare = unmapIp(address);
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.address === bare || a.address === address)) return name;
  }
  return undefined;
}

export function accessNetwork(iface: string | undefined, sysfs = '/sys/class/net'): AccessNetwork {
  if (!iface || iface.includes('/') || iface.startsWith('.')) return 'lan';
  const dir = join(sysfs, iface);
  if (existsSync(join(dir, 'wireless')) || existsSync(join(dir, 'phy80211'))) return 'wlan';
  try {
    const type = readFileSync(join(dir, 'type'), 'utf8').trim();
    if (type === '1' && existsSync(join(dir, 'device'))) return 'ethernet';
  } catch {
    // no sysfs entry (not Linux, or the interface went away): say nothing more specific
  }
  return 'lan';
}
