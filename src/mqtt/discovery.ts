import { INBOUND_TARGET } from '../measure/inbound.js';
import { GRADES } from '../measure/latency.js';
import { RUN_STATUSES } from '../measure/result.js';
import { EVENT_TYPES, PAYLOAD_RUN, type Topics } from './topics.js';

/**
 * Home Assistant device-based discovery (specs/ha-mqtt.md §2–§6), built by pure functions from a data
 * table. Full key names, not abbreviations (§7: readable, and HA accepts both). One retained message on
 * `<prefix>/device/<device>/config` holds every entity of every target.
 */
export interface DiscoveryTarget {
  id: string;
  name: string;
  /** the target's runs hold a ping (absent: they do); a protocol without one gets no ping entity */
  ping?: boolean;
  /** the target's runs hold a jitter (absent: they do) */
  jitter?: boolean;
  /** the target's runs hold a UDP loss */
  udp: boolean;
  /** seconds after which HA shows the figures as unavailable (0: never; disabled targets) */
  expireAfter: number;
  /**
   * the phases whose latency under load the target measures; absent: download and upload. A protocol
   * that loads one way at a time measures that direction (`both` has no download or upload latency of
   * its own); an empty list (loaded_latency off) has no latency entities.
   */
  latency?: readonly ('download' | 'upload' | 'both')[];
  /** figures of the target's protocol's own (its descriptor's measures().figures) */
  figures?: readonly {
    key: string;
    label: string;
    unit?: string;
    device_class?: string;
    precision?: number;
    icon?: string;
    diagnostic?: boolean;
  }[];
}

const loadedPhases = (t: DiscoveryTarget) => t.latency ?? ['download', 'upload'];

export interface DiscoveryInput {
  topics: Topics;
  deviceName: string;
  version: string;
  model: string;
  supportUrl?: string;
  /** the device page's link to the status page (HA ingress: homeassistant://hassio/ingress/<slug>) */
  configurationUrl?: string;
  targets: readonly DiscoveryTarget[];
  /** our servers run inside the service: the entities of the `inbound` pseudo-target */
  inbound?: { udp: boolean };
}

type Component = Record<string, unknown>;

/** Numeric sensors of a target: one row each (style.md: lookup tables live in data modules). */
const SENSORS: readonly {
  key: string;
  label: string;
  field: string;
  device_class: string;
  unit: string;
  precision: number;
  icon?: string;
  /** which targets measure it */
  on: (t: DiscoveryTarget) => boolean;
}[] = [
  {
    key: 'download',
    label: 'download',
    field: 'download_mbps',
    device_class: 'data_rate',
    unit: 'Mbit/s',
    precision: 1,
    icon: 'mdi:download-network',
    on: () => true,
  },
  {
    key: 'upload',
    label: 'upload',
    field: 'upload_mbps',
    device_class: 'data_rate',
    unit: 'Mbit/s',
    precision: 1,
    icon: 'mdi:upload-network',
    on: () => true,
  },
  // a target without pings would keep an entity that stays unknown forever
  {
    key: 'ping',
    label: 'ping',
    field: 'ping_ms',
    device_class: 'duration',
    unit: 'ms',
    precision: 2,
    on: (t) => t.ping !== false,
  },
  // jitter: the pings' jitter, or UDP's packet jitter (a TCP-only test without pings has none)
  {
    key: 'jitter',
    label: 'jitter',
    field: 'jitter_ms',
    device_class: 'duration',
    unit: 'ms',
    precision: 2,
    on: (t) => t.jitter !== false,
  },
  // Packet loss has no device class (§5): a plain % measurement.
  {
    key: 'loss',
    label: 'UDP loss',
    field: 'loss_percent',
    device_class: '',
    unit: '%',
    precision: 2,
    icon: 'mdi:package-variant-remove',
    on: (t) => t.udp,
  },
  // Latency under load: the median round trip while the line is full, per direction.
  {
    key: 'download_latency',
    label: 'download latency',
    field: 'download_latency_ms',
    device_class: 'duration',
    unit: 'ms',
    precision: 1,
    icon: 'mdi:timer-sand',
    on: (t) => loadedPhases(t).includes('download'),
  },
  {
    key: 'upload_latency',
    label: 'upload latency',
    field: 'upload_latency_ms',
    device_class: 'duration',
    unit: 'ms',
    precision: 1,
    icon: 'mdi:timer-sand',
    on: (t) => loadedPhases(t).includes('upload'),
  },
  // RPM has no device class: a plain measurement in round trips per minute, higher is better.
  {
    key: 'responsiveness',
    label: 'responsiveness',
    field: 'responsiveness_rpm',
    device_class: '',
    unit: 'RPM',
    precision: 0,
    icon: 'mdi:speedometer',
    on: (t) => loadedPhases(t).length > 0,
  },
];

/**
 * An entity's name: the target's name and the label, without repeating a word the target name already
 * ends with or contains ("Router UDP" + "UDP loss" → "Router UDP loss", "ISP server" + "server" →
 * "ISP server"). HA puts the device name in front.
 */
export function entityName(target: string, label: string): string {
  const words = new Set(target.toLowerCase().split(/\s+/));
  const rest = label.split(' ').filter((w, i) => !(i === 0 && words.has(w.toLowerCase())));
  return rest.length ? `${target} ${rest.join(' ')}` : target;
}

/** `{{ value_json.x }}` renders "None" for null, which HA takes as unknown (§5 "publish null, not 0"). */
const tpl = (field: string) => `{{ value_json.${field} }}`;

export function uniqueId(deviceId: string, targetId: string, key: string): string {
  return `${deviceId}_${targetId}_${key}`;
}

function targetComponents(input: DiscoveryInput, t: DiscoveryTarget): Record<string, Component> {
  const { topics } = input;
  const dev = topics.deviceId;
  const state = topics.state(t.id);
  const expire = t.expireAfter > 0 ? { expire_after: t.expireAfter } : {};
  // Predictable ids on every HA we support: `default_entity_id` (read from HA 2025.10 on) and the older
  // `object_id` (what HA 2024.12–2025.9 read). HA ≥ 2025.10 takes the new key and logs no deprecation
  // when both are present (home-assistant/core#151996; zigbee2mqtt sends both the same way, #28560).
  const ids = (platform: string, key: string) => ({
    default_entity_id: `${platform}.${dev}_${t.id}_${key}`,
    object_id: `${dev}_${t.id}_${key}`,
  });
  const name = (label: string) => entityName(t.name, label);
  const out: Record<string, Component> = {};
  for (const s of SENSORS) {
    if (!s.on(t)) continue;
    out[`${t.id}_${s.key}`] = {
      platform: 'sensor',
      unique_id: uniqueId(dev, t.id, s.key),
      ...ids('sensor', s.key),
      name: name(s.label),
      state_topic: state,
      value_template: tpl(s.field),
      ...(s.device_class ? { device_class: s.device_class } : {}),
      unit_of_measurement: s.unit,
      state_class: 'measurement',
      suggested_display_precision: s.precision,
      ...(s.icon ? { icon: s.icon } : {}),
      ...expire,
    };
  }
  for (const f of t.figures ?? []) {
    out[`${t.id}_${f.key}`] = {
      platform: 'sensor',
      unique_id: uniqueId(dev, t.id, f.key),
      ...ids('sensor', f.key),
      name: name(f.label),
      state_topic: state,
      // absent (a failed run, an older state): None, which HA shows as unknown
      value_template: `{{ (value_json.figures or {}).get('${f.key}') }}`,
      ...(f.device_class ? { device_class: f.device_class } : {}),
      ...(f.unit ? { unit_of_measurement: f.unit, state_class: 'measurement' } : {}),
      ...(f.precision !== undefined ? { suggested_display_precision: f.precision } : {}),
      ...(f.icon ? { icon: f.icon } : {}),
      ...(f.diagnostic ? { entity_category: 'diagnostic' } : {}),
      ...expire,
    };
  }
  if (loadedPhases(t).length > 0) {
    // An enum sensor: no unit or state class (HA refuses them on enums), the options list the grades.
    out[`${t.id}_bufferbloat_grade`] = {
      platform: 'sensor',
      unique_id: uniqueId(dev, t.id, 'bufferbloat_grade'),
      ...ids('sensor', 'bufferbloat_grade'),
      name: name('bufferbloat grade'),
      state_topic: state,
      value_template: tpl('bufferbloat_grade'),
      device_class: 'enum',
      options: [...GRADES],
      icon: 'mdi:chart-bell-curve',
      ...expire,
    };
  }
  out[`${t.id}_last_run`] = {
    platform: 'sensor',
    unique_id: uniqueId(dev, t.id, 'last_run'),
    ...ids('sensor', 'last_run'),
    name: name('last run'),
    state_topic: state,
    value_template: tpl('finished_at'),
    device_class: 'timestamp',
    entity_category: 'diagnostic',
  };
  out[`${t.id}_status`] = {
    platform: 'sensor',
    unique_id: uniqueId(dev, t.id, 'status'),
    ...ids('sensor', 'status'),
    name: name('last result'),
    state_topic: state,
    value_template: tpl('status'),
    device_class: 'enum',
    options: [...RUN_STATUSES],
    entity_category: 'diagnostic',
    json_attributes_topic: state,
    json_attributes_template:
      "{{ {'error_code': value_json.error_code, 'error': value_json.error, 'flags': value_json.flags, 'engine': value_json.engine} | tojson }}",
  };
  out[`${t.id}_server`] = {
    platform: 'sensor',
    unique_id: uniqueId(dev, t.id, 'server'),
    ...ids('sensor', 'server'),
    name: name('server'),
    state_topic: state,
    value_template: tpl('server'),
    icon: 'mdi:server-network',
    entity_category: 'diagnostic',
  };
  out[`${t.id}_below_threshold`] = {
    platform: 'binary_sensor',
    unique_id: uniqueId(dev, t.id, 'below_threshold'),
    ...ids('binary_sensor', 'below_threshold'),
    name: name('below threshold'),
    state_topic: state,
    value_template: tpl('below_threshold'),
    device_class: 'problem',
    ...expire,
  };
  out[`${t.id}_running`] = {
    platform: 'binary_sensor',
    unique_id: uniqueId(dev, t.id, 'running'),
    ...ids('binary_sensor', 'running'),
    name: name('running'),
    state_topic: topics.running(t.id),
    device_class: 'running',
    entity_category: 'diagnostic',
  };
  out[`${t.id}_run`] = {
    platform: 'button',
    unique_id: uniqueId(dev, t.id, 'run'),
    ...ids('button', 'run'),
    name: name('run now'),
    command_topic: topics.run(t.id),
    payload_press: PAYLOAD_RUN,
    icon: 'mdi:play-speed',
  };
  out[`${t.id}_event`] = {
    platform: 'event',
    unique_id: uniqueId(dev, t.id, 'event'),
    ...ids('event', 'run'),
    name: name('run'),
    state_topic: topics.event(t.id),
    event_types: [...EVENT_TYPES],
  };
  return out;
}

/**
 * The `inbound` pseudo-target: the last test a peer (a MikroTik router, another probe) ran
 * against our servers. Download and upload are the peer's view. No expiry: inbound tests come when the
 * peer likes, and the last one stays true until the next. No button: we cannot start the peer's test.
 */
function inboundComponents(input: DiscoveryInput): Record<string, Component> {
  const { topics } = input;
  const dev = topics.deviceId;
  const id = INBOUND_TARGET;
  const state = topics.state(id);
  const ids = (platform: string, key: string) => ({
    default_entity_id: `${platform}.${dev}_${id}_${key}`,
    object_id: `${dev}_${id}_${key}`,
  });
  const rate = (key: 'download' | 'upload', icon: string) => ({
    platform: 'sensor',
    unique_id: uniqueId(dev, id, key),
    ...ids('sensor', key),
    name: `Inbound ${key}`,
    state_topic: state,
    value_template: tpl(`${key}_mbps`),
    device_class: 'data_rate',
    unit_of_measurement: 'Mbit/s',
    state_class: 'measurement',
    suggested_display_precision: 1,
    icon,
  });
  const out: Record<string, Component> = {
    [`${id}_download`]: rate('download', 'mdi:download-network-outline'),
    [`${id}_upload`]: rate('upload', 'mdi:upload-network-outline'),
    [`${id}_peer`]: {
      platform: 'sensor',
      unique_id: uniqueId(dev, id, 'peer'),
      ...ids('sensor', 'peer'),
      name: 'Inbound peer',
      state_topic: state,
      value_template: '{{ value_json.inbound.peer if value_json.inbound is defined else None }}',
      icon: 'mdi:router-network',
      json_attributes_topic: state,
      json_attributes_template:
        '{{ (value_json.inbound if value_json.inbound is defined else {}) | tojson }}',
    },
    [`${id}_last_run`]: {
      platform: 'sensor',
      unique_id: uniqueId(dev, id, 'last_run'),
      ...ids('sensor', 'last_run'),
      name: 'Inbound last test',
      state_topic: state,
      value_template: tpl('finished_at'),
      device_class: 'timestamp',
      entity_category: 'diagnostic',
    },
    [`${id}_event`]: {
      platform: 'event',
      unique_id: uniqueId(dev, id, 'event'),
      ...ids('event', 'run'),
      name: 'Inbound test',
      state_topic: topics.event(id),
      // a served test is completed or failed; only the probe's own runs can be aborted or skipped
      event_types: EVENT_TYPES.filter((t) => t !== 'aborted' && t !== 'skipped'),
    },
  };
  if (input.inbound?.udp)
    out[`${id}_loss`] = {
      platform: 'sensor',
      unique_id: uniqueId(dev, id, 'loss'),
      ...ids('sensor', 'loss'),
      name: 'Inbound UDP loss',
      state_topic: state,
      value_template: tpl('loss_percent'),
      unit_of_measurement: '%',
      state_class: 'measurement',
      suggested_display_precision: 2,
      icon: 'mdi:package-variant-remove',
    };
  return out;
}

/** The whole discovery payload of the probe (the root options components inherit: availability, qos). */
export function discoveryPayload(input: DiscoveryInput): Record<string, unknown> {
  const { topics } = input;
  const components: Record<string, Component> = {
    run_all: {
      platform: 'button',
      unique_id: `${topics.deviceId}_run_all`,
      default_entity_id: `button.${topics.deviceId}_run_all`,
      object_id: `${topics.deviceId}_run_all`,
      name: 'Run all now',
      command_topic: topics.runAll,
      payload_press: 'all',
      icon: 'mdi:play-speed',
    },
  };
  for (const t of input.targets) Object.assign(components, targetComponents(input, t));
  if (input.inbound) Object.assign(components, inboundComponents(input));
  // qos on every component as well as at the root: the root's shared options before HA 2025.x had no
  // qos, so commands and state would otherwise be subscribed at QoS 0.
  for (const c of Object.values(components)) c.qos = 1;
  return {
    device: {
      identifiers: [topics.deviceId],
      name: input.deviceName,
      manufacturer: 'Bandwidth Probe',
      model: input.model,
      sw_version: input.version,
      ...(input.configurationUrl ? { configuration_url: input.configurationUrl } : {}),
    },
    origin: {
      name: 'bandwidth-probe',
      sw_version: input.version,
      ...(input.supportUrl ? { support_url: input.supportUrl } : {}),
    },
    availability_topic: topics.availability,
    payload_available: 'online',
    payload_not_available: 'offline',
    qos: 1,
    components,
  };
}

/**
 * Removing components (§2 "Removing things"): first republish with each vanished component reduced to
 * its platform, then the new payload without them. Returns the intermediate payload, or undefined when
 * nothing was removed.
 */
/**
 * The broker's retained copy of our discovery topic, read defensively (a retained
 * `{"components":{"zz":null}}` threw and stopped publishing). Anyone who can write that topic can put
 * anything there: only a JSON object's well-formed components (objects) survive; anything else is
 * treated as no previous config, and ours simply replaces it.
 */
export function parseRetainedDiscovery(text: string | undefined): Record<string, unknown> | undefined {
  if (!text) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const isObj = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObj(json)) return undefined;
  const comps = json.components ?? json.cmps;
  if (!isObj(comps)) return undefined;
  const kept: Record<string, Component> = {};
  for (const [k, v] of Object.entries(comps)) if (isObj(v)) kept[k] = v as Component;
  return { components: kept };
}

export function removalPayload(
  previous: Record<string, unknown> | undefined,
  next: Record<string, unknown>,
): Record<string, unknown> | undefined {
  const prev = (previous?.components ?? previous?.cmps) as Record<string, Component> | undefined;
  if (!prev) return undefined;
  const now = next.components as Record<string, Component>;
  const gone = Object.keys(prev).filter((k) => !(k in now));
  if (!gone.length) return undefined;
  const reduced: Record<string, Component> = { ...now };
  for (const k of gone) reduced[k] = { platform: String(prev[k]!.platform ?? prev[k]!.p ?? 'sensor') };
  return { ...next, components: reduced };
}

/** expire_after for a target: three periods plus the run timeout, so one missed run does not blank it. */
export function expireAfter(periodS: number, runTimeoutS: number): number {
  if (!Number.isFinite(periodS) || periodS <= 0) return 0;
  return Math.round(3 * periodS + runTimeoutS);
}
