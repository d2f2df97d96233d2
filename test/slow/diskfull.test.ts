/**
 * Disk full: the service's data directory is a small tmpfs this test mounts (root). With the
 * disk filled, a run is reported as not stored (runner status, the page's API, MQTT with
 * `"stored": false`), the service keeps running and scheduling, nothing stored before is lost, and once
 * space returns the next run is stored and the error clears.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { createLogger } from '../../src/log.js';
import { type Service, startService } from '../../src/main.js';
import type { RunnerEvent } from '../../src/runner/runner.js';
import { startBtestServer } from '../helpers/btest.js';
import { BROKER_PASSWORD, BROKER_USER, Mosquitto, Recorder } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/rmbt.js';

const mnt = tempDir('bp-full-');
let broker: Mosquitto;
let btest: BtestServer;
let svc: Service;

function finishedRun(s: Service, target: string): Promise<Extract<RunnerEvent, { type: 'finished' }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no run finished within 30 s')), 30_000);
    const off = s.runner.on((e) => {
      if (e.type === 'finished' && e.target === target) {
        clearTimeout(timer);
        off();
        resolve(e);
      }
    });
    s.runner.enqueue(target, 'manual');
  });
}

/** Fills the filesystem with one file until the kernel says ENOSPC. */
function fill(path: string): number {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(64 * 1024, 0x55);
  let written = 0;
  try {
    for (let i = 0; i < 10_000; i++) written += writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return written;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0)
    throw new Error('the disk-full test mounts a tmpfs and needs root; CI runs as root');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]);
  broker = new Mosquitto();
  await broker.start();
  btest = await startBtestServer(new JsEngine(), { auth: 'none', user: 'x' });
  const settings = loadSettings({
    flags: {
      general: { data_dir: join(mnt, 'data'), log_level: 'silent', engine: 'native' },
      service: { busy_check: 'off' },
      web: { bind: '127.0.0.1', port: '0' },
      mqtt: { url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD },
    },
    env: {
      BANDWIDTH_PROBE_TARGETS: JSON.stringify([
        {
          id: 'lan',
          type: 'btest',
          host: `127.0.0.1:${btest.port}`,
          direction: 'both',
          duration: 1,
          interval: 1,
        },
      ]),
    },
  });
  svc = await startService(settings, createLogger('silent'), {
    version: 'test',
    birthDelayMs: [20, 50],
    backoffMs: [100, 400],
  });
}, 60_000);

afterAll(async () => {
  await svc?.close();
  await btest?.close();
  await broker?.stop();
  try {
    execFileSync('umount', [mnt]);
  } catch {}
});

describe('disk full under the data directory', () => {
  it('reports runs as not stored, keeps running, loses nothing, and recovers when space returns', async () => {
    const events = await Recorder.connect(broker.url, [`bandwidth_probe/${svc.deviceId}/lan/event`]);
    const status = async () =>
      (await (await fetch(`http://127.0.0.1:${svc.webPort}/api/status`)).json()) as {
        store_error: { code: string; lost_runs: number } | null;
      };

    const before = [await finishedRun(svc, 'lan'), await finishedRun(svc, 'lan')];
    expect(before.map((e) => e.stored)).toEqual([true, true]);
    const kept = before.map((e) => e.run_id!);

    const filler = join(mnt, 'filler');
    expect(fill(filler)).toBeGreaterThan(0);
    const full1 = await finishedRun(svc, 'lan');
    const full2 = await finishedRun(svc, 'lan');
    for (const e of [full1, full2]) {
      expect(e.stored).toBe(false);
      expect(e.run_id).toBeUndefined();
      expect(e.result.status).toBe('ok'); // the measurement itself was fine
    }
    expect(svc.runner.status().store_error).toMatchObject({ code: 'BP_ERR_STORE', lost_runs: 2 });
    expect((await status()).store_error).toMatchObject({ code: 'BP_ERR_STORE', lost_runs: 2 });
    // Published once each, marked as not stored.
    const notStored = await events.waitFor(
      `bandwidth_probe/${svc.deviceId}/lan/event`,
      (p) => JSON.parse(p).stored === false,
    );
    expect(JSON.parse(notStored.payload)).toMatchObject({ event_type: 'completed', run_id: null });
    // The service is alive: the page answers and the target is still scheduled.
    expect(svc.scheduler.entries().map((e) => e.target)).toEqual(['lan']);

    rmSync(filler);
    const after = await finishedRun(svc, 'lan');
    expect(after.stored).toBe(true);
    expect(svc.runner.status().store_error).toBeUndefined();
    expect((await status()).store_error).toBeNull();
    // Nothing stored before the disk filled was lost, and the database is sound.
    for (const id of kept) expect(svc.store.get(id)?.result.status).toBe('ok');
    expect(svc.store.counts().ok).toBe(3);
    expect(svc.store.integrity()).toBe('ok');
    await events.close();
  }, 180_000);
});
