import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { addonConfig, addonTranslations, NOT_IN_ADDON } from '../../src/config/addon.js';
import { loadSettings } from '../../src/config/load.js';
import { settingsSchema } from '../../src/config/settings.js';
import { targetSchema } from '../../src/config/targets.js';

/**
 * The add-on files against the linter's JSON schemas (copies in test/fixtures/schemas, equal to
 * ../shared/schemas where that sits beside the repo) and against the settings schema they come from.
 */
const root = join(import.meta.dirname, '../..');
const read = (p: string) => readFileSync(join(root, p), 'utf8');
const fixture = (name: string) =>
  JSON.parse(read(`test/fixtures/schemas/${name}`)) as Record<string, unknown>;
const pkg = JSON.parse(read('package.json')) as { version: string; homepage: string };
const config = parse(read('config.yaml')) as Record<string, unknown> & { schema: Record<string, unknown> };
const build = parse(read('build.yaml')) as Record<string, unknown>;
type Entry = { name: string; description: string; fields?: Record<string, Entry> };
const translations = parse(read('translations/en.yaml')) as { configuration: Record<string, Entry> };

/** The linter's schema with its Python-only `(?P<name>…)` groups made ECMAScript (schemas/README.md). */
function patched(schema: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema).replace(/\(\?P<[a-z_]+>/g, '(')) as Record<string, unknown>;
}

function validate(schemaFile: string, doc: unknown): string[] {
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  const ok = ajv.validate(patched(fixture(schemaFile)), doc);
  return ok ? [] : (ajv.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}

/** Supervisor's RE_SCHEMA_ELEMENT (specs/ha-addon.md §1), as ECMAScript. */
const ELEMENT =
  /^(?:bool|email|url|port|device(?:\(subsystem=[a-z]+\))?|str(?:\((?:-?\d+)?,(?:-?\d+)?\))?|password(?:\((?:-?\d+)?,(?:-?\d+)?\))?|int(?:\((?:-?\d+)?,(?:-?\d+)?\))?|float(?:\((?:-?[\d.]+)?,(?:-?[\d.]+)?\))?|match\(.*\)|list\([^|]+(?:\|[^|]+)*\))\??$/;

describe('add-on files', () => {
  it('the schema copies equal the shared ones', () => {
    for (const f of ['addon-config.schema.json', 'addon-build.schema.json']) {
      const shared = join(root, '../shared/schemas', f);
      if (existsSync(shared)) expect(fixture(f)).toEqual(JSON.parse(readFileSync(shared, 'utf8')));
    }
  });

  it('config.yaml and build.yaml pass the linter schemas', () => {
    expect(validate('addon-config.schema.json', config)).toEqual([]);
    expect(validate('addon-build.schema.json', build)).toEqual([]);
    // the validation bites: a wrong arch and a missing slug are caught
    expect(validate('addon-config.schema.json', { ...config, arch: ['sparc'], slug: undefined })).not.toEqual(
      [],
    );
    expect(validate('addon-build.schema.json', { build_from: { sparc: 'x' } })).not.toEqual([]);
    // and the linter's own checks that are not schema: no watchdog, no webui with ingress
    expect(config.watchdog).toBeUndefined();
    expect(config.webui).toBeUndefined();
    expect(config.version).toBe(pkg.version);
    // the servers' ports, none mapped until the user maps them; each explained; they match
    // the servers' default ports, and no host_network
    const ports = config.ports as Record<string, number | null>;
    expect(Object.values(ports).every((v) => v === null)).toBe(true);
    expect(Object.keys(config.ports_description as object)).toEqual(Object.keys(ports));
    const s = loadSettings();
    const udp = Array.from(
      { length: s.btest_server.max_sessions },
      (_, i) => `${s.btest_server.udp_port_start + i}/udp`,
    );
    expect(Object.keys(ports).sort()).toEqual(
      [
        `${s.btest_server.port}/tcp`,
        ...udp,
        `${s.rmbt_server.control_port}/tcp`,
        `${s.rmbt_server.port}/tcp`,
        `${s.rmbt_server.tls_port}/tcp`,
        `${s.ndt7_server.port}/tcp`,
      ].sort(),
    );
    expect(config.host_network).toBeUndefined();
    expect(validate('addon-config.schema.json', { ...config, ports: { '2000/tcp': 'x' } })).not.toEqual([]);
    expect(Object.keys(build.build_from as object).sort()).toEqual([...(config.arch as string[])].sort());
  });

  it('config.yaml is what the generator writes (no drift from the settings schema)', () => {
    const { options, schema, ...head } = addonConfig(pkg.version, pkg.homepage);
    expect(config.options).toEqual(options);
    expect(config.schema).toEqual(schema);
    expect({ ...config, options: undefined, schema: undefined }).toEqual({
      ...head,
      options: undefined,
      schema: undefined,
    });
    expect(parse(read('translations/en.yaml'))).toEqual(addonTranslations());
  });

  it('every schema element is one the Supervisor accepts', () => {
    const walk = (v: unknown, at: string): void => {
      if (typeof v === 'string') expect(v, at).toMatch(ELEMENT);
      else if (Array.isArray(v)) for (const [i, x] of v.entries()) walk(x, `${at}[${i}]`);
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${at}.${k}`);
    };
    walk(config.schema, 'schema');
    // at most two levels: dicts of elements, and one list of dicts
    const targets = config.schema.targets as unknown[];
    expect(targets).toHaveLength(1);
    for (const v of Object.values(targets[0] as object)) expect(typeof v).toBe('string');
  });

  it("config.yaml's schema and translations cover exactly the settings schema's keys the add-on offers", () => {
    // not offered where they have no effect (the history must stay in /data, ingress needs 0.0.0.0:8099)
    expect(NOT_IN_ADDON).toEqual({ general: ['data_dir', 'run_as'], web: ['bind', 'port'] });
    const keep = (g: string, keys: string[]) =>
      keys.filter((k) => !(NOT_IN_ADDON as Record<string, readonly string[]>)[g]?.includes(k));
    const groups = Object.entries(settingsSchema).map(
      ([g, f]) => [g, Object.fromEntries(keep(g, Object.keys(f)).map((k) => [k, 1]))] as const,
    );
    const general = keep('general', Object.keys(settingsSchema.general));
    const top = [...general, ...groups.filter(([g]) => g !== 'general').map(([g]) => g), 'targets'].sort();
    expect(Object.keys(config.schema).sort()).toEqual(top);
    expect(Object.keys(translations.configuration).sort()).toEqual(top);
    for (const [g, fields] of groups) {
      if (g === 'general') continue;
      expect(Object.keys(config.schema[g] as object).sort(), g).toEqual(Object.keys(fields).sort());
      expect(Object.keys(translations.configuration[g]!.fields!).sort(), g).toEqual(
        Object.keys(fields).sort(),
      );
    }
    const item = Object.keys((config.schema.targets as object[])[0]!).sort();
    const expected = [
      ...new Set([
        ...Object.keys(targetSchema),
        ...Object.keys(settingsSchema.rmbt),
        ...Object.keys(settingsSchema.btest),
        ...Object.keys(settingsSchema.ndt7),
      ]),
    ].sort();
    expect(item).toEqual(expected);
    expect(Object.keys(translations.configuration.targets!.fields!).sort()).toEqual(expected);
    // passwords are password fields; only the target id is required
    expect((config.schema.mqtt as Record<string, string>).password).toMatch(/^password/);
    expect((config.schema.targets as Record<string, string>[])[0]!.id).not.toMatch(/\?$/);
    for (const [k, v] of Object.entries((config.schema.targets as Record<string, string>[])[0]!))
      if (k !== 'id') expect(v, k).toMatch(/\?$/);
  });

  it('the add-on assets exist: icon 128×128 and logo PNGs, DOCS, CHANGELOG, AppArmor profile', () => {
    const png = (p: string) => {
      const b = readFileSync(join(root, p));
      expect(b.subarray(1, 4).toString(), p).toBe('PNG');
      return { w: b.readUInt32BE(16), h: b.readUInt32BE(20) };
    };
    expect(png('icon.png')).toEqual({ w: 128, h: 128 });
    expect(png('logo.png').w).toBeGreaterThan(0);
    for (const f of ['DOCS.md', 'CHANGELOG.md', 'apparmor.txt', 'Dockerfile'])
      expect(existsSync(join(root, f)), f).toBe(true);
  });

  it('the AppArmor profile parses (apparmor_parser) and confines: no blanket file rule, writes only to /data, /run, /tmp', () => {
    const text = readFileSync(join(root, 'apparmor.txt'), 'utf8');
    // apparmor_parser checks the syntax and the includes without a kernel (.ci/run installs apparmor)
    execFileSync('apparmor_parser', ['-Q', '-K', join(root, 'apparmor.txt')], { stdio: 'pipe' });
    const rules = text
      .split('\n')
      .map((l) => l.replace(/#.*/, '').trim())
      .filter(Boolean);
    expect(rules).not.toContain('file,');
    const writable = rules
      .filter((r) => !r.startsWith('deny') && /^\/\S*\s+[a-z]*w[a-z]*,$/.test(r))
      .map((r) => r.split(/\s+/)[0]!);
    expect(writable.length).toBeGreaterThan(0);
    for (const path of writable) expect(path, path).toMatch(/^\/(data|run|tmp)\/|^\/dev\/tty$|^\/data\/$/);
    expect(rules).toContain('/app/** r,');
    expect(rules).toContain('capability setuid,');
  });

  it('the s6 service gets the container environment and starts the probe without root', () => {
    // s6-overlay v3 clears the environment of services unless they go through with-contenv
    const run = readFileSync(join(root, 'addon/rootfs/etc/s6-overlay/s6-rc.d/bandwidth-probe/run'), 'utf8');
    expect(run.split('\n')[0]).toMatch(/^#!\/(command|usr\/bin)\/with-contenv /);
    expect(run).toMatch(/exec node \/app\/dist\/cli\.js serve --options "\$opts"/);
    // and it drops root for `probe` before the probe starts (the image test checks the uid)
    expect(run).toMatch(/exec setpriv --reuid=probe --regid=probe --init-groups/);
  });
});
