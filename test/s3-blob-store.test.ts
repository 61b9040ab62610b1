// What only the S3 blob store does, on a real Ceph RGW: an upload continued
// by several stores (as several replicas would), concurrent chunks of one
// session from two stores, nothing left in the bucket by failed or
// cancelled uploads, and presigned redirects.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { RangeMismatchError, UploadBusyError } from '../src/store/errors.js';
import { S3BlobStore } from '../src/store/s3/s3-blob-store.js';
import { bodyOf, digestOf, newUploadId, waitFor } from './contracts/blob-store.js';
import { rgwMissing, s3Settings, startRgw, type Rgw } from './helpers/rgw.js';

const MiB = 1024 * 1024;

describe('S3 blob store', { skip: rgwMissing() ?? false }, () => {
  let rgw: Rgw;
  let bucket: string;
  let s3: S3Client;
  /** Three stores with their own clients: three replicas sharing one bucket. */
  let replicas: S3BlobStore[];

  before(async () => {
    rgw = await startRgw();
    bucket = await rgw.createBucket();
    s3 = rgw.client();
    replicas = [0, 1, 2].map(() => new S3BlobStore(rgw.client(), s3Settings(bucket)));
    for (const r of replicas) await r.init();
  });
  after(async () => {
    await rgw?.stop();
  });

  const keysUnder = async (prefix: string) => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!);
  const multipartsUnder = async (prefix: string) => (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }))).Uploads ?? [];

  for (const algorithm of ['sha256', 'sha512'] as const) {
    it(`an upload started on one replica, continued on the others and committed on a fourth (${algorithm})`, async () => {
      const [a, b, c] = replicas;
      const bytes = randomBytes(11 * MiB + 7);
      const id = newUploadId();
      await a!.createUpload(id);
      // 3 MiB: staged as a tail on b; 7 MiB: joined with it on c; 1 MiB + 7 on a: the last part, committed on a store made just now.
      assert.equal(await b!.appendUpload(id, bodyOf(bytes.subarray(0, 3 * MiB)), { expectedOffset: 0 }), 3 * MiB);
      assert.equal(await c!.uploadSize(id), 3 * MiB);
      assert.equal(await c!.appendUpload(id, bodyOf(bytes.subarray(3 * MiB, 10 * MiB)), { expectedOffset: 3 * MiB }), 10 * MiB);
      assert.equal(await a!.appendUpload(id, bodyOf(bytes.subarray(10 * MiB)), { expectedOffset: 10 * MiB }), bytes.length);
      const later = new S3BlobStore(rgw.client(), s3Settings(bucket));
      const d = digestOf(bytes, algorithm);
      assert.deepEqual(await later.commitUpload(id, d), { digest: d.digest, size: bytes.length });
      for (const r of replicas) assert.ok((await buffer((await r.open(d.digest))!)).equals(bytes));
      assert.deepEqual(await keysUnder(later.keys.upload(id)), [], 'the session left nothing behind');
      assert.deepEqual(await multipartsUnder(later.keys.upload(id)), []);
    });
  }

  it('two replicas sending a chunk of one session at once: one is refused before it writes, the blob is the other one’s bytes', async () => {
    const [a, b] = replicas;
    const id = newUploadId();
    await a!.createUpload(id);
    const winner = randomBytes(9 * MiB);
    const slow = new PassThrough();
    const first = a!.appendUpload(id, slow, { expectedOffset: 0 });
    slow.write(winner.subarray(0, 6 * MiB));
    await waitFor(async () => (await keysUnder(a!.keys.upload(id))).some((k) => k.includes('claim-')));
    const second = await b!.appendUpload(id, bodyOf(randomBytes(9 * MiB)), { expectedOffset: 0 }).catch((e: unknown) => e);
    assert.ok(second instanceof UploadBusyError, `the second chunk: ${String(second)}`);
    const commit = await b!.commitUpload(id, digestOf(winner)).catch((e: unknown) => e);
    assert.ok(commit instanceof UploadBusyError, `a commit while a chunk is arriving: ${String(commit)}`);
    slow.end(winner.subarray(6 * MiB));
    assert.equal(await first, winner.length);
    await b!.commitUpload(id, digestOf(winner));
    assert.ok((await buffer((await b!.open(digestOf(winner).digest))!)).equals(winner));
  });

  it('racing chunks of one session from two replicas never mix: the blob is exactly one of them', async () => {
    const [a, b] = replicas;
    for (let round = 0; round < 4; round++) {
      const id = newUploadId();
      await a!.createUpload(id);
      const candidates = [randomBytes(6 * MiB + round), randomBytes(6 * MiB + round)];
      const results = await Promise.allSettled([
        a!.appendUpload(id, bodyOf(candidates[0]!), { expectedOffset: 0 }),
        b!.appendUpload(id, bodyOf(candidates[1]!), { expectedOffset: 0 }),
      ]);
      const won = results.map((r) => r.status === 'fulfilled');
      assert.equal(won.filter(Boolean).length, 1, `exactly one chunk is taken (round ${round})`);
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof UploadBusyError || r.reason instanceof RangeMismatchError, String(r.reason));
      const bytes = candidates[won.indexOf(true)]!;
      await b!.commitUpload(id, digestOf(bytes));
      assert.ok((await buffer((await a!.open(digestOf(bytes).digest))!)).equals(bytes));
    }
  });

  it('a chunk that fails midway aborts the multipart upload it started and frees its claim', async () => {
    const [a, b] = replicas;
    const id = newUploadId();
    await a!.createUpload(id);
    const bytes = randomBytes(14 * MiB);
    let sent = 0;
    const failing = new Readable({
      read() {
        if (sent >= 12 * MiB) return void this.destroy(new Error('client went away'));
        this.push(bytes.subarray(sent, sent + MiB));
        sent += MiB;
      },
    });
    await assert.rejects(a!.appendUpload(id, failing), /client went away/);
    assert.deepEqual(await multipartsUnder(a!.keys.upload(id)), [], 'no multipart upload left');
    assert.deepEqual((await keysUnder(a!.keys.upload(id))).map((k) => k.slice(a!.keys.upload(id).length)), ['state']);
    assert.equal(await b!.uploadSize(id), 0);
    await b!.appendUpload(id, bodyOf(bytes), { expectedOffset: 0 });
    await a!.commitUpload(id, digestOf(bytes));
    assert.ok((await buffer((await a!.open(digestOf(bytes).digest))!)).equals(bytes));
  });

  it('a wrong digest and a cancel leave no object and no multipart upload; nothing appears under blobs/', async () => {
    const [a, b] = replicas;
    const before = new Set(await keysUnder(a!.keys.blobs));
    for (const end of ['wrong digest', 'cancel'] as const) {
      const id = newUploadId();
      await a!.createUpload(id);
      const bytes = randomBytes(13 * MiB);
      await a!.appendUpload(id, bodyOf(bytes.subarray(0, 12 * MiB)));
      await b!.appendUpload(id, bodyOf(bytes.subarray(12 * MiB)));
      assert.equal((await multipartsUnder(a!.keys.upload(id))).length, 1);
      if (end === 'wrong digest') await assert.rejects(b!.commitUpload(id, digestOf(randomBytes(4))), /does not match/);
      await b!.abortUpload(id);
      assert.deepEqual(await keysUnder(a!.keys.upload(id)), [], end);
      assert.deepEqual(await multipartsUnder(a!.keys.upload(id)), [], end);
    }
    assert.deepEqual(new Set(await keysUnder(a!.keys.blobs)), before);
  });

  it('redirectUrl presigns a GET that serves the blob and its ranges; with redirects off it is null', async () => {
    const [a] = replicas;
    const bytes = randomBytes(6 * MiB + 3);
    const d = digestOf(bytes);
    await a!.putBytes(bytes, d);
    const url = await a!.redirectUrl(d.digest);
    assert.ok(url?.startsWith(`${rgw.endpoint}/${bucket}/`), url ?? 'no url');
    const whole = await fetch(url!);
    assert.equal(whole.status, 200);
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes));
    const part = await fetch(url!, { headers: { range: 'bytes=5242878-5242882' } });
    assert.equal(part.status, 206);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(5242878, 5242883)));
    const unsigned = await fetch(url!.split('?')[0]!);
    assert.equal(unsigned.status, 403, 'the bucket is not public: only the signature lets the client in');
    const streaming = new S3BlobStore(rgw.client(), s3Settings(bucket, { redirect: false }));
    assert.equal(await streaming.redirectUrl(d.digest), null);
  });
});
