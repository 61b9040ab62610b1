import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { entryComponents, entryTarget, type EntryTarget } from './entry-path.js';
import { BakeError } from './errors.js';

describe('entryComponents', () => {
  const table: Array<[string, string[]]> = [
    ['usr/bin/env', ['usr', 'bin', 'env']],
    ['./usr/bin/', ['usr', 'bin']],
    ['/etc/passwd', ['etc', 'passwd']],
    ['//etc//./passwd', ['etc', 'passwd']],
    ['./', []],
    ['.', []],
    ['/', []],
    ['a/b/../c', ['a', 'c']],
    ['a/..', []],
    ['name with space/ü', ['name with space', 'ü']],
  ];
  for (const [name, expected] of table) {
    it(JSON.stringify(name), () => assert.deepEqual(entryComponents(name), expected));
  }
  for (const name of ['..', '../etc/shadow', './../x', 'a/../../etc', '/../../../etc/shadow']) {
    it(`refuses ${JSON.stringify(name)}`, () =>
      assert.throws(() => entryComponents(name), (err: Error) => err instanceof BakeError && err.code === 'UNSAFE_ENTRY' && /outside the image root/.test(err.message)));
  }
});

describe('entryTarget', () => {
  const table: Array<[string, EntryTarget]> = [
    ['etc/motd', { kind: 'path', path: ['etc', 'motd'] }],
    ['etc/.wh.motd', { kind: 'whiteout', parent: ['etc'], name: 'motd' }],
    ['.wh.tmp', { kind: 'whiteout', parent: [], name: 'tmp' }],
    ['./etc/skel/.wh..wh..opq', { kind: 'opaque', dir: ['etc', 'skel'] }],
    ['.wh..wh..opq', { kind: 'opaque', dir: [] }],
    ['.wh..wh.plnk/123.456', { kind: 'ignored' }],
    ['.wh..wh.plnk', { kind: 'ignored' }],
    ['a/.wh..wh.aufs', { kind: 'ignored' }],
    ['a/x.wh.y', { kind: 'path', path: ['a', 'x.wh.y'] }],
  ];
  for (const [name, expected] of table) it(JSON.stringify(name), () => assert.deepEqual(entryTarget(name), expected));
  it('refuses a whiteout that names nothing', () => assert.throws(() => entryTarget('a/.wh.'), /names no file/));
});
