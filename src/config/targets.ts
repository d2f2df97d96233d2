import { Cron } from 'croner';
import {
  type ClientSettingsByType,
  PROTOCOL_TYPES,
  PROTOCOLS,
  type ProtocolType,
  protocolOf,
} from '../protocols/registry.js';
import { checkField, coerce, type Group, type Violation } from './fields.js';

/**
 * Measurement targets of the service: a list in the options file (`targets: [...]`, the add-on's list of
 * dicts), each a peer of one protocol (its `type`) with its own schedule and thresholds. Every key of the
 * protocol's client group (`rmbt`, `btest`, …) may also appear in a target and overrides the group's
 * value for that target only, so the groups act as shared defaults (e.g. `rmbt.accept_terms` once for
 * all RMBT targets).
 */
export const targetSchema = {
  id: {
    type: 'str',
    pattern: /^[a-z0-9][a-z0-9_]{0,31}$/,
    patternHint: 'lower-case letters, digits and _ (up to 32), e.g. isp or router_udp',
    description: 'Short stable name of the target; entity ids, topics and the history use it. Required.',
  },
  name: {
    type: 'str',
    optional: true,
    maxLength: 64,
    description: 'Display name in Home Assistant and on the page (default: the id).',
  },
  type: {
    type: 'enum',
    values: PROTOCOL_TYPES,
    default: PROTOCOL_TYPES[0]!,
    description: `${PROTOCOLS.map((p) => `${p.type}: ${p.peerText}`).join('; ')}.`,
  },
  enabled: { type: 'bool', default: true, description: 'Scheduled runs on or off (run-now still works).' },
  schedule: {
    type: 'str',
    optional: true,
    maxLength: 128,
    description:
      'Cron expression (5 fields, or 6 with seconds), e.g. "0 */2 * * *"; when set it replaces interval.',
  },
  interval: {
    type: 'int',
    default: 60,
    min: 1,
    max: 10080,
    description: 'Minutes between runs when no schedule is set.',
  },
  jitter: {
    type: 'int',
    default: 120,
    min: 0,
    max: 3600,
    description:
      'Up to this many seconds of random delay per run, so many probes do not hit one server at the same second.',
  },
  ip_version: {
    type: 'enum',
    values: ['any', '4', '6', 'both'],
    default: 'any',
    description: 'any, 4, 6, or both: two targets <id>_v4 and <id>_v6 for a dual-stack line.',
  },
  threshold_download: {
    type: 'float',
    optional: true,
    min: 0,
    max: 1e6,
    description: 'Mbit/s; a download below it sets the below-threshold problem sensor.',
  },
  threshold_upload: {
    type: 'float',
    optional: true,
    min: 0,
    max: 1e6,
    description: 'Mbit/s; an upload below it sets the below-threshold problem sensor.',
  },
  threshold_ping: {
    type: 'float',
    optional: true,
    min: 0,
    max: 1e5,
    description: 'Milliseconds; a ping median above it sets the below-threshold problem sensor.',
  },
  threshold_loaded_latency: {
    type: 'float',
    optional: true,
    min: 0,
    max: 1e5,
    description:
      'Milliseconds; a latency-under-load median (the worse of download and upload) above it sets the below-threshold problem sensor.',
  },
} as const satisfies Group;

/** A target: its own keys, and its protocol's client group (overlaid with its keys) under the type name. */
export type TargetSettings = TargetOwn & ClientSettingsByType;

interface TargetOwn {
  readonly id: string;
  readonly name: string;
  readonly type: ProtocolType;
  readonly enabled: boolean;
  readonly schedule?: string;
  readonly interval: number;
  /** a random schedule its protocol asks for when the target sets neither interval nor schedule */
  readonly random?: { readonly meanMin: number; readonly minMin: number; readonly maxMin: number };
  readonly jitter: number;
  /** 4 or 6 after `both` was split, else what was set */
  readonly ip_version: 'any' | '4' | '6';
  readonly threshold_download?: number;
  readonly threshold_upload?: number;
  readonly threshold_ping?: number;
  readonly threshold_loaded_latency?: number;
}

/** A target's protocol settings (its client group overlaid with the target's own keys). */
export function clientSettings(t: TargetSettings): unknown {
  return (t as unknown as Record<string, unknown>)[t.type];
}

/** A cron expression croner accepts, else the reason it does not. */
export function cronProblem(expr: string): string | undefined {
  try {
    new Cron(expr, { paused: true }).stop();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * The shortest gap in minutes between two scheduled runs of a target: its cron's closest pair among the
 * next 48 runs, else its interval less the random delay a run may get.
 */
export function shortestGapMin(t: { schedule?: string; interval: number; jitter: number }): number {
  if (t.schedule === undefined) return t.interval - t.jitter / 60;
  try {
    const runs = new Cron(t.schedule, { paused: true }).nextRuns(48);
    let gap = Number.POSITIVE_INFINITY;
    for (let i = 1; i < runs.length; i++)
      gap = Math.min(gap, (runs[i]!.getTime() - runs[i - 1]!.getTime()) / 60_000);
    return gap - t.jitter / 60;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/**
 * Validates the raw `targets` list against the target schema and the protocol group of each target's
 * type; `base` holds the already-validated groups the targets inherit from. Every problem is reported,
 * each naming `targets[i].key`.
 */
export function resolveTargets(
  raw: unknown,
  base: Readonly<Record<string, unknown>>,
  source: string,
): { targets: TargetSettings[]; violations: Violation[] } {
  const violations: Violation[] = [];
  const out: TargetSettings[] = [];
  if (raw === undefined || raw === null) return { targets: out, violations };
  if (!Array.isArray(raw)) {
    violations.push({ key: 'targets', message: `targets (from ${source}) must be a list of objects` });
    return { targets: out, violations };
  }
  const seen = new Set<string>();
  for (const [i, item] of raw.entries()) {
    const at = `targets[${i}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      violations.push({ key: at, message: `${at} (from ${source}) must be an object` });
      continue;
    }
    const obj = item as Record<string, unknown>;
    const type = obj.type ?? PROTOCOL_TYPES[0];
    // an unknown type is reported by the `type` field's check; its keys are read as the first protocol's
    const desc = protocolOf(String(type)) ?? PROTOCOLS[0];
    const proto: Group = desc.groups[desc.type]!;
    const own: Record<string, unknown> = {};
    const over: Record<string, unknown> = {};
    for (const [k, f] of Object.entries(targetSchema)) if ('default' in f) own[k] = f.default;
    for (const [key, v] of Object.entries(obj)) {
      const label = `${at}.${key}`;
      // ip_version is both a target key (with `both`) and a protocol key: the target's wins.
      const f = (targetSchema as Group)[key] ?? proto[key];
      if (!f) {
        violations.push({
          key: label,
          message: `${label} (from ${source}) is not a setting of a ${String(type)} target; known: ${[
            ...Object.keys(targetSchema),
            ...Object.keys(proto).filter((k) => !(k in targetSchema)),
          ].join(', ')}`,
        });
        continue;
      }
      if (v === null && (f.optional || !('default' in f))) continue;
      const value = coerce(f, v);
      const bad = checkField(label, f, value);
      if (bad) violations.push({ key: label, message: `${bad.message} (from ${source})` });
      else if (key in targetSchema) own[key] = value;
      else over[key] = value;
    }
    const id = own.id as string | undefined;
    if (!id) {
      violations.push({ key: `${at}.id`, message: `${at}.id is missing; every target needs an id` });
      continue;
    }
    if (seen.has(id)) violations.push({ key: `${at}.id`, message: `${at}.id "${id}" is used twice` });
    seen.add(id);
    if (typeof own.schedule === 'string') {
      const problem = cronProblem(own.schedule);
      if (problem)
        violations.push({
          key: `${at}.schedule`,
          message: `${at}.schedule "${own.schedule}" is not a cron expression (${problem})`,
        });
    }
    const ipv = own.ip_version as TargetSettings['ip_version'] | 'both';
    const common = {
      name: (own.name as string | undefined) ?? id,
      type: type as ProtocolType,
      enabled: own.enabled as boolean,
      ...(own.schedule !== undefined ? { schedule: own.schedule as string } : {}),
      interval: own.interval as number,
      jitter: own.jitter as number,
      ...pick(own, ['threshold_download', 'threshold_upload', 'threshold_ping', 'threshold_loaded_latency']),
    };
    const client = { ...(base[desc.type] as object), ...over } as Record<string, unknown>;
    const missing = desc.needs(client);
    if (missing)
      violations.push({ key: `${at}.${missing.key}`, message: `${at} (${desc.type}) ${missing.message}` });
    // neither interval nor schedule given: the protocol's own schedule, where it has one (M-Lab's)
    const random =
      obj.interval === undefined && obj.schedule === undefined ? desc.defaultSchedule?.(client) : undefined;
    if (random) Object.assign(common, { random });
    const often = random ? undefined : desc.scheduleProblem?.(client, shortestGapMin(common));
    if (often) {
      const key = `${at}.${common.schedule !== undefined ? 'schedule' : 'interval'}`;
      violations.push({ key, message: `${key} (${desc.type}) ${often}` });
    }
    for (const v of split(ipv)) {
      out.push(
        Object.freeze({
          ...common,
          ...v.label(id, common.name),
          ip_version: v.ip,
          [desc.type]: Object.freeze({ ...client, ip_version: v.ip }),
        }) as TargetSettings,
      );
    }
  }
  return { targets: out, violations };
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, number> {
  const r: Record<string, number> = {};
  for (const k of keys) if (typeof o[k] === 'number') r[k] = o[k] as number;
  return r;
}

/** `both` becomes an IPv4 and an IPv6 target with their own ids, entities and history. */
function split(ipv: 'any' | '4' | '6' | 'both') {
  if (ipv !== 'both') return [{ ip: ipv, label: (id: string, name: string) => ({ id, name }) }];
  return (['4', '6'] as const).map((ip) => ({
    ip,
    label: (id: string, name: string) => ({ id: `${id}_v${ip}`, name: `${name} (IPv${ip})` }),
  }));
}
