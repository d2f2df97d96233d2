import { existsSync, readFileSync } from 'node:fs';
import { ProbeError } from '../errors.js';
import { checkField, coerce, type Group, type Violation } from './fields.js';
import { type GroupName, type Settings, settingsSchema } from './settings.js';
import { resolveTargets } from './targets.js';

export const ENV_PREFIX = 'BANDWIDTH_PROBE_';

/** Raw values per group from one source (file, env or flags), before validation. */
export type RawSettings = Partial<Record<GroupName, Record<string, unknown>>> & {
  /** the `targets` list, validated after the groups (it inherits from rmbt and btest) */
  targets?: unknown;
};

export const TARGETS_ENV = `${ENV_PREFIX}TARGETS`;

export interface LoadInput {
  /** Options file (JSON). Missing file is an error only when it was asked for explicitly. */
  optionsFile?: string;
  optionsFileRequired?: boolean;
  env?: NodeJS.ProcessEnv;
  flags?: RawSettings;
  /** command-specific defaults over the schema's (e.g. quieter logs for interactive commands) */
  defaults?: RawSettings;
}

/** The env variable for a key: general keys bare, others with their group (BANDWIDTH_PROBE_RMBT_SERVER_PORT). */
export function envName(group: GroupName, key: string): string {
  return (ENV_PREFIX + (group === 'general' ? key : `${group}_${key}`)).toUpperCase();
}

function readOptionsFile(path: string): RawSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ProbeError('BP_ERR_CONFIG_FILE', `${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ProbeError('BP_ERR_CONFIG_FILE', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ProbeError('BP_ERR_CONFIG_FILE', `${path} must hold a JSON object`);
  }
  // General keys sit at the top level; every other group is a nested object named after it.
  const raw: RawSettings = { general: {} };
  const violations: Violation[] = [];
  for (const [k, v] of Object.entries(json)) {
    if (k === 'targets') raw.targets = v;
    else if (k in settingsSchema && k !== 'general') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        violations.push({ key: k, message: `${k} must be an object` });
      } else {
        raw[k as GroupName] = { ...(v as Record<string, unknown>) };
      }
    } else {
      raw.general![k] = v;
    }
  }
  if (violations.length) throw configError(violations, path);
  return raw;
}

function fromEnv(env: NodeJS.ProcessEnv): RawSettings {
  const raw: RawSettings = {};
  const targets = env[TARGETS_ENV];
  if (targets !== undefined) {
    try {
      raw.targets = JSON.parse(targets);
    } catch (err) {
      throw new ProbeError('BP_ERR_CONFIG', `${TARGETS_ENV} is not valid JSON: ${(err as Error).message}`);
    }
  }
  for (const [group, schema] of Object.entries(settingsSchema) as [GroupName, Group][]) {
    for (const key of Object.keys(schema)) {
      const v = env[envName(group, key)];
      if (v !== undefined) raw[group] = { ...raw[group], [key]: v };
    }
  }
  return raw;
}

function configError(violations: Violation[], source?: string): ProbeError {
  const where = source ? ` in ${source}` : '';
  return new ProbeError('BP_ERR_CONFIG', violations.map((v) => v.message).join('; ') + where);
}

/**
 * Loads settings: defaults < options file < env < flags. Every value is checked against the schema; all
 * problems are reported at once, each naming the key and what is allowed. The result is deep-frozen and
 * passed to whoever needs it (no global settings object).
 */
export function loadSettings(input: LoadInput = {}): Settings {
  const sources: { name: string; raw: RawSettings }[] = [];
  if (input.defaults) sources.push({ name: 'command defaults', raw: input.defaults });
  if (input.optionsFile) {
    if (existsSync(input.optionsFile) || input.optionsFileRequired) {
      sources.push({ name: input.optionsFile, raw: readOptionsFile(input.optionsFile) });
    }
  }
  if (input.env) sources.push({ name: 'environment', raw: fromEnv(input.env) });
  if (input.flags) sources.push({ name: 'command line', raw: input.flags });

  const violations: Violation[] = [];
  const out: Record<string, Record<string, unknown>> = {};
  for (const [group, schema] of Object.entries(settingsSchema) as [GroupName, Group][]) {
    const values: Record<string, unknown> = {};
    for (const [key, f] of Object.entries(schema)) {
      if ('default' in f && f.default !== undefined) values[key] = f.default;
    }
    for (const { name, raw } of sources) {
      for (const [key, v] of Object.entries(raw[group] ?? {})) {
        const label = group === 'general' ? key : `${group}.${key}`;
        const f = schema[key];
        if (!f) {
          violations.push({
            key: label,
            message: `${label} (from ${name}) is not a known setting; known: ${Object.keys(schema).join(', ')}`,
          });
          continue;
        }
        if (v === null && f.optional) {
          delete values[key];
          continue;
        }
        const value = coerce(f, v);
        const bad = checkField(label, f, value);
        if (bad) violations.push({ key: label, message: `${bad.message} (from ${name})` });
        else values[key] = value;
      }
    }
    out[group] = Object.freeze(values);
  }
  // Basic auth needs both halves: a user name alone must not leave the page open.
  const web = out.web!;
  if ((web.username === undefined) !== (web.password === undefined))
    violations.push({
      key: 'web.username',
      message: `web.${web.username === undefined ? 'username' : 'password'} is missing: basic auth needs both web.username and web.password (or neither)`,
    });
  // The last source that names a targets list wins as a whole (lists are not merged item by item).
  const withTargets = sources.filter((x) => x.raw.targets !== undefined).at(-1);
  const t = resolveTargets(withTargets?.raw.targets, out, withTargets?.name ?? 'defaults');
  violations.push(...t.violations);
  if (violations.length) throw configError(violations);
  return Object.freeze({ ...out, targets: Object.freeze(t.targets) }) as unknown as Settings;
}
