// The protocols the probe speaks, as the page needs them (labels, served-server lines, setup examples).
// protocols/index.js is made by the server from its protocol registry.
import list from './protocols/index.js';

export const protocols = list;

/** The page module of a target type or an inbound kind (`btest-server`). */
export const protocol = (typeOrKind) => list.find((p) => p.type === typeOrKind || p.kind === typeOrKind);
