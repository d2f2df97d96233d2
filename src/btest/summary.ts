import type { SummaryHooks } from '../cli/summary.js';

/** btest in the CLI summary: TCP or UDP, the direction and the login method. */
export const btestSummary: SummaryHooks = {
  server: (r) =>
    r.btest ? `btest ${r.btest.protocol} ${r.btest.direction}, auth ${r.btest.auth}` : undefined,
};
