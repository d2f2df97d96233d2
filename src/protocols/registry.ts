import { btestProtocol } from '../btest/protocol.js';
import { ndt7Protocol } from '../ndt7/protocol.js';
import { rmbtProtocol } from '../rmbt/protocol.js';
import type { AnyProtocol, ProtocolDescriptor } from './contract.js';

/**
 * Every protocol the probe speaks, one line each (docs/internals.md "Adding a protocol"). The order is
 * the order of their settings groups in the options file, config.yaml, DOCS.md and --help.
 */
export const PROTOCOLS = [rmbtProtocol, btestProtocol, ndt7Protocol] as const;

type Listed = (typeof PROTOCOLS)[number];
export type ProtocolType = Listed['type'];

// biome-ignore lint/suspicious/noExplicitAny: matches any descriptor to read its type parameters
type Any = ProtocolDescriptor<string, any, any, any, any>;
// biome-ignore lint/suspicious/noExplicitAny: only the one parameter is read
type ClientOf<D> = D extends ProtocolDescriptor<string, infer S, any, any, any> ? S : never;
// biome-ignore lint/suspicious/noExplicitAny: only the one parameter is read
type HandleOf<D> = D extends ProtocolDescriptor<string, any, any, infer H, any> ? H : never;
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void
  ? I
  : never;

/** Each protocol's client settings under its type name (what a target of that type carries). */
export type ClientSettingsByType = { readonly [D in Listed as D['type']]?: ClientOf<D> };
/** Each protocol's running server under its type name (what `serve` runs when it is enabled). */
export type ServerHandles = { readonly [D in Listed as D['type']]?: HandleOf<D> };
/** Every protocol's settings groups together, with their schemas' types. */
export type ProtocolGroups = UnionToIntersection<Listed['groups']>;

export const protocolGroups = Object.assign({}, ...PROTOCOLS.map((p) => p.groups)) as ProtocolGroups;

const byType = new Map<string, AnyProtocol>(PROTOCOLS.map((p) => [p.type, p as Any]));

/** The descriptor of a target type, or of an inbound kind (`rmbt-server` → rmbt). */
export function protocolOf(typeOrKind: string): AnyProtocol | undefined {
  return byType.get(typeOrKind) ?? PROTOCOLS.find((p) => p.server?.kind === typeOrKind);
}

export const PROTOCOL_TYPES = PROTOCOLS.map((p) => p.type) as ProtocolType[];
