import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { DigestError, createHasher, digestOf, isDigest, parseDigest, tryParseDigest } from './digest.js';

const HEX256 = 'a'.repeat(64);
const HEX512 = 'b'.repeat(128);

describe('parseDigest', () => {
  const valid: [string, string, 'sha256' | 'sha512', string][] = [
    ['sha256', `sha256:${HEX256}`, 'sha256', HEX256],
    ['sha512', `sha512:${HEX512}`, 'sha512', HEX512],
    ['sha256 of empty', 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'sha256', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
  ];
  for (const [name, input, algorithm, hex] of valid) {
    it(`accepts ${name}`, () => {
      assert.deepEqual(parseDigest(input), { algorithm, hex, digest: input });
      assert.equal(isDigest(input), true);
    });
  }

  // [name, input, unsupported?]
  const invalid: [string, string, boolean][] = [
    ['empty string', '', false],
    ['no colon', HEX256, false],
    ['no algorithm', `:${HEX256}`, false],
    ['no hex', 'sha256:', false],
    ['uppercase hex', `sha256:${'A'.repeat(64)}`, false],
    ['uppercase algorithm', `SHA256:${HEX256}`, false],
    ['short sha256', `sha256:${'a'.repeat(63)}`, false],
    ['long sha256', `sha256:${'a'.repeat(65)}`, false],
    ['sha256 with sha512 length', `sha256:${HEX512}`, false],
    ['sha512 with sha256 length', `sha512:${HEX256}`, false],
    ['non-hex characters', `sha256:${'g'.repeat(64)}`, false],
    ['whitespace', ` sha256:${HEX256}`, false],
    ['trailing newline', `sha256:${HEX256}\n`, false],
    ['two colons', `sha256:${HEX256}:x`, false],
    ['path traversal', 'sha256:../../etc/passwd', false],
    ['slash in hex', `sha256:${'a'.repeat(32)}/${'a'.repeat(31)}`, false],
    ['md5 (grammatical, unsupported)', 'md5:d41d8cd98f00b204e9800998ecf8427e', true],
    ['sha384 (grammatical, unsupported)', `sha384:${'c'.repeat(96)}`, true],
    ['multihash-style algorithm', `sha256+b64u:${HEX256}`, true],
  ];
  for (const [name, input, unsupported] of invalid) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => parseDigest(input),
        (err: unknown) => err instanceof DigestError && err.unsupported === unsupported && err.message.length > 0,
      );
      assert.equal(tryParseDigest(input), null);
      assert.equal(isDigest(input), false);
    });
  }

  it('keeps error messages short for huge input', () => {
    const huge = `sha256:${'z'.repeat(10_000)}`;
    assert.throws(() => parseDigest(huge), (err: Error) => err.message.length < 300);
  });
});

describe('digestOf and createHasher', () => {
  const data = Buffer.from('hello kiln\n');
  it('defaults to sha256', () => {
    assert.equal(digestOf(data), `sha256:${createHash('sha256').update(data).digest('hex')}`);
  });
  it('computes sha512 on request', () => {
    const d = digestOf(data, 'sha512');
    assert.equal(d, `sha512:${createHash('sha512').update(data).digest('hex')}`);
    assert.equal(parseDigest(d).algorithm, 'sha512');
  });
  it('digest of empty input is the well-known value', () => {
    assert.equal(digestOf(new Uint8Array(0)), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
  it('hashes a view of a larger buffer, not the whole backing store', () => {
    const backing = Buffer.from('xxhello kiln\nyy');
    const view = backing.subarray(2, 2 + data.length);
    assert.equal(digestOf(view), digestOf(data));
  });
  it('createHasher streams to the same result', () => {
    for (const alg of ['sha256', 'sha512'] as const) {
      const h = createHasher(alg);
      h.update(data.subarray(0, 3));
      h.update(data.subarray(3));
      assert.equal(`${alg}:${h.digest('hex')}`, digestOf(data, alg));
    }
  });
});
