import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthModeError, decideAuthMode, isLoopbackHost } from './mode.js';

describe('isLoopbackHost', () => {
  const cases: [string, boolean][] = [
    ['127.0.0.1', true],
    ['127.10.20.30', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['::1', true],
    ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.1', false],
    ['128.0.0.1', false],
    ['::ffff:10.0.0.1', false],
    ['example.com', false],
    ['localhost.example.com', false],
    ['', false],
  ];
  for (const [host, expected] of cases) it(`"${host}" → ${expected}`, () => assert.equal(isLoopbackHost(host), expected));
});

describe('decideAuthMode', () => {
  const cases: [string | undefined, string, boolean, 'off' | 'token' | 'refused'][] = [
    [undefined, '127.0.0.1', false, 'off'],
    [undefined, '::1', false, 'off'],
    [undefined, '0.0.0.0', false, 'token'],
    [undefined, '0.0.0.0', true, 'off'],
    ['', '0.0.0.0', false, 'token'],
    ['token', '127.0.0.1', false, 'token'],
    ['token', '0.0.0.0', true, 'token'],
    ['TOKEN', '0.0.0.0', false, 'token'],
    ['off', '127.0.0.1', false, 'off'],
    ['off', 'localhost', false, 'off'],
    ['off', '0.0.0.0', false, 'refused'],
    ['off', '::', false, 'refused'],
    ['off', '10.1.2.3', false, 'refused'],
    ['off', '0.0.0.0', true, 'off'],
    ['basic', '127.0.0.1', false, 'refused'],
  ];
  for (const [setting, host, insecureNoAuth, expected] of cases) {
    it(`KILN_AUTH=${setting} on ${host}${insecureNoAuth ? ' with --insecure-no-auth' : ''} → ${expected}`, () => {
      if (expected === 'refused') assert.throws(() => decideAuthMode({ setting, host, insecureNoAuth }), AuthModeError);
      else assert.equal(decideAuthMode({ setting, host, insecureNoAuth }), expected);
    });
  }
  it('explains the refusal and the way out', () => {
    assert.throws(
      () => decideAuthMode({ setting: 'off', host: '0.0.0.0', insecureNoAuth: false }),
      /0\.0\.0\.0.*reachable from other machines.*--insecure-no-auth/s,
    );
  });
});
