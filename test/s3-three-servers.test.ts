// Three `kiln serve` processes on one PostgreSQL database and one S3 bucket
// (a real Ceph RGW), each with its own data directory, as replicas behind a
// load balancer: one upload whose POST, PATCHes and PUT each go to another
// process, with chunks below S3's 5 MiB minimum part and above it; the blob
// then pulls from all three. A wrong digest at the PUT leaves nothing at
// either digest's key and no multipart upload in the bucket; a chunk at the
// wrong offset is refused with 416 by whichever process receives it, and the
// session carries on.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { S3Keys } from '../src/store/s3/keys.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { RegistryClient, expectError } from './helpers/registry.js';
import { rgwMissing, startRgw, type Rgw } from './helpers/rgw.js';

const MiB = 1024 * 1024;
const keys = new S3Keys('');
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('one upload across three kiln serve processes on PostgreSQL + S3', { skip: rgwMissing() ?? postgresMissing() ?? false }, () => {
  let rgw: Rgw;
  let pg: TestPostgres;
  let s3: S3Client;
  let bucket: string;
  const dirs: string[] = [];
  let servers: SpawnedKiln[] = [];
  let clients: RegistryClient[] = [];

  before(async () => {
    [rgw, pg] = await Promise.all([startRgw(), startPostgres()]);
    s3 = rgw.client();
    bucket = await rgw.createBucket();
    const env = rgw.kilnEnv(bucket, {
      KILN_DATABASE_URL: await pg.database(),
      // S3's minimum part: modest chunks cross part boundaries.
      KILN_S3_PART_BYTES: String(5 * MiB),
      KILN_GC_INTERVAL: '0',
      KILN_FSYNC: 'false',
    });
    for (let i = 0; i < 3; i++) dirs.push(await tempDir(`kiln-s3-three-${i}-`));
    // Started together: all three migrate the empty database, the others wait for the first.
    servers = await Promise.all(dirs.map((d) => spawnKiln(d, env)));
    clients = servers.map((s) => new RegistryClient(s.url));
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    s3?.destroy();
    await rgw?.stop();
    await pg?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** The session's URL on server `i`: the Location's path and query, on another host. */
  const on = (i: number, location: string) => {
    const u = new URL(location, servers[0]!.url);
    return new URL(`${u.pathname}${u.search}`, servers[i]!.url);
  };
  const uuidOf = (location: string) => new URL(location, servers[0]!.url).pathname.split('/').pop()!;
  const objectsUnder = async (prefix: string) => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!);
  const multipartsUnder = async (prefix: string) => ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }))).Uploads ?? []).map((u) => u.Key!);
  const objectExists = async (key: string) =>
    s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
      () => true,
      (err: { $metadata?: { httpStatusCode?: number } }) => {
        if (err.$metadata?.httpStatusCode === 404) return false;
        throw err;
      },
    );

  async function post(i: number, repo: string): Promise<string> {
    const res = await clients[i]!.fetch(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(res.status, 202, await res.text());
    return res.headers.get('location')!;
  }

  /** PATCH `bytes` at `start` on server `i`; answers the response (body read). */
  async function patch(i: number, location: string, bytes: Buffer, start: number): Promise<Response> {
    const res = await fetch(on(i, location), {
      method: 'PATCH',
      body: bytes,
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + bytes.length - 1}` },
    });
    await res.clone().arrayBuffer();
    return res;
  }

  it('POST on one, PATCHes on each in turn (below and above 5 MiB), PUT with the last chunk on another: the blob pulls from all three', async () => {
    const repo = 'three/app';
    // 3 MiB (staged, below the minimum part), 7 MiB (joined with it: two parts), 2 MiB (staged), 6 MiB, and 1 MiB + 13 with the PUT.
    const sizes = [3 * MiB, 7 * MiB, 2 * MiB, 6 * MiB];
    const last = MiB + 13;
    const bytes = randomBytes(sizes.reduce((a, b) => a + b, last));
    const digest = sha256(bytes);
    let location = await post(0, repo);
    const id = uuidOf(location);
    let offset = 0;
    for (const [n, size] of sizes.entries()) {
      const server = (n + 1) % 3;
      const res = await patch(server, location, bytes.subarray(offset, offset + size), offset);
      assert.equal(res.status, 202, `PATCH ${n} on server ${server}: ${await res.text()}`);
      offset += size;
      assert.equal(res.headers.get('range'), `0-${offset - 1}`);
      location = res.headers.get('location')!;
      // Every process sees the same progress.
      for (const c of [0, 1, 2]) {
        const status = await fetch(on(c, location));
        assert.equal(status.status, 204);
        assert.equal(status.headers.get('range'), `0-${offset - 1}`, `server ${c} after PATCH ${n}`);
      }
    }
    const put = on(2, location);
    put.searchParams.set('digest', digest);
    const res = await fetch(put, {
      method: 'PUT',
      body: bytes.subarray(offset),
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${bytes.length - 1}` },
    });
    assert.equal(res.status, 201, await res.text());
    assert.equal(res.headers.get('docker-content-digest'), digest);

    for (const [i, c] of clients.entries()) {
      const head = await c.fetch(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200, `HEAD on server ${i}`);
      assert.equal(head.headers.get('content-length'), String(bytes.length));
      assert.equal(head.headers.get('docker-content-digest'), digest);
      // A GET is a 307 to the bucket; fetch follows it.
      const got = await c.getBlob(repo, digest);
      assert.equal(got.res.status, 200, `GET on server ${i}`);
      assert.ok(got.bytes.equals(bytes), `the bytes pulled from server ${i}`);
    }
    assert.equal(await objectExists(keys.blob(digest)), true);
    assert.deepEqual(await objectsUnder(keys.upload(id)), [], 'the session left no object');
    assert.deepEqual(await multipartsUnder(keys.upload(id)), [], 'nor a multipart upload');
    for (const c of clients) await expectError(await fetch(on(clients.indexOf(c), location)), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
  });

  it('a wrong digest at the final PUT leaves nothing visible and aborts the multipart upload', async () => {
    const repo = 'three/wrong';
    const bytes = randomBytes(8 * MiB + 5);
    const claimed = sha256(randomBytes(16));
    let location = await post(1, repo);
    const id = uuidOf(location);
    let res = await patch(2, location, bytes.subarray(0, 6 * MiB), 0);
    assert.equal(res.status, 202);
    location = res.headers.get('location')!;
    res = await patch(0, location, bytes.subarray(6 * MiB), 6 * MiB);
    assert.equal(res.status, 202);
    location = res.headers.get('location')!;
    assert.equal((await multipartsUnder(keys.upload(id))).length, 1, 'the first chunk started the multipart upload');

    const put = on(1, location);
    put.searchParams.set('digest', claimed);
    await expectError(await fetch(put, { method: 'PUT' }), { status: 400, code: 'DIGEST_INVALID' });

    for (const d of [claimed, sha256(bytes)]) {
      assert.equal(await objectExists(keys.blob(d)), false, `no object at ${d}`);
      for (const c of clients) {
        await expectError(await c.fetch(`/v2/${repo}/blobs/${d}`, { method: 'HEAD' }), { status: 404, code: 'BLOB_UNKNOWN' }, 'HEAD');
      }
    }
    assert.deepEqual(await multipartsUnder(keys.upload(id)), [], 'the multipart upload is aborted');
    assert.deepEqual(await objectsUnder(keys.upload(id)), [], 'the staged tail and state are gone');
    assert.deepEqual(await multipartsUnder(keys.uploads), [], 'no multipart upload is in progress anywhere in the bucket');
    for (const [i] of clients.entries()) await expectError(await fetch(on(i, location)), { status: 404, code: 'BLOB_UPLOAD_UNKNOWN' });
  });

  it('a chunk at the wrong offset is refused with 416 by whichever process receives it; the session carries on', async () => {
    const repo = 'three/order';
    const bytes = randomBytes(9 * MiB + 1);
    let location = await post(2, repo);
    let res = await patch(0, location, bytes.subarray(0, 3 * MiB), 0);
    assert.equal(res.status, 202);
    location = res.headers.get('location')!;
    // A gap (the next chunk sent too early), a repeat of the first chunk, a chunk from past the end: on each process in turn.
    const wrong: [number, number, number][] = [
      [1, 4 * MiB, 5 * MiB],
      [2, 0, 3 * MiB],
      [0, 3 * MiB + 1, 6 * MiB],
    ];
    for (const [server, start, end] of wrong) {
      const refused = await patch(server, location, bytes.subarray(start, end), start);
      assert.equal(refused.status, 416, `server ${server}, chunk at ${start}: ${await refused.clone().text()}`);
      assert.equal(refused.headers.get('range'), `0-${3 * MiB - 1}`, 'the 416 says where the session is');
      await expectError(refused, { status: 416, code: 'BLOB_UPLOAD_INVALID' });
    }
    // A PUT whose last chunk starts at the wrong offset is refused too, and keeps the session.
    const badPut = on(1, location);
    badPut.searchParams.set('digest', sha256(bytes));
    const refusedPut = await fetch(badPut, { method: 'PUT', body: bytes.subarray(4 * MiB), headers: { 'content-range': `${4 * MiB}-${bytes.length - 1}` } });
    assert.equal(refusedPut.status, 416, await refusedPut.clone().text());
    await refusedPut.arrayBuffer();

    res = await patch(1, location, bytes.subarray(3 * MiB, 8 * MiB), 3 * MiB);
    assert.equal(res.status, 202, await res.text());
    location = res.headers.get('location')!;
    const put = on(0, location);
    put.searchParams.set('digest', sha256(bytes));
    const done = await fetch(put, { method: 'PUT', body: bytes.subarray(8 * MiB), headers: { 'content-range': `${8 * MiB}-${bytes.length - 1}` } });
    assert.equal(done.status, 201, await done.text());
    for (const c of clients) assert.ok((await c.getBlob(repo, sha256(bytes))).bytes.equals(bytes));
  });
});
