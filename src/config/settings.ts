import { protocolGroups } from '../protocols/registry.js';
import type { GroupValue } from './fields.js';
import { generalSchema, mqttSchema, serviceSchema, webSchema } from './schema.js';
import type { TargetSettings } from './targets.js';

/**
 * The whole settings schema: the top-level `general` keys, every protocol's groups (in the registry's
 * order), then the service, MQTT and page groups. Groups map to sections of the options file and to the
 * flags of one CLI command: `general` everywhere, `rmbt` for `measure rmbt`, `rmbt_server` for `server
 * rmbt`.
 */
export const settingsSchema = {
  general: generalSchema,
  ...protocolGroups,
  service: serviceSchema,
  mqtt: mqttSchema,
  web: webSchema,
} as const;

export type GroupName = keyof typeof settingsSchema;

export type Settings = { readonly [G in GroupName]: GroupValue<(typeof settingsSchema)[G]> } & {
  /** measurement targets of `serve` (the options file's `targets` list; env BANDWIDTH_PROBE_TARGETS as JSON) */
  readonly targets: readonly TargetSettings[];
};
