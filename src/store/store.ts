import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { RunKind, RunResult, RunStatus } from '../measure/result.js';

/**
 * The run history in SQLite (better-sqlite3, WAL). One row per run: the figures HA and the page query
 * often as columns, the whole result (series included) as JSON. WAL with synchronous=NORMAL keeps every
 * committed run through a process crash (kill -9); a run is written in one transaction when it ends, so
 * a crash mid-run loses at most that run.
 */
export interface StoredRun {
  id: number;
  published: boolean;
  result: RunResult;
}

/** One run without its series: what tables, charts and exports need, read straight from columns. */
export interface RunSummary {
  id: number;
  target: string;
  kind: RunKind;
  started_at: string;
  finished_at: string;
  status: RunStatus;
  error_code: string | null;
  error: string | null;
  download_mbps: number | null;
  upload_mbps: number | null;
  ping_ms: number | null;
  jitter_ms: number | null;
  loss_percent: number | null;
  /** median round trip while the download / upload ran */
  download_latency_ms: number | null;
  upload_latency_ms: number | null;
  responsiveness_rpm: number | null;
  bufferbloat_grade: string | null;
  flags: string[];
  engine: string;
  server: string;
  trigger: string | null;
  /** inbound runs only: who tested to us and how, from the stored result */
  inbound?: InboundSummary;
}

/** The Served table's columns of an inbound run (the peer's view, as in the result). */
export interface InboundSummary {
  peer: string;
  user: string | null;
  protocol: string;
  direction: string;
  bytes_sent: number;
  bytes_received: number;
  duration_ms: number;
  lost_packets: number | null;
  remote_cpu_percent: number | null;
  end: string;
}

function inboundSummary(text: unknown): InboundSummary | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    const i = JSON.parse(text) as Record<string, unknown>;
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    return {
      peer: str(i.peer) ?? '',
      user: str(i.user),
      protocol: str(i.protocol) ?? '',
      direction: str(i.direction) ?? '',
      bytes_sent: num(i.bytes_sent) ?? 0,
      bytes_received: num(i.bytes_received) ?? 0,
      duration_ms: num(i.duration_ms) ?? 0,
      lost_packets: num(i.lost_packets),
      remote_cpu_percent: num(i.remote_cpu_percent),
      end: str(i.end) ?? '',
    };
  } catch {
    return undefined;
  }
}

export interface RunQuery {
  target?: string;
  /** leave this target's runs out (the page's own runs without the inbound tests) */
  excludeTarget?: string;
  /** ISO time; runs that started at or after it */
  since?: string;
  limit?: number;
}

/** Schema migrations, applied in order; PRAGMA user_version holds how many ran. Never edit a shipped one. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE runs (
     id INTEGER PRIMARY KEY,
     target TEXT NOT NULL,
     kind TEXT NOT NULL,
     started_at TEXT NOT NULL,
     finished_at TEXT NOT NULL,
     status TEXT NOT NULL,
     error_code TEXT,
     download_mbps REAL,
     upload_mbps REAL,
     ping_ms REAL,
     jitter_ms REAL,
     loss_percent REAL,
     result TEXT NOT NULL,
     published INTEGER NOT NULL DEFAULT 0
   );
   CREATE INDEX runs_target_started ON runs(target, started_at);
   CREATE INDEX runs_unpublished ON runs(id) WHERE published = 0;`,
];

export const DB_FILE = 'bandwidth-probe.db';

/** SQLite's words for a damaged file (extended codes included: SQLITE_CORRUPT_INDEX, …). */
export const isCorruption = (err: unknown): boolean =>
  /^SQLITE_(CORRUPT|NOTADB)/.test(String((err as { code?: string }).code ?? ''));

/** What the page and api/status show while the history is damaged (the runner's StoreError shape). */
export interface StoreHealth {
  code: 'BP_ERR_STORE_CORRUPT';
  message: string;
  at: string;
  lost_runs: number;
}

function storeError(err: unknown, what: string): ProbeError {
  const e = err as { code?: string; message?: string };
  if (isCorruption(err))
    return new ProbeError('BP_ERR_STORE_CORRUPT', `${what}: ${e.message ?? e.code}`, { cause: err });
  const hint =
    e.code === 'SQLITE_FULL'
      ? 'the disk is full'
      : e.code === 'SQLITE_READONLY'
        ? 'the data directory is read-only'
        : e.message;
  return new ProbeError('BP_ERR_STORE', `${what}: ${hint}`, { cause: err });
}

function parseFlags(v: unknown): string[] {
  if (typeof v !== 'string') return [];
  try {
    const a = JSON.parse(v) as unknown;
    return Array.isArray(a) ? a.map(String) : [];
  } catch {
    return [];
  }
}

export class Store {
  /** set once the history is known to be damaged (at open or by a failing query); see health() */
  private damaged: StoreHealth | undefined;

  private constructor(
    private readonly db: Database.Database,
    private readonly log?: Logger,
  ) {}

  /**
   * Opens (creating and migrating as needed) data_dir/bandwidth-probe.db. `maxPages` caps the file
   * (SQLite max_page_count, 4 KiB pages): past it, writes fail like on a full disk.
   *
   * A damaged file is found by `PRAGMA quick_check` here and by any query that fails
   * with SQLITE_CORRUPT later. It is never overwritten: by default the service goes on with a history in
   * memory (runs are measured, published and shown, and lost at restart) and says so in health(); with
   * `resetCorrupt` the file is renamed to `<db>.corrupt-<time>` (with its -wal/-shm) and a fresh one
   * started.
   */
  static open(
    dataDir: string,
    log?: Logger,
    opts: { maxPages?: number; resetCorrupt?: boolean } = {},
  ): Store {
    const path = join(dataDir, DB_FILE);
    const connect = (file: string) => {
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      if (opts.maxPages) db.pragma(`max_page_count = ${Math.floor(opts.maxPages)}`);
      return db;
    };
    let db: Database.Database | undefined;
    let damage: string | undefined;
    try {
      mkdirSync(dataDir, { recursive: true });
      db = connect(path);
      const check = db.pragma('quick_check(1)', { simple: true });
      if (check !== 'ok') damage = String(check).replace(/\s+/g, ' ').slice(0, 300);
    } catch (err) {
      if (!isCorruption(err)) {
        db?.close();
        throw storeError(err, `opening ${path}`);
      }
      damage = (err as Error).message;
    }
    if (damage === undefined) {
      const store = new Store(db!, log);
      store.migrate();
      return store;
    }
    db?.close();
    const at = new Date().toISOString();
    if (opts.resetCorrupt) {
      const aside = `${path}.corrupt-${at.replace(/[:.]/g, '-')}`;
      try {
        for (const ext of ['', '-wal', '-shm'])
          if (existsSync(path + ext)) renameSync(path + ext, aside + ext);
        db = connect(path);
      } catch (err) {
        throw storeError(err, `keeping the damaged ${path} aside`);
      }
      const store = new Store(db, log);
      store.migrate();
      store.damaged = {
        code: 'BP_ERR_STORE_CORRUPT',
        message: `the history in ${path} was damaged (${damage}); it is kept as ${aside} and a fresh history was started (service.reset_corrupt_db)`,
        at,
        lost_runs: 0,
      };
      log?.error({ code: 'BP_ERR_STORE_CORRUPT', damage, kept_as: aside }, 'damaged history kept aside');
      return store;
    }
    const store = new Store(connect(':memory:'), log);
    store.migrate();
    store.damaged = {
      code: 'BP_ERR_STORE_CORRUPT',
      message: `the history in ${path} is damaged (${damage}); it is left untouched and runs are kept in memory only, until the next start. Repair it (sqlite3 ${DB_FILE} ".recover"), or set service.reset_corrupt_db to keep it aside and start a fresh one`,
      at,
      lost_runs: 0,
    };
    log?.error({ code: 'BP_ERR_STORE_CORRUPT', damage, path }, 'damaged history: runs kept in memory only');
    return store;
  }

  /** Why the history is not what it should be (damaged), or undefined when it is fine. */
  health(): StoreHealth | undefined {
    return this.damaged;
  }

  /** Runs a query; a damaged file found on the way is remembered for health() (and the page). */
  private q<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw this.failed(err, what);
    }
  }

  private failed(err: unknown, what: string): ProbeError {
    const e = storeError(err, what);
    if (e.code === 'BP_ERR_STORE_CORRUPT') this.noteDamage(e.detail);
    return e;
  }

  private noteDamage(message: string): void {
    if (this.damaged) return;
    this.damaged = {
      code: 'BP_ERR_STORE_CORRUPT',
      message: `${message}. Restart the service: it checks the file and keeps it aside (service.reset_corrupt_db) or runs from memory`,
      at: new Date().toISOString(),
      lost_runs: 0,
    };
    this.log?.error({ code: 'BP_ERR_STORE_CORRUPT', err: message }, 'the history database is damaged');
  }

  private migrate(): void {
    const done = this.db.pragma('user_version', { simple: true }) as number;
    if (done > MIGRATIONS.length) {
      throw new ProbeError(
        'BP_ERR_STORE',
        `the database has schema ${done}, newer than this version knows (${MIGRATIONS.length})`,
      );
    }
    for (let v = done; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
      this.log?.info({ version: v + 1 }, 'database migrated');
    }
  }

  /** Stores a finished run; throws BP_ERR_STORE (disk full, read-only) and keeps what was stored before. */
  insert(r: RunResult): number {
    const loss = r.download?.udp?.loss_percent ?? r.upload?.udp?.loss_percent ?? null;
    try {
      const info = this.db
        .prepare(
          `INSERT INTO runs (target, kind, started_at, finished_at, status, error_code, download_mbps, upload_mbps,
             ping_ms, jitter_ms, loss_percent, result)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          r.target.id,
          r.target.kind,
          r.started_at,
          r.finished_at,
          r.status,
          r.error?.code ?? null,
          r.download?.mbps ?? null,
          r.upload?.mbps ?? null,
          r.ping?.median_ms ?? null,
          r.ping?.jitter_ms ?? r.download?.udp?.jitter_ms ?? null,
          loss,
          JSON.stringify(r),
        );
      return Number(info.lastInsertRowid);
    } catch (err) {
      throw this.failed(err, 'storing a run');
    }
  }

  /** A stored row, or undefined when its result is not JSON any more (a damaged row). */
  private row(x: { id: number; published: number; result: string }): StoredRun | undefined {
    try {
      return { id: x.id, published: x.published === 1, result: JSON.parse(x.result) as RunResult };
    } catch {
      this.noteDamage(`run ${x.id}'s stored result is damaged (not JSON)`);
      return undefined;
    }
  }

  private rows(xs: { id: number; published: number; result: string }[]): StoredRun[] {
    return xs.map((x) => this.row(x)).filter((r): r is StoredRun => r !== undefined);
  }

  get(id: number): StoredRun | undefined {
    const x = this.q(
      'reading a run',
      () =>
        this.db.prepare('SELECT id, published, result FROM runs WHERE id = ?').get(id) as
          | { id: number; published: number; result: string }
          | undefined,
    );
    if (!x) return undefined;
    const r = this.row(x);
    if (!r) throw new ProbeError('BP_ERR_STORE_CORRUPT', `run ${id}'s stored result is damaged`);
    return r;
  }

  /** Newest first. */
  list(q: RunQuery = {}): StoredRun[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.target) {
      where.push('target = ?');
      args.push(q.target);
    }
    if (q.excludeTarget) {
      where.push('target <> ?');
      args.push(q.excludeTarget);
    }
    if (q.since) {
      where.push('started_at >= ?');
      args.push(q.since);
    }
    const sql = `SELECT id, published, result FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY started_at DESC, id DESC LIMIT ?`;
    args.push(Math.max(1, Math.min(q.limit ?? 100, 10_000)));
    return this.rows(
      this.q(
        'reading runs',
        () => this.db.prepare(sql).all(...args) as { id: number; published: number; result: string }[],
      ),
    );
  }

  /** Newest first, without series (cheap for long ranges); `oldestFirst` for exports and charts. */
  summaries(
    q: RunQuery & { oldestFirst?: boolean; after?: { started_at: string; id: number } } = {},
  ): RunSummary[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.target) {
      where.push('target = ?');
      args.push(q.target);
    }
    if (q.excludeTarget) {
      where.push('target <> ?');
      args.push(q.excludeTarget);
    }
    if (q.since) {
      where.push('started_at >= ?');
      args.push(q.since);
    }
    const order = q.oldestFirst ? 'ASC' : 'DESC';
    if (q.after) {
      // keyset paging: the rows strictly after the last one of the previous page, in this order
      where.push(`(started_at, id) ${q.oldestFirst ? '>' : '<'} (?, ?)`);
      args.push(q.after.started_at, q.after.id);
    }
    // json_valid first: one damaged result must not fail the whole list
    const j = (path: string) => `CASE WHEN json_valid(result) THEN json_extract(result, '${path}') END`;
    const sql = `SELECT id, target, kind, started_at, finished_at, status, error_code, download_mbps, upload_mbps,
                   ping_ms, jitter_ms, loss_percent,
                   ${j('$.latency.download.median_ms')} AS download_latency_ms,
                   ${j('$.latency.upload.median_ms')} AS upload_latency_ms,
                   ${j('$.latency.responsiveness_rpm')} AS responsiveness_rpm,
                   ${j('$.latency.grade')} AS bufferbloat_grade,
                   ${j('$.flags')} AS flags, ${j('$.error.message')} AS error,
                   ${j('$.engine')} AS engine, ${j('$.trigger')} AS trig,
                   coalesce(${j('$.server.name')}, ${j('$.server.host')}) AS server,
                   ${j('$.inbound')} AS inbound
                 FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY started_at ${order}, id ${order} LIMIT ?`;
    args.push(Math.max(1, Math.min(q.limit ?? 100, 10_000)));
    // A failed or aborted run's partial figures are not a measurement: summaries (tables, charts, exports)
    // show none; the full result (api/runs/:id) keeps them for diagnosis.
    const fig = (x: Record<string, unknown>, k: string) =>
      x.status === 'ok' ? (x[k] as number | null) : null;
    const rows = this.q('reading runs', () => this.db.prepare(sql).all(...args) as Record<string, unknown>[]);
    return rows.map((x) => {
      const inbound = inboundSummary(x.inbound);
      return {
        id: x.id as number,
        target: x.target as string,
        kind: x.kind as RunKind,
        started_at: x.started_at as string,
        finished_at: x.finished_at as string,
        status: x.status as RunStatus,
        error_code: (x.error_code as string | null) ?? null,
        error: (x.error as string | null) ?? null,
        download_mbps: fig(x, 'download_mbps'),
        upload_mbps: fig(x, 'upload_mbps'),
        ping_ms: fig(x, 'ping_ms'),
        jitter_ms: fig(x, 'jitter_ms'),
        loss_percent: fig(x, 'loss_percent'),
        download_latency_ms: fig(x, 'download_latency_ms'),
        upload_latency_ms: fig(x, 'upload_latency_ms'),
        responsiveness_rpm: fig(x, 'responsiveness_rpm'),
        bufferbloat_grade: x.status === 'ok' ? ((x.bufferbloat_grade as string | null) ?? null) : null,
        flags: parseFlags(x.flags),
        engine: (x.engine as string | null) ?? '',
        server: (x.server as string | null) ?? '',
        trigger: (x.trig as string | null) ?? null,
        ...(inbound ? { inbound } : {}),
      };
    });
  }

  /**
   * Oldest first, `limit` rows in pages of `page`, waiting for `pause` before each page, so a
   * large export neither builds one string nor blocks other requests (20 parallel
   * exports of 8761 runs held healthz for 1.9 s). Pulled page by page: a slow reader holds one page.
   */
  async *summaryPages(
    q: Omit<RunQuery, 'limit'> & { limit: number },
    page = 250,
    pause: () => Promise<void> = () => new Promise<void>((r) => setImmediate(r)),
  ): AsyncGenerator<RunSummary[]> {
    let left = q.limit;
    let after: { started_at: string; id: number } | undefined;
    while (left > 0) {
      await pause();
      const rows = this.summaries({
        ...q,
        oldestFirst: true,
        limit: Math.min(page, left),
        ...(after ? { after } : {}),
      });
      if (!rows.length) return;
      left -= rows.length;
      const last = rows.at(-1)!;
      after = { started_at: last.started_at, id: last.id };
      yield rows;
    }
  }

  /** Runs per target and status (metrics). */
  countsByTarget(): { target: string; status: RunStatus; n: number }[] {
    return this.q(
      'counting runs',
      () =>
        this.db.prepare('SELECT target, status, COUNT(*) AS n FROM runs GROUP BY target, status').all() as {
          target: string;
          status: RunStatus;
          n: number;
        }[],
    );
  }

  /** A target's latest successful run (what a skipped run leaves the entities showing). */
  lastOk(target: string): StoredRun | undefined {
    return this.rows(
      this.q(
        'reading the last measurement',
        () =>
          this.db
            .prepare(
              "SELECT id, published, result FROM runs WHERE target = ? AND status = 'ok' ORDER BY id DESC LIMIT 1",
            )
            .all(target) as { id: number; published: number; result: string }[],
      ),
    )[0];
  }

  /** The latest run per target (what the entities show); a damaged row is left out. */
  latest(): StoredRun[] {
    return this.rows(
      this.q(
        'reading the latest runs',
        () =>
          this.db
            .prepare(
              `SELECT r.id, r.published, r.result FROM runs r
               JOIN (SELECT target, MAX(id) AS id FROM runs GROUP BY target) m ON m.id = r.id`,
            )
            .all() as { id: number; published: number; result: string }[],
      ),
    );
  }

  /**
   * Runs not yet published over MQTT, oldest first (replayed in order when the broker returns). A row
   * whose result is damaged is marked published (it cannot be sent, and must not block the queue).
   */
  unpublished(limit = 1000): StoredRun[] {
    const xs = this.q(
      'reading unpublished runs',
      () =>
        this.db
          .prepare('SELECT id, published, result FROM runs WHERE published = 0 ORDER BY id LIMIT ?')
          .all(limit) as { id: number; published: number; result: string }[],
    );
    const out: StoredRun[] = [];
    for (const x of xs) {
      const r = this.row(x);
      if (r) out.push(r);
      else this.markPublished(x.id);
    }
    return out;
  }

  markPublished(id: number): void {
    try {
      this.db.prepare('UPDATE runs SET published = 1 WHERE id = ?').run(id);
    } catch (err) {
      throw this.failed(err, 'marking a run published');
    }
  }

  counts(): Record<RunStatus, number> {
    const out: Record<RunStatus, number> = { ok: 0, failed: 0, aborted: 0, skipped: 0 };
    for (const x of this.q(
      'counting runs',
      () =>
        this.db.prepare('SELECT status, COUNT(*) AS n FROM runs GROUP BY status').all() as {
          status: RunStatus;
          n: number;
        }[],
    )) {
      out[x.status] = x.n;
    }
    return out;
  }

  /** Deletes runs that started more than `days` ago; returns how many went. */
  prune(days: number, now = Date.now()): number {
    const cutoff = new Date(now - days * 86_400_000).toISOString();
    try {
      return this.db.prepare('DELETE FROM runs WHERE started_at < ?').run(cutoff).changes;
    } catch (err) {
      throw this.failed(err, 'pruning old runs');
    }
  }

  /** The raw connection, for the crash test's child process only (it needs a transaction left open). */
  _dbForCrashTest(): Database.Database {
    return this.db;
  }

  /**
   * Moves the WAL into the database file and empties it (before a backup copies the file alone). Safe
   * while the service has the database open: SQLite coordinates the two connections.
   */
  checkpoint(): { busy: boolean; pages: number } {
    try {
      const r = this.db.pragma('wal_checkpoint(TRUNCATE)') as {
        busy: number;
        log: number;
        checkpointed: number;
      }[];
      return { busy: r[0]!.busy !== 0, pages: r[0]!.checkpointed };
    } catch (err) {
      throw this.failed(err, 'checkpointing the database');
    }
  }

  integrity(): string {
    return this.db.pragma('integrity_check', { simple: true }) as string;
  }

  close(): void {
    this.db.close();
  }
}
