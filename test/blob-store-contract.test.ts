// The one BlobStore contract suite on every backend: the filesystem store and
// the S3 store on a real Ceph RGW (parts of 5 MiB, S3's minimum, so the
// suite's sizes cross part boundaries).
import { rm } from 'node:fs/promises';
import { after, before, describe } from 'node:test';
import { DataDir } from '../src/store/data-dir.js';
import { FsBlobStore } from '../src/store/fs/blob-store.js';
import { S3BlobStore } from '../src/store/s3/s3-blob-store.js';
import { blobStoreContract } from './contracts/blob-store.js';
import { tempDir } from './helpers/kiln.js';
import { rgwMissing, s3Settings, startRgw, type Rgw } from './helpers/rgw.js';

describe('filesystem', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('kiln-blob-contract-');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  blobStoreContract('filesystem', async () => {
    const store = new FsBlobStore(new DataDir(dir), { durable: false });
    await store.init();
    return store;
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
  blobStoreContract('s3', async () => {
    const bucket = await rgw.createBucket();
    const store = new S3BlobStore(rgw.client(), s3Settings(bucket));
    await store.init();
    return store;
  });
});

