import { allowedText, type Group } from '../config/fields.js';
import { envName } from '../config/load.js';
import { type GroupName, settingsSchema } from '../config/settings.js';
import { type CommandFlag, flagName } from './args.js';

/** `--help` text, built from the same schema the validator uses, so it cannot drift. */
export function helpText(
  usage: string,
  summary: string,
  groups: readonly GroupName[],
  extra: readonly CommandFlag[],
  prefixed: readonly GroupName[] = [],
): string {
  const lines = [
    `Usage: ${usage}`,
    '',
    summary,
    '',
    'A true/false setting is a switch: --flag alone is true; --flag false or --no-flag turns it off.',
    '',
  ];
  for (const e of extra)
    lines.push(`  --${e.name}${e.takesValue ? ' <value>' : ''}`, `      ${e.description}`);
  for (const group of groups) {
    lines.push('', `Settings (${group === 'general' ? 'top level' : group} in the options file):`);
    for (const [key, f] of Object.entries(settingsSchema[group] as Group)) {
      const def = 'default' in f && f.default !== undefined ? ` [default: ${String(f.default)}]` : '';
      // a switch: bare is true; `--x false` or `--no-x` turns it off
      lines.push(
        `  --${flagName(group, key, prefixed)}${f.type === 'bool' ? ' [true|false]' : ' <value>'}${def}`,
      );
      lines.push(`      ${f.description}`);
      lines.push(`      Allowed: ${allowedText(f)}. Env: ${envName(group, key)}`);
    }
  }
  return lines.join('\n');
}
