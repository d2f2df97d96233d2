import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeCommand,
  decodeJoin,
  decodeMd5Answer,
  decodeStatus,
  encodeCommand,
  encodeStatus,
} from '../../src/btest/codec.js';
import {
  clientHello,
  clientProof,
  parseClientHello,
  serverConfirm,
  serverKey,
  verifier,
} from '../../src/btest/ecsrp5.js';
import { loadSettings } from '../../src/config/load.js';
import { parseMqttService } from '../../src/config/supervisor.js';
import { ProbeError } from '../../src/errors.js';
import { WsDecoder } from '../../src/net/ws.js';
import { parseChunkSize, parseCommand, parseGreeting, parseTime } from '../../src/rmbt/lines.js';
import { tempDir } from '../helpers/rmbt.js';

/**
 * Property-based tests (fast-check) for the parsers that read the network or the user's files: random
 * and truncated input gives a result or a coded ProbeError — never another exception.
 */
const RUNS = { numRuns: 400 };

/** Calls f; a thrown value must be a ProbeError with a code. */
function coded<T>(f: () => T): T | ProbeError {
  try {
    return f();
  } catch (err) {
    if (!(err instanceof ProbeError)) throw new Error(`not a coded error: ${String(err)}`);
    expect(err.code).toMatch(/^BP_ERR_/);
    return err;
  }
}

const text = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  // lines that look almost right
  fc
    .tuple(
      fc.constantFrom('RMBTv', 'CHUNKSIZE ', 'TIME ', 'BYTES ', 'GETTIME ', 'PUT ', 'PING', 'OK', 'ACCEPT '),
      fc.string({ maxLength: 40 }),
    )
    .map(([a, b]) => a + b),
);

describe('RMBT lines', () => {
  it('greeting, CHUNKSIZE, TIME and client commands: a value or BP_ERR_*', () => {
    fc.assert(
      fc.property(text, (line) => {
        coded(() => parseGreeting(line));
        coded(() => parseChunkSize(line));
        coded(() => parseTime(line));
        coded(() => parseCommand(line));
      }),
      RUNS,
    );
  });
});

describe('WebSocket frames', () => {
  it('random bytes in random pieces: payload or BP_ERR_PROTOCOL, and payload never exceeds the input', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        (server, pieces) => {
          let payload = 0;
          let input = 0;
          const d = new WsDecoder(
            server,
            (p) => {
              payload += p.length;
            },
            () => {},
          );
          for (const p of pieces) {
            input += p.length;
            const r = coded(() => d.push(Buffer.from(p)));
            if (r instanceof ProbeError) break;
          }
          expect(payload).toBeLessThanOrEqual(input);
        },
      ),
      RUNS,
    );
  });
});

describe('btest frames', () => {
  const bytes = fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b));

  it('command, join, status and MD5 answer: a value or BP_ERR_*', () => {
    fc.assert(
      fc.property(bytes, (b) => {
        const cmd = coded(() => decodeCommand(b));
        // what decodes re-encodes to the same 16 bytes
        if (!(cmd instanceof ProbeError)) expect(encodeCommand(cmd).equals(b)).toBe(true);
        coded(() => decodeJoin(b));
        const st = coded(() => decodeStatus(b));
        if (!(st instanceof ProbeError)) expect(encodeStatus(st).equals(b)).toBe(true);
        coded(() => decodeMd5Answer(b));
      }),
      RUNS,
    );
  });

  it('EC-SRP5 messages from a hostile peer: BP_ERR_*, never a crash', () => {
    const salt = Buffer.alloc(16, 7);
    const v = verifier('admin', 'pw', salt);
    const hello = clientHello('admin', 12345n);
    fc.assert(
      fc.property(
        fc
          .oneof(
            fc.uint8Array({ maxLength: 80 }),
            // the lengths the parsers accept, with random content (points off the curve, any parity)
            fc.uint8Array({ minLength: 49, maxLength: 49 }),
            fc
              .tuple(fc.string({ maxLength: 8 }), fc.uint8Array({ minLength: 33, maxLength: 33 }))
              .map(([u, k]) => Uint8Array.from([...Buffer.from(u.replace(/\0/g, '')), 0, ...k])),
          )
          .map((b) => Buffer.from(b)),
        (msg) => {
          coded(() => clientProof(hello.state, 'pw', msg));
          const h = coded(() => parseClientHello(msg));
          if (!(h instanceof ProbeError)) {
            const k = coded(() => serverKey(h, v, salt, 999n));
            if (!(k instanceof ProbeError)) coded(() => serverConfirm(k.state, msg.subarray(0, 32)));
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('Supervisor reply and options file', () => {
  it('/services/mqtt: any JSON value gives a broker or BP_ERR_SUPERVISOR', () => {
    const data = fc.record(
      {
        host: fc.oneof(fc.string({ maxLength: 30 }), fc.integer(), fc.constant(null)),
        port: fc.oneof(fc.integer({ min: -5, max: 70000 }), fc.string({ maxLength: 6 }), fc.constant(null)),
        ssl: fc.oneof(fc.boolean(), fc.string({ maxLength: 5 })),
        username: fc.oneof(fc.string({ maxLength: 10 }), fc.integer()),
        addon: fc.string({ maxLength: 10 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue(), fc.record({ result: fc.constantFrom('ok', 'error'), data })),
        (body) => {
          const r = coded(() => parseMqttService(body));
          if (r instanceof ProbeError) expect(r.code).toBe('BP_ERR_SUPERVISOR');
          else expect(r.url).toMatch(/^mqtts?:\/\/\S+:\d+$/);
        },
      ),
      RUNS,
    );
  });

  it('a broken or hostile options file is BP_ERR_CONFIG or BP_ERR_CONFIG_FILE', () => {
    const dir = tempDir();
    const file = join(dir, 'options.json');
    const doc = fc.oneof(
      fc.string({ maxLength: 100 }),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc
        .record(
          {
            log_level: fc.jsonValue(),
            targets: fc.oneof(
              fc.jsonValue(),
              fc.array(
                fc.dictionary(
                  fc.constantFrom('id', 'type', 'host', 'control_url', 'schedule', 'interval', 'x'),
                  fc.jsonValue(),
                ),
              ),
            ),
            mqtt: fc.jsonValue(),
            service: fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue()),
          },
          { requiredKeys: [] },
        )
        .map((v) => JSON.stringify(v)),
    );
    fc.assert(
      fc.property(doc, (content) => {
        writeFileSync(file, content);
        const r = coded(() => loadSettings({ optionsFile: file, optionsFileRequired: true }));
        if (r instanceof ProbeError) expect(['BP_ERR_CONFIG', 'BP_ERR_CONFIG_FILE']).toContain(r.code);
      }),
      { numRuns: 300 },
    );
  });
});
