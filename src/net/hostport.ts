/**
 * `host[:port]` as users write it: a name, an IPv4 address, or an IPv6 address in brackets
 * (`[2001:db8::1]:2000`). The settings check the shape with HOST_PORT; splitHostPort takes it apart.
 */
export const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

export function splitHostPort(s: string): { host: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
  if (!m) return { host: s };
  return m[2] ? { host: m[1]!, port: Number(m[2]) } : { host: m[1]! };
}

/** The host and port of an http(s) URL, the host without IPv6 brackets and the port filled in. */
export function urlHostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port) || (u.protocol === 'https:' || u.protocol === 'wss:' ? 443 : 80),
  };
}
