import { describe, expect, it } from 'vitest';
import { parseMqttService } from '../../src/config/supervisor.js';

describe('Supervisor /services/mqtt reply (specs/ha-addon.md §4)', () => {
  it('reads host, port (string or int), ssl, credentials, and addon or app', () => {
    expect(
      parseMqttService({
        result: 'ok',
        data: {
          host: 'core-mosquitto',
          port: '1883',
          ssl: false,
          username: 'addons',
          password: 'pw',
          protocol: '3.1.1',
          addon: 'core_mosquitto',
        },
      }),
    ).toEqual({
      url: 'mqtt://core-mosquitto:1883',
      username: 'addons',
      password: 'pw',
      provider: 'core_mosquitto',
    });
    expect(
      parseMqttService({
        result: 'ok',
        data: { host: '172.30.32.1', port: 8883, ssl: true, app: 'core_mosquitto' },
      }),
    ).toEqual({
      url: 'mqtts://172.30.32.1:8883',
      provider: 'core_mosquitto',
    });
    expect(parseMqttService({ result: 'ok', data: { host: 'fd00::1', port: 1883 } }).url).toBe(
      'mqtt://[fd00::1]:1883',
    );
  });

  it('an error envelope or a malformed reply is BP_ERR_SUPERVISOR with the reason', () => {
    const code = (body: unknown) => {
      try {
        parseMqttService(body);
        return 'no error';
      } catch (err) {
        return `${(err as { code: string }).code}: ${(err as Error).message}`;
      }
    };
    expect(code({ result: 'error', message: 'No mqtt service available' })).toMatch(
      /^BP_ERR_SUPERVISOR: .*No mqtt service available/,
    );
    expect(code(null)).toMatch(/not a JSON object/);
    expect(code({ result: 'ok' })).toMatch(/no data/);
    expect(code({ result: 'ok', data: { host: 'h', port: 'x' } })).toMatch(/port "x" is not a port/);
    expect(code({ result: 'ok', data: { host: 'bad host!', port: 1 } })).toMatch(/no valid host/);
    expect(code({ result: 'ok', data: { port: 1883 } })).toMatch(/no valid host/);
  });
});
