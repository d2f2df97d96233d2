import { describe, expect, it } from 'vitest';
import { checkToken, makeToken, tokenHmac } from '../../src/rmbt/token.js';

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
    });
  });

  it('passes a v2 suffix through', () => {
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
