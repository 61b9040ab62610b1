import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkBuildOptions, checkSecrets } from './build-options.js';

describe('checkBuildOptions', () => {
  it('accepts ordinary build args and platforms', () => {
    checkBuildOptions({ NODE_ENV: 'production', _x1: '', GREETING: 'a b,c=d' }, 'linux/amd64');
    checkBuildOptions({}, 'linux/arm/v7');
    checkBuildOptions({}, undefined);
  });
  const bad: Array<[Record<string, string>, string | undefined, RegExp]> = [
    [{ '1ABC': 'x' }, undefined, /build arg name "1ABC"/],
    [{ 'A=B': 'x' }, undefined, /build arg name "A=B"/],
    [{ '--opt': 'x' }, undefined, /build arg name "--opt"/],
    [{ A: 1 as unknown as string }, undefined, /build arg "A" must have a string value/],
    [{}, 'amd64', /platform "amd64" must look like os\/arch/],
    [{}, '--output=x', /platform "--output=x"/],
  ];
  for (const [args, platform, message] of bad) {
    it(`rejects ${JSON.stringify(args)} ${platform ?? ''}`, () => assert.throws(() => checkBuildOptions(args, platform), message));
  }
});

describe('checkSecrets', () => {
  it('accepts ids BuildKit takes', () => checkSecrets({ npmrc: 'x', 'aws.key_1-2': 'y' }));
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ '': 'x' }, /secret id ""/],
    [{ 'a,b': 'x' }, /secret id "a,b"/],
    [{ 'id=x': 'x' }, /secret id "id=x"/],
    [{ '-a': 'x' }, /secret id "-a"/],
    [{ a: '' }, /secret "a" must have a non-empty string value/],
    [{ a: 'x'.repeat(64 * 1024 + 1) }, /secret "a" is larger than 65536 bytes/],
    [Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`s${i}`, 'v'])), /at most 16 secrets/],
  ];
  for (const [secrets, message] of bad) {
    it(`refuses ${Object.keys(secrets).slice(0, 2).join(',') || '(empty id)'}`, () => {
      assert.throws(() => checkSecrets(secrets), (err: Error) => message.test(err.message) && !err.message.includes('xxxxxxxx'));
    });
  }
});
