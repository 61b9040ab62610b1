import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { S3Keys } from './keys.js';

const hex = 'ab'.padEnd(64, '0');
const digest = `sha256:${hex}`;

describe('S3 key layout', () => {
  const keys = new S3Keys('kiln/');

  it('blobs sit below the prefix in the data directory layout, and map back to their digest', () => {
    assert.equal(keys.blob(digest), `kiln/blobs/sha256/ab/${hex}`);
    assert.equal(keys.digestOf(keys.blob(digest)), digest);
    const sha512 = `sha512:${'c'.repeat(128)}`;
    assert.equal(keys.digestOf(keys.blob(sha512)), sha512);
    assert.equal(new S3Keys('').blob(digest), `blobs/sha256/ab/${hex}`);
  });

  for (const stray of [`kiln/blobs/sha256/cd/${hex}`, `kiln/blobs/sha256/ab/${hex}.tmp`, 'kiln/blobs/md5/ab/abcd', `other/blobs/sha256/ab/${hex}`, `kiln/blobs/sha256/${hex}`]) {
    it(`${stray} is not a blob`, () => assert.equal(keys.digestOf(stray), null));
  }

  it('upload session keys', () => {
    assert.equal(keys.uploadState('u-1'), 'kiln/uploads/u-1/state');
    assert.equal(keys.uploadClaim('u-1', 3), 'kiln/uploads/u-1/claim-00000003');
    assert.equal(keys.uploadTail('u-1', 12), 'kiln/uploads/u-1/tail-00000012');
    assert.equal(keys.uploadData('u-1'), 'kiln/uploads/u-1/data');
    assert.equal(keys.uploadIdOf('kiln/uploads/u-1/claim-00000003'), 'u-1');
    assert.equal(keys.uploadIdOf('kiln/blobs/x'), null);
  });

  for (const id of ['', '../x', 'a/b', '.hidden', 'x'.repeat(129)]) {
    it(`upload id ${JSON.stringify(id.slice(0, 20))} is refused`, () => assert.throws(() => keys.upload(id), /invalid upload id/));
  }
});
