import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort } from './proc.js';
import { tempDir } from './rmbt.js';

/**
 * A real Mosquitto broker for tests (apt-get install mosquitto in .ci/run), on a free loopback port, with
 * a password file (it must belong to the mosquitto user or the broker refuses it) and persistence, so a
 * stop/start keeps retained messages and persistent sessions like a real installation.
 */
export const BROKER_USER = 'probe';
export const BROKER_PASSWORD = 'probe-secret';

function waitPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > until) reject(new Error(`mosquitto did not listen on ${port}`));
        else setTimeout(tryOnce, 50);
      });
    };
    tryOnce();
  });
}

export class Mosquitto {
  private proc: ChildProcess | undefined;
  readonly dir = tempDir('bp-mosq-');
  port = 0;
  /** a second, TLS listener when started with a certificate */
  tlsPort = 0;
  log = '';

  /** `tls`: PEM cert and key (self-signed is fine; clients trust the cert itself as their CA). */
  constructor(private readonly tls?: { cert: string; key: string }) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (!this.port) {
      this.port = await freePort();
      const pw = join(this.dir, 'passwd');
      writeFileSync(pw, '');
      execFileSync('mosquitto_passwd', ['-b', pw, BROKER_USER, BROKER_PASSWORD]);
      const uid = Number(execFileSync('id', ['-u', 'mosquitto']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'mosquitto']).toString().trim());
      chownSync(pw, uid, gid);
      const tlsLines: string[] = [];
      if (this.tls) {
        this.tlsPort = await freePort();
        writeFileSync(join(this.dir, 'cert.pem'), this.tls.cert);
        writeFileSync(join(this.dir, 'key.pem'), this.tls.key, { mode: 0o600 });
        chownSync(join(this.dir, 'key.pem'), uid, gid);
        tlsLines.push(
          `listener ${this.tlsPort} 127.0.0.1`,
          `certfile ${this.dir}/cert.pem`,
          `keyfile ${this.dir}/key.pem`,
        );
      }
      chownSync(this.dir, uid, gid);
      writeFileSync(
        join(this.dir, 'mosquitto.conf'),
        [
          // per_listener_settings false: one password file for both listeners
          'allow_anonymous false',
          `password_file ${pw}`,
          'persistence true',
          `persistence_location ${this.dir}/`,
          'user mosquitto',
          `listener ${this.port} 127.0.0.1`,
          ...tlsLines,
          '',
        ].join('\n'),
      );
    }
    this.proc = spawn('mosquitto', ['-c', join(this.dir, 'mosquitto.conf')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stderr!.on('data', (d) => {
      this.log += d;
    });
    this.proc.stdout!.on('data', (d) => {
      this.log += d;
    });
    await waitPort(this.port, 5000);
  }

  /** SIGTERM, as a service manager would: the broker saves its persistence file and exits. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGTERM');
    });
    this.proc = undefined;
  }
}

export interface Message {
  topic: string;
  payload: string;
  retain: boolean;
  /** the broker re-delivered it (a QoS 1 message whose PUBACK it had not read before it stopped) */
  dup: boolean;
  at: number;
}

/** A test-side MQTT client that records every message. */
export class Recorder {
  readonly messages: Message[] = [];
  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) =>
      this.messages.push({
        topic,
        payload: payload.toString(),
        retain: packet.retain,
        dup: packet.dup,
        at: Date.now(),
      }),
    );
  }

  /** `clientId` with clean=false keeps its session (and queued QoS 1 messages) across broker restarts. */
  static async connect(url: string, topics: string[], clientId?: string): Promise<Recorder> {
    const client = mqtt.connect(url, {
      username: BROKER_USER,
      password: BROKER_PASSWORD,
      reconnectPeriod: 200,
      ...(clientId ? { clientId, clean: false } : {}),
    });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    await client.subscribeAsync(topics, { qos: 1 });
    return new Recorder(client);
  }

  on(topic: string) {
    return this.messages.filter((m) => m.topic === topic);
  }

  last(topic: string) {
    return this.on(topic).at(-1);
  }

  /** Resolves when a message on `topic` satisfies `pred` (bounded). */
  async waitFor(
    topic: string,
    pred: (payload: string, m: { retain: boolean }) => boolean = () => true,
    timeoutMs = 20_000,
    from = 0,
  ): Promise<Message> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.slice(from).find((x) => x.topic === topic && pred(x.payload, x));
      if (m) return m;
      if (Date.now() > until) throw new Error(`no matching message on ${topic} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
