// Baked disks on S3 (a real Ceph RGW) with PostgreSQL, as Kiln runs at scale:
// a worker stages the disk on its scratch directory and publishes it and its
// config.json as objects in the bucket, never under the data directory's
// images/; a replica on another data directory serves it (307 to a presigned
// URL by default, streamed with Range under KILN_S3_REDIRECT=false);
// deleting the image removes its objects, GC reclaims an orphan disk object
// and fsck reports a disk object that is missing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { layerTar, makeImage } from '../src/convert/testing.js';
import { OCI_MANIFEST } from '../src/oci/media-types.js';
import { fileKeys } from '../src/store/file-store.js';
import { S3Keys } from '../src/store/s3/keys.js';
import { runKilnCli } from './helpers/cli.js';
import { pushBlob } from './helpers/fixtures.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { rgwMissing, startRgw, type Rgw } from './helpers/rgw.js';

const PREFIX = 'kiln/';
const keys = new S3Keys(PREFIX);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('baked disks in S3', { skip: rgwMissing() ?? postgresMissing() ?? false }, () => {
  let rgw: Rgw;
  let s3: S3Client;
  let pg: TestPostgres;
  let bucket: string;
  let env: Record<string, string>;
  let workerDir: string;
  let replicaDir: string;
  let worker: SpawnedKiln;
  let replica: SpawnedKiln;
  let scratch: string;

  before(async () => {
    [rgw, pg] = await Promise.all([startRgw(), startPostgres()]);
    s3 = rgw.client();
    bucket = await rgw.createBucket();
    env = rgw.kilnEnv(bucket, { KILN_S3_PREFIX: PREFIX, KILN_DATABASE_URL: await pg.database(), KILN_GC_INTERVAL: '0', KILN_FSYNC: 'false' });
    workerDir = await tempDir('kiln-s3-disks-a-');
    replicaDir = await tempDir('kiln-s3-disks-b-');
    scratch = await tempDir('kiln-s3-disks-scratch-');
    // One process bakes (redirects on, the default); a replica on another data directory streams.
    worker = await spawnKiln(workerDir, { ...env, KILN_WORKERS: '1' });
    replica = await spawnKiln(replicaDir, { ...env, KILN_WORKERS: '0', KILN_S3_REDIRECT: 'false' });
  });
  after(async () => {
    await Promise.all([worker?.stop(), replica?.stop()]);
    await Promise.all([rgw?.stop(), pg?.stop()]);
    for (const dir of [workerDir, replicaDir, scratch]) if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Keys (without the prefix) of the objects under `prefix`. */
  async function objects(prefix: string): Promise<string[]> {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keys.file(prefix) }));
    return (r.Contents ?? []).map((o) => o.Key!.slice(PREFIX.length)).sort();
  }

  async function pushAndBake(repo: string, content: Buffer): Promise<string> {
    const image = makeImage([{ tar: await layerTar([{ name: 'srv/data.bin', content }, { name: 'etc/motd', content: `${repo}\n` }]), compression: 'gzip' }]);
    for (const [digest, bytes] of image.blobs) assert.equal((await pushBlob(worker.url, repo, digest, bytes)).status, 201);
    const put = await fetch(`${worker.url}/v2/${repo}/manifests/v1`, { method: 'PUT', body: image.manifestBytes, headers: { 'content-type': OCI_MANIFEST } });
    assert.equal(put.status, 201);
    const digest = put.headers.get('docker-content-digest')!;
    const deadline = Date.now() + 90_000;
    let view: { status: string; error: string | null } = { status: '', error: null };
    while (Date.now() < deadline) {
      view = (await (await fetch(`${worker.url}/api/v1/images/${repo}:v1`)).json()) as typeof view;
      if (view.status === 'ready' || view.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(view.status, 'ready', `bake of ${repo}: ${view.error}`);
    return digest;
  }

  async function imagesUnder(dataDir: string): Promise<string[]> {
    return readdir(path.join(dataDir, 'images')).catch(() => []);
  }

  it('a bake publishes disk and config.json as objects; both replicas serve the same bytes; e2fsck is clean', async () => {
    const digest = await pushAndBake('disks/app', randomBytes(300 * 1024));
    assert.deepEqual(await objects(fileKeys.imageDir(digest)), [fileKeys.imageConfig(digest), fileKeys.imageDisk(digest)].sort());
    assert.deepEqual(await imagesUnder(workerDir), [], 'nothing under the baking data directory images/');
    assert.deepEqual(await imagesUnder(replicaDir), []);

    // The default: 307 to a presigned URL, the size from Kiln; following it gives the disk.
    const redirected = await fetch(`${worker.url}/api/v1/images/${digest}/disk`, { redirect: 'manual' });
    assert.equal(redirected.status, 307);
    const location = redirected.headers.get('location')!;
    assert.match(location, new RegExp(`/${bucket}/${keys.file(fileKeys.imageDisk(digest))}\\?`));
    const size = Number(redirected.headers.get('x-kiln-disk-size'));
    assert.ok(size > 0);
    const followed = await fetch(`${worker.url}/api/v1/images/disks/app:v1/disk`);
    assert.equal(followed.status, 200);
    assert.ok(followed.redirected);
    const disk = Buffer.from(await followed.arrayBuffer());
    assert.equal(disk.length, size);
    // HEAD is answered by Kiln itself.
    const head = await fetch(`${worker.url}/api/v1/images/${digest}/disk`, { method: 'HEAD', redirect: 'manual' });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get('content-length')), size);

    // KILN_S3_REDIRECT=false on a replica that never baked: streamed, whole and by range.
    const streamed = await fetch(`${replica.url}/api/v1/images/${digest}/disk`, { redirect: 'manual' });
    assert.equal(streamed.status, 200);
    assert.equal(Number(streamed.headers.get('content-length')), size);
    assert.equal(sha256(Buffer.from(await streamed.arrayBuffer())), sha256(disk));
    const ranged = await fetch(`${replica.url}/api/v1/images/${digest}/disk`, { headers: { range: 'bytes=1024-70000' }, redirect: 'manual' });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get('content-range'), `bytes 1024-70000/${size}`);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(disk.subarray(1024, 70001)));
    const tail = await fetch(`${replica.url}/api/v1/images/${digest}/disk`, { headers: { range: `bytes=${size - 10}-` }, redirect: 'manual' });
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(disk.subarray(size - 10)));
    const bad = await fetch(`${replica.url}/api/v1/images/${digest}/disk`, { headers: { range: `bytes=${size}-` }, redirect: 'manual' });
    assert.equal(bad.status, 416);
    await bad.arrayBuffer();

    // The run config comes from config.json in the bucket, on either replica.
    const detail = (await (await fetch(`${replica.url}/api/v1/images/disks/app:v1`)).json()) as { runConfig: { disk?: { sizeBytes?: number } } | null };
    assert.equal(detail.runConfig?.disk?.sizeBytes, size);

    const file = path.join(scratch, 'downloaded.ext4');
    await writeFile(file, disk);
    const check = spawnSync('e2fsck', ['-fn', file], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });

  it('deleting the image removes its objects', async () => {
    const digest = await pushAndBake('disks/gone', randomBytes(10 * 1024));
    assert.equal((await objects(fileKeys.imageDir(digest))).length, 2);
    const del = await fetch(`${replica.url}/api/v1/images/disks/gone:v1`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.deepEqual(await objects(fileKeys.imageDir(digest)), []);
    assert.equal((await fetch(`${worker.url}/api/v1/images/${digest}/disk`, { redirect: 'manual' })).status, 404);
  });

  it('GC reclaims an orphan disk object and keeps live disks; fsck reports a missing disk object', async () => {
    const live = await pushAndBake('disks/live', randomBytes(10 * 1024));
    // A crash between publishing and recording: a disk no image record names.
    const orphan = `sha256:${sha256(randomBytes(16))}`;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.file(fileKeys.imageDisk(orphan)), Body: randomBytes(4096) }));

    const fsckEnv = { ...env, KILN_DATA_DIR: replicaDir };
    const before = await runKilnCli(['fsck', '--json', '--data-dir', replicaDir], fsckEnv);
    const r1 = JSON.parse(before.stdout) as { ok: boolean; problems: { kind: string; subject: string }[] };
    assert.ok(r1.problems.some((p) => p.kind === 'unreferenced-disk' && p.subject === orphan), before.stdout);

    const young = JSON.parse((await runKilnCli(['gc', '--json', '--data-dir', replicaDir], fsckEnv)).stdout) as { items: { disks: string[] } };
    assert.deepEqual(young.items.disks, [], 'an orphan younger than the grace period is kept');
    const swept = await runKilnCli(['gc', '--grace', '0', '--json', '--data-dir', replicaDir], fsckEnv);
    assert.equal(swept.code, 0, swept.stdout + swept.stderr);
    const report = JSON.parse(swept.stdout) as { items: { disks: string[] }; bytesFreed: { disks: number } };
    assert.deepEqual(report.items.disks, [orphan]);
    assert.equal(report.bytesFreed.disks, 4096);
    assert.deepEqual(await objects(fileKeys.imageDir(orphan)), []);
    assert.equal((await objects(fileKeys.imageDir(live))).length, 2, 'the live disk stays');

    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: keys.file(fileKeys.imageDisk(live)) }));
    const missing = await runKilnCli(['fsck', '--json', '--data-dir', replicaDir], fsckEnv);
    assert.equal(missing.code, 1);
    const r2 = JSON.parse(missing.stdout) as typeof r1;
    assert.ok(r2.problems.some((p) => p.kind === 'missing-disk' && p.subject === live), missing.stdout);
    assert.equal((await fetch(`${replica.url}/api/v1/images/${live}/disk`)).status, 404);
  });
});
