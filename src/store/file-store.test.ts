import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileKeys } from './file-store.js';

const a256 = `sha256:${'a'.repeat(64)}`;
const b512 = `sha512:${'b'.repeat(128)}`;

describe('fileKeys.imageDigestOf', () => {
  const cases: [string, string | null][] = [
    [fileKeys.imageDisk(a256), a256],
    [fileKeys.imageConfig(a256), a256],
    [fileKeys.imageDisk(b512), b512],
    [`images/${'a'.repeat(64)}/anything/else`, a256],
    [`images/${'a'.repeat(64)}`, null], // the directory itself is no file of it
    [`images/${'a'.repeat(63)}/rootfs.ext4`, null],
    [`images/${'b'.repeat(128)}/rootfs.ext4`, null], // 128 hex without the sha512- marker
    [`images/sha512-${'b'.repeat(64)}/rootfs.ext4`, null],
    [`images/${'A'.repeat(64)}/rootfs.ext4`, null],
    [`builds/${'a'.repeat(64)}/build.log`, null],
    [`kiln/images/${'a'.repeat(64)}/rootfs.ext4`, null],
  ];
  for (const [key, want] of cases) {
    it(`${key.slice(0, 40)}… → ${want?.slice(0, 12) ?? 'null'}`, () => assert.equal(fileKeys.imageDigestOf(key), want));
  }
  it('is the inverse of imageDir', () => {
    for (const d of [a256, b512]) assert.equal(fileKeys.imageDigestOf(`${fileKeys.imageDir(d)}config.json`), d);
  });
});
