import type { Settings } from '../config/settings.js';
import { resolveTargets, type TargetSettings } from '../config/targets.js';
import type { Engine } from '../engine/types.js';
import type { Logger } from '../log.js';
import { PROTOCOLS } from '../protocols/registry.js';
import type { Undo } from './undo.js';

/**
 * No targets configured: measure against our own server on loopback (the first protocol that offers a
 * self-test), so a fresh install shows a real result and the whole pipeline (store, page) works before
 * anything is set up. Returns the targets the service runs: the configured ones, or the loopback one.
 */
export async function selfTestTargets(
  s: Settings,
  engine: Engine,
  log: Logger,
  undo: Undo,
): Promise<{ targets: readonly TargetSettings[]; selfTest: boolean }> {
  if (s.targets.length) return { targets: s.targets, selfTest: false };
  const groups = s as unknown as Record<string, unknown>;
  const p = PROTOCOLS.find((x) => x.selfTest && x.server)!;
  const loopback = await p.selfTest!(groups[p.server!.group] as never, { general: s.general, engine, log });
  undo.push(() => loopback.close());
  const r = resolveTargets([loopback.target], groups, 'built-in loopback target');
  log.warn(
    { publish_self_test: s.service.publish_self_test },
    'no targets configured: running the loopback self-test (this machine\'s speed, not your line); add a target (DOCS.md "Targets")',
  );
  return { targets: r.targets, selfTest: true };
}
