import type { Socket } from 'node:net';
import { loadAddon, type NativeAddon } from './native.js';

/**
 * The kernel's TCP_INFO of a connected socket (getsockopt through the native addon), with ndt7's field
 * names: RTT, RTTVar, MinRTT, BusyTime, RWndLimited, SndBufLimited (µs), BytesAcked, BytesReceived,
 * BytesSent, BytesRetrans. Undefined without the addon (the js engine alone) or for a socket Node holds
 * no descriptor for: Node itself has no way to read it.
 */
let addon: NativeAddon | null | undefined;

export function tcpInfo(socket: Socket): Record<string, number> | undefined {
  if (addon === undefined) {
    try {
      addon = loadAddon();
    } catch {
      addon = null;
    }
  }
  // a TLS socket from Node wraps the TCP socket: its handle is the TLS wrap; the fd is on the inner one
  const inner = (socket as unknown as { _parent?: Socket })._parent ?? socket;
  const fd = (inner as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (!addon?.tcpInfo || typeof fd !== 'number' || fd < 0) return undefined;
  // no field at all (qemu-user answers TCP_INFO with an empty struct) is no TCPInfo, not an empty one
  const ti = addon.tcpInfo(fd);
  return ti && Object.keys(ti).length > 0 ? ti : undefined;
}

/** Whether TCP_INFO can be read here (for the server's status and the docs' caveat). */
export function tcpInfoAvailable(): boolean {
  if (addon === undefined) {
    try {
      addon = loadAddon();
    } catch {
      addon = null;
    }
  }
  return Boolean(addon?.tcpInfo);
}
