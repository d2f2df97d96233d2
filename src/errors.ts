/**
 * The error catalogue. Every failure a user can meet carries a stable code (like fastify's FST_ERR_*)
 * and a sentence that says what to do. Codes are part of the public surface: results, logs, MQTT and the
 * API carry them, so never rename one.
 */
export const ERRORS = {
  BP_ERR_CONFIG: 'The configuration is invalid.',
  BP_ERR_CONFIG_FILE: 'The options file could not be read or is not valid JSON.',
  BP_ERR_USAGE: 'The command line is invalid; see --help.',
  BP_ERR_CONNECT: 'Could not connect to the server; check host, port and firewall.',
  BP_ERR_DNS: 'The server name could not be resolved; check the name and the IP version setting.',
  BP_ERR_TLS:
    'The TLS handshake failed; check the certificate, or allow self-signed certificates explicitly.',
  BP_ERR_TIMEOUT: 'The peer did not answer in time.',
  BP_ERR_STALLED: 'No data arrived for too long; the link or the server stalled.',
  BP_ERR_PEER_CLOSED: 'The peer closed the connection in the middle of the test.',
  BP_ERR_PROTOCOL: 'The peer sent something the protocol does not allow.',
  BP_ERR_ABORTED: 'The run was aborted.',
  BP_ERR_HTTP_UPGRADE: 'The server refused the HTTP upgrade; check the transport setting and the port.',
  BP_ERR_RMBT_TOKEN:
    'The measurement server rejected the token; check the shared key and the clocks of both machines.',
  BP_ERR_RMBT_BUSY:
    'The measurement server is busy (all its measurement slots, or those of this token or address, are taken); try again later.',
  BP_ERR_RMBT_CHUNKSIZE: 'The measurement server rejected the chunk size.',
  BP_ERR_RMBT_CONTROL: 'The RMBT control server answered with an error.',
  BP_ERR_RMBT_TERMS: 'The RMBT deployment requires you to accept its terms; read them and set accept_terms.',
  BP_ERR_RMBT_SERVER: 'The measurement server reported an error.',
  BP_ERR_BTEST_AUTH:
    'The btest server refused the user name or password; check them on the router (/tool bandwidth-server).',
  BP_ERR_BTEST_REFUSED: 'The btest server refused the test (wrong protocol, direction or a limit).',
  BP_ERR_NDT7_CONSENT:
    "M-Lab's servers publish every result with your public IP address as open data, kept indefinitely (https://www.measurementlab.net/privacy/); set accept_data_policy to consent, or use your own ndt7 server.",
  BP_ERR_NDT7_LOCATE:
    "M-Lab's Locate API could not be reached or gave no usable server; check locate_url and the network.",
  BP_ERR_NDT7_BUSY:
    "M-Lab has no capacity for this address now (Locate's rate limit or no free server); the run is skipped and tried later.",
  BP_ERR_NDT7_PROTOCOL:
    'The server does not speak ndt7 (no net.measurementlab.ndt.v7 subprotocol, or a refused upgrade).',
  BP_ERR_ENGINE: 'The measurement engine failed.',
  BP_ERR_NATIVE_LOAD: 'The native engine could not be loaded; the JavaScript engine is used instead.',
  BP_ERR_SERVER_LIMIT: 'The server refused the request because of a configured limit.',
  BP_ERR_QUOTA:
    "A server's daily quota (bytes or tests per address, or its total bytes) is used up; the test was refused or ended early.",
  BP_ERR_STORE: 'The data directory could not be written.',
  BP_ERR_STORE_CORRUPT:
    'The history database is damaged; nothing in it was overwritten (see DOCS.md, "A damaged history").',
  BP_ERR_LOCKED:
    'Another bandwidth-probe service uses this data directory; stop it or give this one its own.',
  BP_ERR_RUN_TIMEOUT: 'The run took longer than service.run_timeout and was stopped.',
  BP_ERR_MQTT: 'The MQTT broker could not be reached; results are kept and published when it is back.',
  BP_ERR_MQTT_AUTH:
    'The MQTT broker refused the user name or password; check mqtt.username and mqtt.password.',
  BP_ERR_SUPERVISOR:
    'The Home Assistant Supervisor did not provide an MQTT broker; install the Mosquitto add-on or set mqtt.url.',
} as const;

export type ErrorCode = keyof typeof ERRORS;

/**
 * Codes that mean "not now": the server side asked the client to come back later (M-Lab's Locate had no
 * capacity, or this address asked too often). Such a run is `skipped`, not failed, and the figures of
 * the last measurement stay what Home Assistant shows.
 */
export const SKIP_CODES: ReadonlySet<ErrorCode> = new Set(['BP_ERR_NDT7_BUSY']);

/** Longest detail text kept in an error (texts from the network enter here:). */
export const MAX_DETAIL = 512;

/** A string cut to `max` characters, ending in "…" when it was longer. */
export function bounded(s: string, max = MAX_DETAIL): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export class ProbeError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;

  constructor(code: ErrorCode, rawDetail?: string, options?: { cause?: unknown }) {
    // Config and usage errors list every local problem (not network text): they get more room.
    const room =
      code === 'BP_ERR_CONFIG' || code === 'BP_ERR_CONFIG_FILE' || code === 'BP_ERR_USAGE'
        ? 8192
        : MAX_DETAIL;
    const detail = rawDetail === undefined ? undefined : bounded(rawDetail, room);
    super(detail ? `${ERRORS[code]} (${detail})` : ERRORS[code], options);
    this.name = 'ProbeError';
    this.code = code;
    this.detail = detail ?? '';
  }

  /** Rebuilds an error that crossed a boundary as JSON (engine outcomes, stored runs). */
  static fromJSON(j: { code: ErrorCode; message: string }): ProbeError {
    const e = new ProbeError(j.code);
    e.message = bounded(String(j.message), 8192 + 200);
    return e;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Maps any thrown value to a ProbeError, keeping a code if it has one and classifying socket errors. */
export function toProbeError(err: unknown, fallback: ErrorCode = 'BP_ERR_PROTOCOL'): ProbeError {
  if (err instanceof ProbeError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  const msg = e?.message ?? String(err);
  switch (e?.code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return new ProbeError('BP_ERR_CONNECT', msg, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ProbeError('BP_ERR_DNS', msg, { cause: err });
    case 'ECONNRESET':
    case 'EPIPE':
      return new ProbeError('BP_ERR_PEER_CLOSED', msg, { cause: err });
    case 'ETIMEDOUT':
      return new ProbeError('BP_ERR_TIMEOUT', msg, { cause: err });
    case 'ABORT_ERR':
      return new ProbeError('BP_ERR_ABORTED', msg, { cause: err });
  }
  if (
    e?.code?.startsWith('ERR_TLS') ||
    e?.code?.startsWith('ERR_SSL') ||
    /certificate|SSL routines/i.test(msg)
  ) {
    return new ProbeError('BP_ERR_TLS', msg, { cause: err });
  }
  if (e?.name === 'AbortError') return new ProbeError('BP_ERR_ABORTED', msg, { cause: err });
  return new ProbeError(fallback, msg, { cause: err });
}
