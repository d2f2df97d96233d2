import { describe, expect, it } from 'vitest';
import { checkToken, ip16, makeToken, tokenHmac } from '../../src/rmbt/token.js';

const UUID = '5ca7ccd8-20ae-4ccd-90f9-636fd8e9b00a';
const START = 1795270835;

describe('RMBT v1 token (specs/rmbt.md §3.1)', () => {
  it('matches an HMAC-SHA1 computed independently (Python hmac)', () => {
    expect(tokenHmac('topsecret', UUID, START)).toBe('2g0GznSZrhmvqJNulq2RnaiGiGU=');
    expect(makeToken('topsecret', START, UUID)).toBe(`${UUID}_${START}_2g0GznSZrhmvqJNulq2RnaiGiGU=`);
  });

  it('accepts any of several keys inside the window', () => {
    const t = makeToken('k2-secret', START, UUID);
    expect(checkToken(t, ['k1-secret', 'k2-secret'], START * 1000)).toEqual({
      ok: true,
      uuid: UUID,
      start: START,
      waitMs: 0,
      version: 1,
    });
  });

  it('without a peer address a v2 suffix is passed over, as RMBTD does', () => {
    const t = `${makeToken('k', START, UUID)}_#v2#aWKUzZEyb7t34wCPfV0ATA==`;
    expect(checkToken(t, ['k'], START * 1000).ok).toBe(true);
  });

  it('rejects a wrong key, bad syntax, and times outside -20 s / +90 s', () => {
    const t = makeToken('k', START, UUID);
    expect(checkToken(t, ['other'], START * 1000)).toEqual({ ok: false, reason: 'hmac' });
    expect(checkToken('garbage', ['k'], START * 1000)).toEqual({ ok: false, reason: 'syntax' });
    expect(checkToken(t.toUpperCase(), ['k'], START * 1000)).toEqual({ ok: false, reason: 'syntax' });
    expect(checkToken(t, ['k'], (START + 91) * 1000)).toEqual({ ok: false, reason: 'late' });
    expect(checkToken(t, ['k'], (START - 21) * 1000)).toEqual({ ok: false, reason: 'early' });
    expect(checkToken(t, ['k'], (START + 90) * 1000).ok).toBe(true);
  });

  it('asks the server to wait when the start is still ahead', () => {
    const r = checkToken(makeToken('k', START, UUID), ['k'], (START - 5) * 1000);
    expect(r).toMatchObject({ ok: true, waitMs: 5000 });
  });
});

describe('RMBT v2 token, bound to the client address (spec 1.2.0; research F1)', () => {
  // Vectors computed independently with Python's hmac/ipaddress modules.
  it('matches independently computed v2 parts for IPv4 (mapped), ::1 and a global IPv6', () => {
    expect(makeToken('topsecret', START, UUID, '127.0.0.1')).toBe(
      `${makeToken('topsecret', START, UUID)}_#v2#awGos8Cyey955mCk41WEyQ==`,
    );
    expect(makeToken('topsecret', START, UUID, '::1').endsWith('_#v2#awGos8Cyey955mCkjMFZgA==')).toBe(true);
    expect(makeToken('topsecret', START, UUID, '2001:db8::a:1').endsWith('#awGos8Cyey955mCkN7X8TQ==')).toBe(
      true,
    );
  });

  it('maps addresses the way the control server and RUSTD do', () => {
    expect(ip16('127.0.0.1').toString('hex')).toBe('00000000000000000000ffff7f000001');
    expect(ip16('::ffff:127.0.0.1')).toEqual(ip16('127.0.0.1'));
    expect(ip16('::1').toString('hex')).toBe('00000000000000000000000000000001');
    expect(ip16('2001:db8::a:1').toString('hex')).toBe('20010db80000000000000000000a0001');
    expect(ip16('fe80::1%eth0')).toEqual(ip16('fe80::1'));
  });

  it('accepts the address it was issued for and refuses another one, or another family', () => {
    const t = makeToken('k', START, UUID, '127.0.0.1');
    expect(checkToken(t, ['x', 'k'], START * 1000, '127.0.0.1')).toMatchObject({ ok: true, version: 2 });
    expect(checkToken(t, ['k'], START * 1000, '::ffff:127.0.0.1')).toMatchObject({ ok: true });
    expect(checkToken(t, ['k'], START * 1000, '127.0.0.2')).toEqual({ ok: false, reason: 'ip' });
    expect(checkToken(t, ['k'], START * 1000, '::1')).toEqual({ ok: false, reason: 'ip' });
    expect(checkToken(t, ['other'], START * 1000, '127.0.0.1')).toEqual({ ok: false, reason: 'hmac' });
    expect(checkToken(t, ['k'], (START + 91) * 1000, '127.0.0.1')).toEqual({ ok: false, reason: 'late' });
    expect(checkToken(`${t.slice(0, -4)}`, ['k'], START * 1000, '127.0.0.1')).toEqual({
      ok: false,
      reason: 'syntax',
    });
  });
});
