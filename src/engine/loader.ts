import type { Logger } from '../log.js';
import { JsEngine } from './jsEngine.js';
import type { Engine } from './types.js';

export type EnginePreference = 'auto' | 'native' | 'js';

/**
 * Picks the engine: the native loop when asked for (or on auto) and it loads, else the JavaScript one.
 * Says why once. The native loop arrives with issue 3; until then every request resolves to js.
 */
export function loadEngine(pref: EnginePreference, log?: Logger): Engine {
  if (pref === 'js') return new JsEngine();
  const reason = 'no native build is available in this version';
  // Asked for explicitly, a missing native loop is worth a warning; on auto it is just information.
  const level = pref === 'native' ? 'warn' : 'info';
  log?.[level](
    { code: 'BP_ERR_NATIVE_LOAD', reason },
    'native engine not loaded; using the JavaScript engine',
  );
  return new JsEngine();
}
