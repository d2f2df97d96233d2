import type { GeneralSettings } from '../config/schema.js';
import type { Logger } from '../log.js';

/** Flags that are not settings. */
export interface CommandFlag {
  name: string;
  description: string;
  takesValue: boolean;
}

/** Settings as flags or an options file give them: group → key → raw value. */
export type RawGroups = { [group: string]: Record<string, unknown> | undefined };

/**
 * One CLI command. The protocol-neutral ones live in src/cli.ts; a protocol brings its own (`measure
 * <type>`, `server <type>`, `load <type>`) in its descriptor. `S` is the part of the settings it reads.
 */
export interface Command<
  S extends { readonly general: GeneralSettings } = { readonly general: GeneralSettings },
> {
  usage: string;
  summary: string;
  /** where it stands in the top-level --help list (lower first) */
  order: number;
  /** the settings groups whose keys are its flags */
  groups: readonly string[];
  /** groups whose flags carry the group's name (`--mqtt-url`), where two groups share a key */
  prefixed?: readonly string[];
  flags: readonly CommandFlag[];
  /** a usage error in the settings (a missing --host): exit 2 with the usage line, before anything runs */
  check?(s: S): string | undefined;
  /** turns a flag that is not a setting into settings before they are validated (`--key-file`) */
  prepare?(extra: Record<string, string | boolean>, flags: RawGroups): void;
  /** interactive commands log only warnings unless told otherwise, so the summary stays readable */
  defaults?: RawGroups;
  run(
    s: S,
    log: Logger,
    extra: Record<string, string | boolean>,
    signal: AbortSignal,
    /** the settings given as flags on this command line (not from a file or the environment) */
    given: RawGroups,
  ): Promise<number>;
}
