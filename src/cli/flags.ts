import { MAX_CLIENTS, MAX_RAMP_S } from '../load/load.js';
import type { CommandFlag, RawGroups } from './command.js';

/** Flags every command takes. */
export const COMMON: CommandFlag[] = [
  {
    name: 'options',
    description: 'JSON options file (the add-on reads /data/options.json). Env: BANDWIDTH_PROBE_OPTIONS',
    takesValue: true,
  },
  { name: 'help', description: 'Show this help.', takesValue: false },
];

/** Flags of a command that runs one measurement and reports it. */
export const MEASURE: CommandFlag[] = [
  ...COMMON,
  { name: 'json', description: 'Print the result as one JSON document on stdout.', takesValue: false },
  {
    name: 'csv',
    description:
      "Append the run as one line to this CSV file (a header line first when the file is new or empty; the page export's columns).",
    takesValue: true,
  },
];

/** Flags of `load <type>`. */
export const LOAD: CommandFlag[] = [
  ...COMMON,
  { name: 'json', description: 'Print the report as one JSON document on stdout.', takesValue: false },
  {
    name: 'clients',
    description: `Concurrent clients, 1 to ${MAX_CLIENTS} (default 16).`,
    takesValue: true,
  },
  {
    name: 'ramp',
    description: `Seconds over which the clients start, evenly (0 = all at once; default 0, at most ${MAX_RAMP_S}).`,
    takesValue: true,
  },
  {
    name: 'allow-public',
    description:
      'Load a server at a public address too (refused otherwise: load only servers you own, on your own network).',
    takesValue: false,
  },
];

/** Interactive commands log warnings only, so their summary stays readable. */
export const QUIET: RawGroups = { general: { log_level: 'warn' } };
