import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { presentedByAuthorization, presentedByPassword, type Presented } from './credentials.js';

const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString('base64')}`;

describe('presentedByAuthorization', () => {
  const cases: [string, string | string[] | undefined, Presented['kind'], string?][] = [
    ['no header', undefined, 'none'],
    ['an empty header', '', 'none'],
    ['Bearer', 'Bearer abc.def.ghi', 'token', 'abc.def.ghi'],
    ['bearer in any case', 'bEaReR abc', 'token', 'abc'],
    ['Basic with the token as password', basic('anyone:tok'), 'token', 'tok'],
    ['Basic with the token as username and no password', basic('tok:'), 'token', 'tok'],
    ['Basic with a password holding colons', basic('u:a:b'), 'token', 'a:b'],
    ['Basic with neither', basic(':'), 'none'],
    ['Basic without a colon', basic('tok'), 'malformed'],
    ['an unknown scheme', 'Digest abc', 'malformed'],
    ['a scheme alone', 'Bearer', 'malformed'],
    ['the first of repeated headers', ['Bearer one', 'Bearer two'], 'token', 'one'],
  ];
  for (const [name, header, kind, token] of cases) {
    it(name, () => {
      const presented = presentedByAuthorization(header);
      assert.equal(presented.kind, kind);
      if (presented.kind === 'token') assert.equal(presented.token, token);
    });
  }
});

describe('presentedByPassword', () => {
  it('prefers the password', () => assert.deepEqual(presentedByPassword('u', 'p'), { kind: 'token', token: 'p' }));
  it('falls back to the username', () => assert.deepEqual(presentedByPassword('u', ''), { kind: 'token', token: 'u' }));
  it('finds nothing in nothing', () => assert.deepEqual(presentedByPassword(undefined, undefined), { kind: 'none' }));
});
