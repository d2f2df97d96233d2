// The JSON API and what the page knows of the service (one shared state object).
export const state = {
  /** the last api/status answer */
  status: null,
  /** the history's range in days */
  range: 1,
};

export async function api(path, opts) {
  const r = await fetch(path, { headers: { accept: 'application/json' }, ...opts });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || `HTTP ${r.status}`);
  return body;
}

export const targetName = (id) => state.status?.targets.find((t) => t.id === id)?.name || id;
