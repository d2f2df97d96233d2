import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { settingsSchema } from '../../src/config/settings.js';
import { targetSchema } from '../../src/config/targets.js';
import { ERRORS } from '../../src/errors.js';

const docs = readFileSync(join(import.meta.dirname, '../../DOCS.md'), 'utf8');

/** The options table of one group: the `### …` section whose title names it (general: "top level"). */
function section(group: string): string {
  const parts = docs.split(/^### /m);
  const want = group === 'general' ? '(top level)' : `(\`${group}\`)`;
  const found = parts.find((p) => p.split('\n')[0]!.includes(want));
  expect(found, `DOCS.md has no section for ${group}`).toBeDefined();
  return found!;
}

describe('DOCS.md', () => {
  for (const [group, schema] of Object.entries({ ...settingsSchema, targets: targetSchema })) {
    it(`documents exactly the ${group} settings, with their defaults`, () => {
      const text = section(group);
      const rows = new Map<string, string>();
      for (const m of text.matchAll(/^\| `([a-z_]+)` \| ([^|]+) \|/gm)) rows.set(m[1]!, m[2]!);
      expect([...rows.keys()].sort()).toEqual(Object.keys(schema).sort());
      for (const [key, f] of Object.entries(schema)) {
        if ('default' in f && f.default !== undefined)
          expect(rows.get(key)).toContain(`\`${String(f.default)}\``);
        else expect(rows.get(key)!.trim()).toBe('—');
      }
    });
  }
});

describe('DOCS.md reads top-down for a user', () => {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
  const internals = readFileSync(join(import.meta.dirname, '../../docs/internals.md'), 'utf8');

  it('troubleshooting has every error code with what to do', () => {
    const at = docs.indexOf('## Troubleshooting');
    expect(at).toBeGreaterThan(0);
    const table = docs.slice(at, docs.indexOf('\n## ', at + 5));
    for (const code of Object.keys(ERRORS))
      expect(table, code).toMatch(new RegExp(`^\\| \`${code}\` \\| [^|]+ \\| [^|]+ \\|$`, 'm'));
  });

  it('in the order a user needs: install, targets, Home Assistant, page, troubleshooting, options', () => {
    const order = [
      '## Installing',
      '## The first start',
      '## Targets',
      '## In Home Assistant',
      '## The status page',
      '## Troubleshooting',
      '## Options',
    ].map((h) => docs.indexOf(h));
    expect(order.every((x) => x > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    // protocol internals live in docs/internals.md
    expect(docs).not.toContain('## How an RMBT measurement works');
    expect(internals).toContain('## How an RMBT measurement works');
    expect(internals).toContain('## Limits');
  });

  it('no stale lines, no files outside the repository, the minimum HA version everywhere', () => {
    for (const text of [docs, readme, internals]) {
      expect(text).not.toMatch(/are being built|in later versions/);
      expect(text).not.toContain('../shared');
      expect(text).not.toMatch(/2024\.11/);
    }
    expect(docs).not.toMatch(/TCP `both` is refused/);
    expect(docs).toContain('2024.12 or newer');
    expect(readFileSync(join(import.meta.dirname, '../../config.yaml'), 'utf8')).toContain(
      'homeassistant: 2024.12.0',
    );
    // the entity ids the automations use are the ones discovery asks for
    expect(docs).toContain('binary_sensor.bwprobe_<id>_isp_below_threshold');
  });

  it('README: one apt-get line for a fresh Debian/Ubuntu, and npm_config_nodedir', () => {
    expect(readme).toMatch(/apt-get install[^\n]*g\+\+[^\n]*make[^\n]*python3[^\n]*mosquitto[^\n]*chromium/);
    expect(readme).toContain('npm_config_nodedir');
  });
});
