import type { Engine, EngineJob, StreamOutcome } from '../engine/types.js';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { SERVER_SAMPLE_NS } from '../measure/speed.js';
import type { Channel } from '../net/channel.js';
import {
  ACCEPT_COMMANDS,
  ACCEPT_TOKEN,
  DEFAULT_CHUNK,
  GREETING_VERSION,
  MAX_CHUNK,
  MAX_CHUNKS,
  MIN_CHUNK,
  parseCommand,
} from './lines.js';
import { checkToken } from './token.js';

export interface SessionLimits {
  keys: readonly string[];
  /** longest GETTIME in seconds */
  maxDuration: number;
  idleTimeoutMs: number;
  /** how long the greeting and token may take (default idleTimeoutMs) */
  handshakeTimeoutMs?: number;
  /**
   * Called once the token is valid: undefined admits the connection, a text refuses it as busy (the
   * server's, the token's or the address's slots are taken) and says which.
   */
  onToken?: (uuid: string) => string | undefined;
  /** each bulk command's outcome, for the inbound-test record */
  onJob?: (cmd: 'GETCHUNKS' | 'GETTIME' | 'PUT' | 'PUTNORESULT', out: StreamOutcome) => void;
  /**
   * Bytes moved since the last call, checked twice a second while a bulk command runs: false ends it
   * (a daily quota is used up) and the connection with BP_ERR_QUOTA.
   */
  account?: (bytes: number) => boolean;
}

/** How often a running bulk command's bytes are put to `account`. */
const ACCOUNT_MS = 500;

/** Unknown commands in a row before the connection is closed (each is answered ERR, §3.2). */
const MAX_UNKNOWN = 8;
/**
 * Bytes we let queue in user space for a peer that does not read our lines before we stop reading its
 * commands (and, after the idle timeout, close): an ERR/ACCEPT flood cannot grow the process.
 */
export const MAX_QUEUED_LINES = 64 * 1024;

/** RMBTD sends PUT feedback when more than 1 ms passed since the last one (§3.2 PUT). */
const REPORT_NS = 1_000_000;
const hr = () => process.hrtime.bigint();

/**
 * One server-side RMBT connection after the transport is set up: greeting, token, then the command loop
 * exactly as the reference server answers (specs/rmbt.md §3.1, §3.2). Where RMBTD closes without a word
 * (bad token, bad chunk size) we send `ERR` first, as the newer Rust server does, so clients can say why.
 */
/** What one connection did, for the session's end line (RUSTD logs the same per connection). */
export interface SessionFigures {
  uuid?: string;
  token_version?: 1 | 2;
  commands: number;
  /** bytes we sent (GETCHUNKS/GETTIME) and received (PUT/PUTNORESULT) */
  sent_bytes: number;
  received_bytes: number;
  pings: number;
}

export async function serveSession(
  ch: Channel,
  engine: Engine,
  lim: SessionLimits,
  log?: Logger,
  fig: SessionFigures = { commands: 0, sent_bytes: 0, received_bytes: 0, pings: 0 },
): Promise<SessionFigures> {
  ch.writeLine(`RMBTv${GREETING_VERSION}`);
  ch.writeLine(ACCEPT_TOKEN);
  // Preamble: blank lines are skipped (some clients send one after the upgrade), QUIT answers BYE.
  for (;;) {
    const line = await ch.readLine(lim.handshakeTimeoutMs ?? lim.idleTimeoutMs);
    if (line.trim() === '') continue;
    const c = parseCommand(line);
    if (c.cmd === 'QUIT') return bye(ch, fig);
    if (c.cmd !== 'TOKEN') {
      ch.writeLine('ERR');
      throw new ProbeError('BP_ERR_PROTOCOL', `expected TOKEN, got ${JSON.stringify(line.slice(0, 60))}`);
    }
    // A v2 token is bound to the address the control server saw; check it against this connection's.
    const check = checkToken(c.token, lim.keys, Date.now(), ch.socket.remoteAddress);
    if (!check.ok) {
      ch.writeLine('ERR');
      log?.info({ event: 'token', result: 'refused', reason: check.reason }, 'RMBT token refused');
      throw new ProbeError(
        'BP_ERR_RMBT_TOKEN',
        check.reason === 'ip'
          ? `token refused: issued for another client address than ${ch.socket.remoteAddress}`
          : `token refused (${check.reason})`,
      );
    }
    fig.uuid = check.uuid;
    fig.token_version = check.version;
    const busy = lim.onToken?.(check.uuid);
    if (busy) {
      // A distinct answer, so clients can tell "busy" from a bad token (our client: BP_ERR_RMBT_BUSY; a
      // reference client sees an ERR as it would from RUSTD).
      ch.writeLine(`ERR BUSY ${busy}`);
      log?.info(
        { event: 'token', result: 'refused', reason: 'busy', busy, uuid: check.uuid },
        'RMBT token refused',
      );
      throw new ProbeError('BP_ERR_RMBT_BUSY', busy);
    }
    log?.info(
      { event: 'token', result: 'accepted', uuid: check.uuid, token_version: check.version },
      'RMBT token accepted',
    );
    // A token whose start is still ahead (inside the window) is answered when it begins (§3.1).
    if (check.waitMs > 0) await new Promise((r) => setTimeout(r, check.waitMs));
    break;
  }
  let cs = DEFAULT_CHUNK;
  ch.writeLine('OK');
  ch.writeLine(`CHUNKSIZE ${DEFAULT_CHUNK} ${MIN_CHUNK} ${MAX_CHUNK}`);

  let unknown = 0;
  for (;;) {
    ch.writeLine(ACCEPT_COMMANDS);
    await flushed(ch, lim.idleTimeoutMs);
    const line = await ch.readLine(lim.idleTimeoutMs);
    const c = parseCommand(line);
    fig.commands++;
    if ('chunkSize' in c && c.chunkSize !== undefined) {
      // The argument changes the connection's chunk size from then on (§3.2).
      if (c.chunkSize < MIN_CHUNK || c.chunkSize > MAX_CHUNK) {
        ch.writeLine('ERR');
        throw new ProbeError('BP_ERR_RMBT_CHUNKSIZE', `chunk size ${c.chunkSize} out of range`);
      }
      cs = c.chunkSize;
    }
    switch (c.cmd) {
      case 'GETCHUNKS':
      case 'GETTIME': {
        const ok =
          c.cmd === 'GETCHUNKS'
            ? c.count >= 1 && c.count <= MAX_CHUNKS
            : c.seconds >= 1 && c.seconds <= lim.maxDuration;
        if (!ok) {
          // RMBTD answers ERR; we close after it too (bad input ends the connection at once).
          ch.writeLine('ERR');
          throw new ProbeError('BP_ERR_PROTOCOL', `${c.cmd} argument out of range`);
        }
        unknown = 0;
        const start = hr();
        const job: EngineJob = {
          mode: 'send',
          framing: { kind: 'chunks', chunkSize: cs },
          chunks: [ch.chunkSet(cs, true)],
          until: c.cmd === 'GETCHUNKS' ? { count: c.count } : { durationNs: c.seconds * 1e9 },
          sampleNs: SERVER_SAMPLE_NS,
          idleTimeoutMs: lim.idleTimeoutMs,
        };
        const out = await runOne(engine, ch, job, start, lim, c.cmd);
        fig.sent_bytes += out.bytes;
        await expectOk(ch, lim);
        // TIME: from the start of sending until the client's OK was read (§3.2).
        ch.writeLine(`TIME ${hr() - start}`);
        break;
      }
      case 'PUT':
      case 'PUTNORESULT': {
        unknown = 0;
        ch.writeLine('OK');
        // The timer starts after OK is written (§3.2 PUT).
        const start = hr();
        const job: EngineJob = {
          mode: 'receive',
          framing: { kind: 'chunks', chunkSize: cs },
          sampleNs: SERVER_SAMPLE_NS,
          idleTimeoutMs: lim.idleTimeoutMs,
          maxDurationMs: (lim.maxDuration + 30) * 1000,
          ...(c.cmd === 'PUT' ? { report: { intervalNs: REPORT_NS } } : {}),
        };
        const out = await runOne(engine, ch, job, start, lim, c.cmd);
        fig.received_bytes += out.bytes;
        ch.writeLine(`TIME ${out.endNs}`);
        break;
      }
      case 'PING': {
        unknown = 0;
        ch.writeLine('PONG');
        const start = hr();
        await expectOk(ch, lim);
        ch.writeLine(`TIME ${hr() - start}`);
        fig.pings++;
        break;
      }
      case 'QUIT':
        return bye(ch, fig);
      default:
        log?.debug({ line: line.slice(0, 60) }, 'unknown command');
        ch.writeLine('ERR');
        // A known command with a malformed argument (`GETCHUNKS -1`, a 2^64 count) is bad input, not a
        // command from a newer client: the connection ends.
        if (/^(GETCHUNKS|GETTIME|PUT|PUTNORESULT|PING|QUIT|OK|TOKEN)\b/.test(line.trim()))
          throw new ProbeError('BP_ERR_PROTOCOL', `malformed ${line.trim().split(/\s/)[0]} command`);
        if (++unknown >= MAX_UNKNOWN)
          throw new ProbeError('BP_ERR_PROTOCOL', `${MAX_UNKNOWN} unknown commands in a row`);
    }
  }
}

/** Waits (up to the idle timeout) until what we queued for the peer is below MAX_QUEUED_LINES. */
async function flushed(ch: Channel, timeoutMs: number): Promise<void> {
  if (ch.socket.writableLength <= MAX_QUEUED_LINES) return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new ProbeError('BP_ERR_TIMEOUT', 'the peer does not read what we send'));
    }, timeoutMs);
    const done = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      ch.socket.off('drain', done);
      ch.socket.off('close', done);
    };
    ch.socket.once('drain', done);
    ch.socket.once('close', done);
  });
}

async function runOne(
  engine: Engine,
  ch: Channel,
  job: EngineJob,
  t0: bigint,
  lim: SessionLimits,
  cmd: 'GETCHUNKS' | 'GETTIME' | 'PUT' | 'PUTNORESULT',
) {
  const run = engine.run([ch], job, [t0]);
  let counted = 0;
  let over = false;
  const account = lim.account;
  const tick = account
    ? setInterval(() => {
        const now = run.counters[0] ?? 0;
        if (!account(now - counted)) {
          over = true;
          run.abort();
        }
        counted = now;
      }, ACCOUNT_MS)
    : undefined;
  try {
    const [out] = await run.done;
    account?.(out!.bytes - counted);
    // what moved counts for the inbound record even when the command failed or was cut short
    lim.onJob?.(cmd, out!);
    if (over) throw new ProbeError('BP_ERR_QUOTA', 'a daily quota of this server is used up');
    if (out!.error) throw ProbeError.fromJSON(out!.error);
    return out!;
  } finally {
    clearInterval(tick);
  }
}

async function expectOk(ch: Channel, lim: SessionLimits): Promise<void> {
  const line = await ch.readLine(lim.idleTimeoutMs);
  if (line !== 'OK') {
    ch.writeLine('ERR');
    throw new ProbeError('BP_ERR_PROTOCOL', `expected OK, got ${JSON.stringify(line.slice(0, 60))}`);
  }
}

function bye(ch: Channel, fig: SessionFigures): SessionFigures {
  ch.writeLine('BYE');
  ch.socket.end();
  return fig;
}
