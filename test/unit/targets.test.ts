import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/load.js';
import { tempDir } from '../helpers/rmbt.js';

const withTargets = (targets: unknown, groups: Record<string, unknown> = {}) => {
  const file = join(tempDir(), 'options.json');
  writeFileSync(file, JSON.stringify({ ...groups, targets }));
  return loadSettings({ optionsFile: file, optionsFileRequired: true });
};

describe('targets (options file list)', () => {
  it('inherit the rmbt/btest groups and override per target', () => {
    const s = withTargets(
      [
        {
          id: 'isp',
          control_url: 'https://c.example/RMBTControlServer',
          duration: 5,
          threshold_download: 90,
        },
        { id: 'router', type: 'btest', host: '192.168.88.1', user: 'admin', password: 'pw', protocol: 'udp' },
      ],
      { rmbt: { accept_terms: true, duration: 9 }, btest: { duration: 4 } },
    );
    expect(s.targets).toHaveLength(2);
    const [isp, router] = s.targets;
    expect(isp).toMatchObject({
      id: 'isp',
      name: 'isp',
      type: 'rmbt',
      enabled: true,
      interval: 60,
      jitter: 120,
      threshold_download: 90,
    });
    expect(isp!.rmbt).toMatchObject({
      accept_terms: true,
      duration: 5,
      control_url: 'https://c.example/RMBTControlServer',
    });
    expect(router!.btest).toMatchObject({
      host: '192.168.88.1',
      protocol: 'udp',
      duration: 4,
      user: 'admin',
    });
    expect(Object.isFrozen(isp)).toBe(true);
  });

  it('ip_version both makes an IPv4 and an IPv6 target', () => {
    const s = withTargets([
      { id: 'isp', name: 'ISP', server: 'm.example:443', key: 'k', ip_version: 'both' },
    ]);
    expect(s.targets.map((t) => [t.id, t.name, t.ip_version, t.rmbt!.ip_version])).toEqual([
      ['isp_v4', 'ISP (IPv4)', '4', '4'],
      ['isp_v6', 'ISP (IPv6)', '6', '6'],
    ]);
  });

  it('reports every problem with its key and what is allowed', () => {
    let msg = '';
    try {
      withTargets([
        { id: 'Bad Id', control_url: 'https://x/' },
        { id: 'a', type: 'btest' },
        { id: 'a', control_url: 'https://x/', schedule: 'every day', interval: 0, colour: 'red' },
        { type: 'rmbt', control_url: 'https://x/' },
        'nope',
      ]);
    } catch (err) {
      msg = (err as Error).message;
    }
    expect(msg).toMatch(/^The configuration is invalid/);
    expect(msg).toContain('targets[0].id is "Bad Id"; allowed: lower-case letters');
    expect(msg).toContain('targets[1] (btest) needs a host');
    expect(msg).toContain('targets[2].id "a" is used twice');
    expect(msg).toContain('targets[2].schedule "every day" is not a cron expression');
    expect(msg).toContain('targets[2].interval is 0; allowed: a whole number from 1 to 10080');
    expect(msg).toContain('targets[2].colour (from');
    expect(msg).toContain('targets[3].id is missing');
    expect(msg).toContain('targets[4] (from');
  });

  it('a cron schedule is accepted; an rmbt target needs a control server or server + key', () => {
    const s = withTargets([{ id: 'a', control_url: 'https://x/', schedule: '*/30 * * * *' }]);
    expect(s.targets[0]!.schedule).toBe('*/30 * * * *');
    expect(() => withTargets([{ id: 'b', server: 'h:1' }])).toThrow(
      /needs a control_url, or a server and its key/,
    );
  });

  it('come from BANDWIDTH_PROBE_TARGETS as JSON too; bad JSON is a config error', () => {
    const s = loadSettings({ env: { BANDWIDTH_PROBE_TARGETS: '[{"id":"x","type":"btest","host":"r"}]' } });
    expect(s.targets[0]!.id).toBe('x');
    expect(() => loadSettings({ env: { BANDWIDTH_PROBE_TARGETS: '[{' } })).toThrow(
      /BANDWIDTH_PROBE_TARGETS is not valid JSON/,
    );
    expect(loadSettings().targets).toEqual([]);
  });
});
