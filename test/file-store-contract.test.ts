// The one FileStore contract suite on every backend: the data directory and
// S3 on a real Ceph RGW (5 MiB parts), plus the S3 store's presigned downloads.
import assert from 'node:assert/strict';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { existsSync } from 'node:fs';
import { rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileKeys } from '../src/store/file-store.js';
import { FsFileStore } from '../src/store/fs/file-store.js';
import { S3FileStore } from '../src/store/s3/file-store.js';
import { fileStoreContract } from './contracts/file-store.js';
import { tempDir } from './helpers/kiln.js';
import { rgwMissing, s3Settings, startRgw, type Rgw } from './helpers/rgw.js';

async function listAll(store: FsFileStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const f of store.list(prefix)) keys.push(f.key);
  return keys;
}

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
  it('removeUnfinished removes the temporary file of a write its process died in, once old enough', async () => {
    const root = await tempDir('kiln-file-unfinished-');
    const store = new FsFileStore(root, { durable: false });
    const d = `sha256:${'7'.repeat(64)}`;
    await store.writeBytes(fileKeys.imageConfig(d), Buffer.from('{}'));
    const dir = path.dirname(store.pathOf(fileKeys.imageDisk(d)));
    const temp = path.join(dir, '.rootfs.ext4.tmp-0f3c2a9e-1b2c-4d5e-8f90-123456789abc');
    await writeFile(temp, 'half a disk');
    assert.deepEqual((await listAll(store, 'images/')).sort(), [fileKeys.imageConfig(d)], 'never listed');
    assert.equal(await store.removeUnfinished('images/', new Date(Date.now() - 3_600_000)), 0, 'too young');
    assert.ok(existsSync(temp));
    assert.equal(await store.removeUnfinished('images/', new Date(Date.now() + 1000)), 1);
    assert.ok(!existsSync(temp));
    assert.ok(await store.stat(fileKeys.imageConfig(d)));
    await rm(root, { recursive: true, force: true });
  });
  it('the directories it makes are private (0700), as the rest of the data directory', async () => {
    const root = await tempDir('kiln-file-modes-');
    const store = new FsFileStore(root, { durable: false });
    const d = `sha256:${'5'.repeat(64)}`;
    const local = path.join(scratch, 'staged-disk');
    await writeFile(local, 'disk');
    await store.putFile(fileKeys.imageDisk(d), local);
    await store.writeBytes(fileKeys.imageConfig(`sha256:${'4'.repeat(64)}`), Buffer.from('{}'));
    for (const dd of [d, `sha256:${'4'.repeat(64)}`]) {
      assert.equal((await stat(path.dirname(store.pathOf(fileKeys.imageConfig(dd))))).mode & 0o777, 0o700);
    }
    await rm(root, { recursive: true, force: true });
  });
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

  it('removeUnfinished aborts a multipart upload its process died in, once old enough', async () => {
    const bucket = await rgw.createBucket();
    const settings = s3Settings(bucket);
    const store = new S3FileStore(rgw.client(), settings);
    const s3 = rgw.client();
    const d = `sha256:${'6'.repeat(64)}`;
    const key = `${settings.prefix}${fileKeys.imageDisk(d)}`;
    const started = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: started.UploadId, PartNumber: 1, Body: Buffer.alloc(1024) }));
    const open = async () => (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
    assert.equal((await open()).length, 1);
    assert.equal(await store.removeUnfinished('images/', new Date(Date.now() - 3_600_000)), 0, 'too young');
    assert.equal(await store.removeUnfinished('builds/', new Date(Date.now() + 60_000)), 0, 'another prefix');
    assert.equal(await store.removeUnfinished('images/', new Date(Date.now() + 60_000)), 1);
    assert.deepEqual(await open(), []);
    assert.equal(await store.stat(fileKeys.imageDisk(d)), null);
  });

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
