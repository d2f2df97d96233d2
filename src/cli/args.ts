import { type Field, type Group, kebab } from '../config/fields.js';
import type { RawSettings } from '../config/load.js';
import { type GroupName, settingsSchema } from '../config/settings.js';
import { ProbeError } from '../errors.js';

/** Flags that are not settings. */
export interface CommandFlag {
  name: string;
  description: string;
  takesValue: boolean;
}

export interface ParsedArgs {
  positionals: string[];
  settings: RawSettings;
  extra: Record<string, string | boolean>;
}

interface FlagTarget {
  group: GroupName;
  key: string;
  field: Field;
}

/**
 * Command-line flags derived from the settings schema: `--log-level debug`, `--threads=3`, `--tls-insecure`,
 * `--no-submit-results`. Groups are given per command so one flag name means one key.
 */
/**
 * The flag of a setting: `--<key>`, or `--<group>-<key>` for a group the command prefixes (serve's
 * `--mqtt-password` and `--web-password` are two settings; a bare `--password` would be either).
 */
export function flagName(group: GroupName, key: string, prefixed: readonly GroupName[] = []): string {
  return prefixed.includes(group) ? `${kebab(group)}-${kebab(key)}` : kebab(key);
}

export function parseArgs(
  argv: readonly string[],
  groups: readonly GroupName[],
  extra: readonly CommandFlag[],
  prefixed: readonly GroupName[] = [],
): ParsedArgs {
  const byFlag = new Map<string, FlagTarget>();
  for (const group of groups) {
    for (const [key, field] of Object.entries(settingsSchema[group] as Group)) {
      const flag = flagName(group, key, prefixed);
      const clash = byFlag.get(flag);
      // A command whose groups share a key name would make one flag mean two settings.
      if (clash) throw new Error(`--${flag} is both ${clash.group}.${key} and ${group}.${key}`);
      byFlag.set(flag, { group, key, field });
    }
  }
  const extraByName = new Map(extra.map((e) => [e.name, e]));
  const out: ParsedArgs = { positionals: [], settings: {}, extra: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      out.positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    let name = arg.slice(2, eq < 0 ? undefined : eq);
    let value: string | boolean | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    const takeNext = (): string => {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--'))
        throw new ProbeError('BP_ERR_USAGE', `--${name} needs a value`);
      i++;
      return next;
    };
    // A switch takes an optional true|false after it, as the help says (`--tls-insecure false`); a
    // bare switch is true.
    const switchValue = (): string => {
      if (value !== undefined) return String(value);
      const next = argv[i + 1];
      if (next === 'true' || next === 'false') {
        i++;
        return next;
      }
      return 'true';
    };
    const ex = extraByName.get(name);
    if (ex) {
      if (ex.takesValue) out.extra[name] = value ?? takeNext();
      else {
        const v = switchValue();
        if (v !== 'true' && v !== 'false')
          throw new ProbeError('BP_ERR_USAGE', `--${name} takes true or false, not "${v}"`);
        if (v === 'true') out.extra[name] = true;
      }
      continue;
    }
    let target = byFlag.get(name);
    if (!target && name.startsWith('no-') && byFlag.get(name.slice(3))?.field.type === 'bool') {
      name = name.slice(3);
      target = byFlag.get(name);
      value = 'false';
    }
    if (!target) {
      const known = [...byFlag.keys(), ...extraByName.keys()].map((k) => `--${k}`).join(', ');
      throw new ProbeError('BP_ERR_USAGE', `unknown flag --${name}; known: ${known}`);
    }
    if (value === undefined) value = target.field.type === 'bool' ? switchValue() : takeNext();
    const group = out.settings[target.group] ?? {};
    group[target.key] = value;
    out.settings[target.group] = group;
  }
  return out;
}
