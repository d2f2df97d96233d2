import { PROTOCOLS } from '../protocols/registry.js';
import type { Field, Group } from './fields.js';
import { allowedText } from './fields.js';
import { type GroupName, settingsSchema } from './settings.js';
import { targetSchema } from './targets.js';

/**
 * The add-on's `config.yaml` options/schema and `translations/en.yaml`, derived from the settings schema
 * (style.md: one source of truth). `npm run addon:generate` writes them; a test fails when the committed
 * files drift from what this produces.
 *
 * Every setting is optional in the add-on (`type?` in `schema`, absent from `options`), so the UI shows a
 * short form and the probe's own defaults apply; only `targets` is listed in `options`, as the one thing
 * a user sets. Groups are nested dicts, `targets` a list of dicts (Supervisor allows two levels).
 */

/** Supervisor's schema element for one field (specs/ha-addon.md §1 "options / schema syntax"). */
export function addonElement(f: Field, required = false): string {
  const q = required ? '' : '?';
  switch (f.type) {
    case 'bool':
      return `bool${q}`;
    case 'int':
      return `int(${f.min},${f.max})${q}`;
    case 'float':
      return `float(${f.min},${f.max})${q}`;
    case 'enum':
      return `list(${f.values.join('|')})${q}`;
    case 'str':
      if (f.secret) return `password${f.maxLength ? `(,${f.maxLength})` : ''}${q}`;
      if (f.pattern) return `match(${f.pattern.source})${q}`;
      return `str${f.maxLength ? `(,${f.maxLength})` : ''}${q}`;
  }
}

/**
 * A target item takes the target keys plus every protocol's client keys. Where two protocols have a key
 * (duration, ip_version, io_timeout…) the add-on field is their union: the wider range, all enum values,
 * a pattern only when both have the same one; the probe then checks the value against the target's own
 * type when it loads.
 */
function targetItemFields(): Record<string, Field> {
  const out: Record<string, Field> = {};
  const merge = (a: Field, b: Field): Field => {
    if ((a.type === 'int' || a.type === 'float') && (b.type === 'int' || b.type === 'float'))
      return {
        ...a,
        type: a.type === 'float' || b.type === 'float' ? 'float' : 'int',
        min: Math.min(a.min, b.min),
        max: Math.max(a.max, b.max),
      };
    if (a.type === 'enum' && b.type === 'enum')
      return { ...a, values: [...new Set([...a.values, ...b.values])] };
    if (a.type === 'str' && b.type === 'str' && a.pattern && a.pattern.source === b.pattern?.source)
      return a.maxLength === b.maxLength
        ? a
        : { ...a, maxLength: Math.max(a.maxLength ?? 4096, b.maxLength ?? 4096) };
    if (a.type === 'str' && b.type === 'str')
      return {
        type: 'str',
        description: a.description,
        ...(a.secret || b.secret ? { secret: true } : {}),
        maxLength: Math.max(a.maxLength ?? 4096, b.maxLength ?? 4096),
      };
    return a;
  };
  for (const g of PROTOCOLS.map((p) => (p.groups as Readonly<Record<string, Group>>)[p.type]!))
    for (const [k, f] of Object.entries(g)) out[k] = out[k] ? merge(out[k]!, f) : f;
  // the target's own keys win (ip_version with `both`)
  for (const [k, f] of Object.entries(targetSchema as Group)) out[k] = f;
  return out;
}

/**
 * Settings the add-on does not offer, because there they have no effect or only break things: the
 * history must stay in /data (what the Supervisor keeps and backs up), the image drops root itself, and
 * ingress reaches the page on 0.0.0.0:8099 (ingress_port). Standalone users still have them.
 */
export const NOT_IN_ADDON: Partial<Record<GroupName, readonly string[]>> = {
  general: ['data_dir', 'run_as'],
  web: ['bind', 'port'],
};
const offered = (group: GroupName, g: Group) =>
  Object.entries(g).filter(([k]) => !NOT_IN_ADDON[group]?.includes(k));

export interface AddonOptions {
  options: Record<string, unknown>;
  schema: Record<string, unknown>;
}

export function addonOptionsAndSchema(): AddonOptions {
  const schema: Record<string, unknown> = {};
  for (const [group, g] of Object.entries(settingsSchema) as [GroupName, Group][]) {
    const fields = Object.fromEntries(offered(group, g).map(([k, f]) => [k, addonElement(f)]));
    if (group === 'general') Object.assign(schema, fields);
    else schema[group] = fields;
  }
  const item = targetItemFields();
  schema.targets = [
    Object.fromEntries(Object.entries(item).map(([k, f]) => [k, addonElement(f, k === 'id')])),
  ];
  return { options: { targets: [] }, schema };
}

/**
 * The whole config.yaml (specs/ha-addon.md §1). Keys at their Supervisor default are left out (the
 * linter flags them). armv7 stays in `arch` for older Supervisors; HA dropped 32-bit in 2025.12.
 */
export function addonConfig(version: string, url: string): Record<string, unknown> {
  return {
    name: 'Bandwidth Probe',
    version,
    slug: 'bandwidth_probe',
    description:
      'Scheduled RMBT and MikroTik btest measurements as Home Assistant entities, with a status page',
    url,
    arch: ['aarch64', 'amd64', 'armv7'],
    // the HA base image runs s6-overlay as its own init
    init: false,
    ingress: true,
    panel_icon: 'mdi:speedometer',
    panel_title: 'Bandwidth',
    services: ['mqtt:want'],
    // Device-based MQTT discovery (`homeassistant/device/<id>/config`) arrived in HA 2024.12
    // (home-assistant/core#118757, its docs home-assistant.io#33072 merged after the 2024.11 beta cut);
    // HA 2024.2 in the harness logs "Integration device is not supported" and creates nothing.
    homeassistant: '2024.12.0',
    // SIGTERM aborts a run and publishes offline within a few seconds
    timeout: 30,
    // a hot backup copies the database after a WAL checkpoint, without the WAL files
    backup_pre: 'node /app/dist/cli.js checkpoint',
    backup_exclude: ['*.db-wal', '*.db-shm'],
    // Our servers, each off until the user gives it a host port in the Network panel and
    // turns the server on. No host_network: it is not needed for the outbound tests, costs a point
    // of security rating, and the mapped ports serve TCP fully and UDP in the common case (DOCS.md).
    ports: Object.fromEntries(Object.keys(ADDON_PORTS).map((k) => [k, null])),
    ports_description: ADDON_PORTS,
    ...addonOptionsAndSchema(),
  };
}

/** The container ports the add-on offers to map (every protocol's), by number, with the Network panel's text. */
export const ADDON_PORTS: Record<string, string> = Object.fromEntries(
  PROTOCOLS.flatMap((p) => Object.entries(p.addon?.ports ?? {})).sort(
    ([a], [b]) => Number.parseInt(a, 10) - Number.parseInt(b, 10),
  ),
);

const title = (key: string) => {
  const words = key.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
};
const describe = (f: Field) => {
  const d = f.description.trim();
  return f.type === 'enum' ? `${d} (${allowedText(f)})` : d;
};

/** translations/en.yaml: a name and description per option, `fields` for nested ones. */
export function addonTranslations(): Record<string, unknown> {
  const configuration: Record<string, unknown> = {};
  const GROUP_TEXT: Record<string, readonly [string, string]> = {
    ...Object.assign({}, ...PROTOCOLS.map((p) => p.addon?.groups ?? {})),
    service: ['Service', 'Scheduling, timeouts, history and the busy-line check.'],
    mqtt: ['MQTT', 'Broker and Home Assistant discovery. Empty: the broker the Supervisor offers.'],
    web: ['Status page', 'The page behind ingress, its API and metrics.'],
  };
  for (const [group, g] of Object.entries(settingsSchema) as [GroupName, Group][]) {
    const entries = Object.fromEntries(
      offered(group, g).map(([k, f]) => [k, { name: title(k), description: describe(f) }]),
    );
    if (group === 'general') Object.assign(configuration, entries);
    else {
      const [name, description] = GROUP_TEXT[group] ?? [title(group), ''];
      configuration[group] = { name, description, fields: entries };
    }
  }
  configuration.targets = {
    name: 'Targets',
    description:
      'What to measure: each item is an RMBT or btest target with its own schedule and thresholds; any RMBT or btest setting may be given per target.',
    fields: Object.fromEntries(
      Object.entries(targetItemFields()).map(([k, f]) => [k, { name: title(k), description: describe(f) }]),
    ),
  };
  return { configuration, network: ADDON_PORTS };
}
