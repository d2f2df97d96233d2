import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { settingsSchema } from '../../src/config/schema.js';
import { targetSchema } from '../../src/config/targets.js';

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
