import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, resolveLogFormat } from '../../src/log.js';

function capture() {
  const out = new PassThrough();
  const chunks: string[] = [];
  out.on('data', (c) => chunks.push(String(c)));
  return { out, text: () => chunks.join('') };
}

describe('log format', () => {
  it('auto: readable on a terminal and in the add-on, JSON elsewhere; colour only on a terminal', () => {
    expect(resolveLogFormat('auto', { isTTY: true }, {})).toEqual({ pretty: true, colour: true });
    expect(resolveLogFormat('auto', { isTTY: true }, { NO_COLOR: '1' })).toEqual({
      pretty: true,
      colour: false,
    });
    expect(resolveLogFormat('auto', { isTTY: false }, { SUPERVISOR_TOKEN: 't' })).toEqual({
      pretty: true,
      colour: false,
    });
    expect(resolveLogFormat('auto', { isTTY: false }, {})).toEqual({ pretty: false, colour: false });
    expect(resolveLogFormat('json', { isTTY: true }, {})).toEqual({ pretty: false, colour: false });
    expect(resolveLogFormat('pretty', { isTTY: false }, {})).toEqual({ pretty: true, colour: false });
  });

  it('pretty: one line per entry with time, level, module, target and the other fields; secrets redacted', () => {
    const c = capture();
    const log = createLogger('info', c.out, undefined, { pretty: true, colour: false });
    log
      .child({ module: 'mqtt' })
      .warn({ target: 'isp', code: 'BP_ERR_MQTT', password: 'hunter2' }, 'broker down');
    const lines = c.text().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] WARN: \[mqtt\] isp: broker down \{"code":"BP_ERR_MQTT","password":"\[redacted\]"\}$/,
    );
    expect(c.text()).not.toContain('hunter2');
    expect(c.text()).not.toContain('\u001b['); // no colour codes off a terminal
  });

  it('json: one JSON object per line', () => {
    const c = capture();
    const log = createLogger('info', c.out);
    log.info({ target: 'isp' }, 'run finished');
    const j = JSON.parse(c.text().trim());
    expect(j).toMatchObject({ level: 30, msg: 'run finished', target: 'isp', name: 'bandwidth-probe' });
  });
});
