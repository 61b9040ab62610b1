// The one FileStore contract suite on every backend: the data directory and
// S3 on a real Ceph RGW (5 MiB parts), plus the S3 store's presigned downloads.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileKeys } from '../src/store/file-store.js';
import { FsFileStore } from '../src/store/fs/file-store.js';
import { S3FileStore } from '../src/store/s3/file-store.js';
import { fileStoreContract } from './contracts/file-store.js';
import { tempDir } from './helpers/kiln.js';
import { rgwMissing, s3Settings, startRgw, type Rgw } from './helpers/rgw.js';

let scratch: string;
before(async () => {
  scratch = await tempDir('kiln-file-contract-');
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('filesystem', () => {
  fileStoreContract(
    'filesystem',
    async () => {
      const store = new FsFileStore(await tempDir('kiln-file-store-'), { durable: false });
      await store.init();
      return store;
    },
    () => scratch,
  );
  it('serves its own files (no redirect)', async () => {
    assert.equal(await new FsFileStore(scratch).redirectUrl(fileKeys.imageDisk(`sha256:${'a'.repeat(64)}`)), null);
  });
});

describe('s3 (Ceph RGW)', { skip: rgwMissing() ?? false }, () => {
  let rgw: Rgw;
  before(async () => {
    rgw = await startRgw();
  });
  after(async () => {
    await rgw?.stop();
  });
  fileStoreContract(
    's3',
    async () => {
      const store = new S3FileStore(rgw.client(), s3Settings(await rgw.createBucket()));
      await store.init();
      return store;
    },
    () => scratch,
  );

  it('a disk download redirects to a presigned GET that names the file', async () => {
    const bucket = await rgw.createBucket();
    const store = new S3FileStore(rgw.client(), s3Settings(bucket));
    const key = fileKeys.imageDisk(`sha256:${'b'.repeat(64)}`);
    await store.writeBytes(key, Buffer.from('disk bytes'));
    const url = await store.redirectUrl(key, { filename: 'app-v1.ext4' });
    const res = await fetch(url!);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename="app-v1.ext4"');
    assert.equal(await res.text(), 'disk bytes');
    const ranged = await fetch(url!, { headers: { range: 'bytes=5-9' } });
    assert.equal(await ranged.text(), 'bytes');
    assert.equal(await new S3FileStore(rgw.client(), s3Settings(bucket, { redirect: false })).redirectUrl(key), null);
  });
});
