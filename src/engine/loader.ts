import { toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { JsEngine } from './jsEngine.js';
import { loadAddon, NativeEngine } from './native.js';
import type { Engine } from './types.js';

export type EnginePreference = 'auto' | 'native' | 'js';

let cached: { engine?: NativeEngine; reason?: string } | undefined;

/** Loads the native addon once per process; remembers why it failed. */
export function nativeEngine(): { engine?: NativeEngine; reason?: string } {
  if (!cached) {
    try {
      cached = { engine: new NativeEngine(loadAddon()) };
    } catch (err) {
      cached = { reason: toProbeError(err).detail || String(err) };
    }
  }
  return cached;
}

/**
 * Picks the engine: the native loop when asked for (or on auto) and it loads, else the JavaScript one.
 * `BANDWIDTH_PROBE_ENGINE=js` (the `engine` setting) forces js. Says why once.
 */
export function loadEngine(pref: EnginePreference, log?: Logger): Engine {
  if (pref === 'js') return new JsEngine();
  const n = nativeEngine();
  if (n.engine) return n.engine;
  // Asked for explicitly, a missing native loop is worth a warning; on auto it is information.
  const level = pref === 'native' ? 'warn' : 'info';
  log?.[level](
    { code: 'BP_ERR_NATIVE_LOAD', reason: n.reason },
    'native engine not loaded; using the JavaScript engine',
  );
  return new JsEngine();
}
