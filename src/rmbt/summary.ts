import type { SummaryHooks } from '../cli/summary.js';

/** RMBT in the CLI summary: the transport and protocol version, and whether the result was submitted. */
export const rmbtSummary: SummaryHooks = {
  server: (r) => `${r.server.transport ?? '?'}${r.server.version ? `, RMBTv${r.server.version}` : ''}`,
  lines: (r) =>
    r.rmbt
      ? [
          `Result    ${r.rmbt.submitted ? 'submitted to the control server' : r.rmbt.submit_error ? `not submitted: ${r.rmbt.submit_error}` : r.rmbt.submit_skipped ? `not submitted: ${r.rmbt.submit_skipped}` : 'not submitted'}`,
        ]
      : [],
};
