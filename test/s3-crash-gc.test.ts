// Kiln on S3 (a real Ceph RGW) when things go wrong: kill -9 during parallel
// pushes (every acknowledged push pulls back intact, fsck --deep clean), a
// commit whose object-store call fails (an error, no row), objects without
// rows (GC reclaims them once the grace period is over), and fsck finding
// corrupt and truncated objects.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { S3Keys } from '../src/store/s3/keys.js';
import { runKilnCli } from './helpers/cli.js';
import { pushUntilKilled } from './helpers/crash.js';
import { spawnKiln, startKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { RegistryClient, expectError, randomBlob } from './helpers/registry.js';
import { rgwMissing, startRgw, type Rgw } from './helpers/rgw.js';

const keys = new S3Keys('');
const cleanups: (() => Promise<unknown>)[] = [];

describe('Kiln on S3 under failure', { skip: rgwMissing() ?? false }, () => {
  let rgw: Rgw;
  let s3: S3Client;
  before(async () => {
    rgw = await startRgw();
    s3 = rgw.client();
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await rgw?.stop();
  });

  async function setup(): Promise<{ dataDir: string; bucket: string; env: Record<string, string> }> {
    const dataDir = await tempDir('kiln-s3-crash-');
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const bucket = await rgw.createBucket();
    return { dataDir, bucket, env: rgw.kilnEnv(bucket, { KILN_FSYNC: 'false' }) };
  }

  async function spawned(dataDir: string, env: Record<string, string>): Promise<SpawnedKiln> {
    const s = await spawnKiln(dataDir, env);
    cleanups.push(() => s.kill9());
    return s;
  }

  /** Every object under blobs/ hashes to its key (no partial or wrong blob is ever visible). */
  async function wrongObjects(bucket: string): Promise<string[]> {
    const bad: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keys.blobs, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        const digest = keys.digestOf(o.Key!);
        if (!digest) {
          bad.push(`${o.Key} (not a blob key)`);
          continue;
        }
        const body = (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }))).Body!;
        const hash = createHash('sha256');
        for await (const chunk of body as AsyncIterable<Buffer>) hash.update(chunk);
        if (`sha256:${hash.digest('hex')}` !== digest) bad.push(o.Key!);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return bad;
  }

  it('kill -9 during parallel pushes: every acknowledged push pulls back intact, a session resumes, fsck --deep is clean', async () => {
    const { dataDir, bucket, env } = await setup();
    const first = await spawned(dataDir, env);
    const c = new RegistryClient(first.url);
    const shared = randomBlob(256 * 1024);
    // A session with one acknowledged chunk (a staged tail in the bucket), resumed after the restart.
    const resumable = randomBlob(7 * 1024 * 1024);
    const post = await c.fetch('/v2/crash/resume/blobs/uploads/', { method: 'POST' });
    const resumeAt = new URL(post.headers.get('location')!, first.url);
    const head = 3 * 1024 * 1024;
    const firstChunk = await fetch(resumeAt, { method: 'PATCH', body: resumable.bytes.subarray(0, head), headers: { 'content-range': `0-${head - 1}` } });
    assert.equal(firstChunk.status, 202);

    // Some layers above S3's 5 MiB part minimum, so parts and tails are in flight at the kill.
    const { acked, inFlightAtKill } = await pushUntilKilled(c, first, {
      workers: 5,
      killAfter: 12,
      shared,
      layerSize: (w, i) => 64 * 1024 + ((w * 7919 + i * 104729) % (6 * 1024 * 1024)),
    });
    assert.ok(inFlightAtKill > 0, 'the kill happened while pushes were in flight');
    assert.deepEqual(await wrongObjects(bucket), [], 'no partial or wrong object under blobs/');

    const second = await spawned(dataDir, env);
    const r = new RegistryClient(second.url);
    for (const { repo, blob: b } of acked.blobs) {
      const { res, bytes } = await r.getBlob(repo, b.digest); // fetch follows the 307 to RGW
      assert.equal(res.status, 200, `${repo} ${b.digest}`);
      assert.ok(bytes.equals(b.bytes), `${repo} ${b.digest} differs`);
    }
    for (const { repo, tag, manifest } of acked.manifests) {
      const { res, bytes } = await r.getManifest(repo, tag);
      assert.equal(res.status, 200, `${repo}:${tag}`);
      assert.ok(bytes.equals(manifest.bytes));
    }
    const status = await fetch(new URL(resumeAt.pathname, second.url));
    assert.equal(status.headers.get('range'), `0-${head - 1}`);
    const rest = await fetch(new URL(resumeAt.pathname, second.url), { method: 'PATCH', body: resumable.bytes.subarray(head), headers: { 'content-range': `${head}-${resumable.size - 1}` } });
    assert.equal(rest.status, 202);
    const done = new URL(rest.headers.get('location')!, second.url);
    done.searchParams.set('digest', resumable.digest);
    assert.equal((await fetch(done, { method: 'PUT' })).status, 201);
    assert.ok((await r.getBlob('crash/resume', resumable.digest)).bytes.equals(resumable.bytes));
    assert.equal(await second.stop(), 0);

    for (const args of [['fsck', '--data-dir', dataDir], ['fsck', '--deep', '--data-dir', dataDir]]) {
      const check = await runKilnCli(args, env);
      assert.equal(check.code, 0, `${args.join(' ')}: ${check.stdout}${check.stderr}`);
      assert.match(check.stdout, /clean/);
    }
    // What the kill left (sessions of pushes in flight, objects copied before their row) is gone after a collection.
    const gc = await runKilnCli(['gc', '--grace', '0', '--data-dir', dataDir], env);
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    const after = await runKilnCli(['fsck', '--json', '--data-dir', dataDir], env);
    const report = JSON.parse(after.stdout) as { ok: boolean; problems: { kind: string }[] };
    assert.ok(report.ok);
    assert.deepEqual(report.problems.filter((p) => p.kind !== 'upload-without-file'), []);
  });

  it('a commit whose object-store call fails answers an error and leaves no row; the next push works', async () => {
    const { env } = await setup();
    const server = await startKiln({ env });
    cleanups.push(() => server.close());
    const c = new RegistryClient(server.url);
    const b = randomBlob(6 * 1024 * 1024 + 17);
    const post = await c.fetch('/v2/fail/commit/blobs/uploads/', { method: 'POST' });
    const loc = new URL(post.headers.get('location')!, server.url);
    const patch = await fetch(loc, { method: 'PATCH', body: b.bytes });
    assert.equal(patch.status, 202);
    const put = new URL(patch.headers.get('location')!, server.url);
    put.searchParams.set('digest', b.digest);
    // The object store refuses everything from now on (a revoked key, an outage).
    rgw.admin(['user', 'suspend', '--uid=test']);
    try {
      const failed = await expectError(await fetch(put, { method: 'PUT' }), { status: 503, code: 'UNKNOWN' });
      assert.match(failed.message, /object store failed .*nothing was stored/);
    } finally {
      rgw.admin(['user', 'enable', '--uid=test']);
    }
    assert.equal(await server.kiln.registry.meta.blobSize(b.digest), null, 'no row for a blob that was not stored');
    await expectError(await c.fetch(`/v2/fail/commit/blobs/${b.digest}`, { method: 'HEAD' }), { status: 404, code: 'BLOB_UNKNOWN' }, 'HEAD');
    assert.equal((await c.pushBlob('fail/commit', b)).status, 201);
    assert.ok((await c.getBlob('fail/commit', b.digest)).bytes.equals(b.bytes));
  });

  it('GC deletes objects only after their rows, and reclaims objects without rows once they are older than the grace period', async () => {
    const { dataDir, bucket, env } = await setup();
    const server = await startKiln({ dataDir, env: { ...env, KILN_GC_INTERVAL: '0' } });
    const c = new RegistryClient(server.url);
    const layer = randomBlob(40_000);
    const kept = await c.pushImage('gc/app', 'v1', { layers: [layer] });
    const doomed = await c.pushImage('gc/old', 'v1', { layers: [randomBlob(30_000)] });
    assert.equal((await c.fetch(`/v2/gc/old/manifests/${doomed.manifest.digest}`, { method: 'DELETE' })).status, 202);
    // An object with no row: what a crash between the copy to the blob key and the row leaves.
    const orphan = randomBlob(5000);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.blob(orphan.digest), Body: orphan.bytes }));
    await server.close();

    const young = await runKilnCli(['gc', '--data-dir', dataDir], env);
    assert.equal(young.code, 0, young.stderr);
    assert.ok((await wrongObjects(bucket)).length === 0);
    const present = async (digest: string) =>
      (await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keys.blob(digest) }))).KeyCount === 1;
    assert.ok(await present(orphan.digest), 'an orphan younger than the grace period is kept');

    const swept = await runKilnCli(['gc', '--grace', '0', '--json', '--data-dir', dataDir], env);
    const report = JSON.parse(swept.stdout) as { items: { blobs: string[]; manifests: string[] } };
    assert.ok(report.items.blobs.includes(orphan.digest));
    assert.ok(!(await present(orphan.digest)));
    for (const d of [doomed.manifest.digest, doomed.config.digest, ...doomed.layers.map((x) => x.digest)]) assert.ok(!(await present(d)), `${d} of the deleted image is gone`);
    for (const d of [kept.manifest.digest, layer.digest]) assert.ok(await present(d), `${d} of the tagged image stays`);

    const again = await startKiln({ dataDir, env });
    cleanups.push(() => again.close());
    assert.ok((await new RegistryClient(again.url).getBlob('gc/app', layer.digest)).bytes.equals(layer.bytes));
  });

  it('fsck: a truncated object fails the size check, a flipped byte only --deep finds; both are quarantined in the bucket', async () => {
    const { dataDir, bucket, env } = await setup();
    const server = await startKiln({ dataDir, env });
    const c = new RegistryClient(server.url);
    const flipped = randomBlob(50_000);
    const truncated = randomBlob(60_000);
    await c.pushImage('fsck/s3', 'v1', { layers: [flipped, truncated] });
    await server.close();

    const bad = Buffer.from(flipped.bytes);
    bad[20_000] ^= 0xff;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.blob(flipped.digest), Body: bad }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.blob(truncated.digest), Body: truncated.bytes.subarray(0, 1000) }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${keys.blobs}sha256/zz/not-a-digest`, Body: randomBytes(10) }));

    const shallow = await runKilnCli(['fsck', '--data-dir', dataDir, '--json'], env);
    const r1 = JSON.parse(shallow.stdout) as { ok: boolean; deep: boolean; problems: { kind: string; subject: string }[]; quarantined: { digest: string; movedTo: string }[] };
    assert.equal(shallow.code, 1);
    assert.equal(r1.deep, false);
    assert.ok(r1.problems.some((p) => p.kind === 'blob-size' && p.subject === truncated.digest));
    assert.ok(!r1.problems.some((p) => p.subject === flipped.digest), 'the size check cannot see a flipped byte');
    assert.ok(r1.problems.some((p) => p.kind === 'stray-file' && p.subject.endsWith('not-a-digest')));
    assert.deepEqual(r1.quarantined.map((q) => q.digest), [truncated.digest]);
    assert.match(r1.quarantined[0]!.movedTo, new RegExp(`^s3://${bucket}/quarantine/sha256/`));

    const deep = await runKilnCli(['fsck', '--deep', '--data-dir', dataDir, '--json'], env);
    const r2 = JSON.parse(deep.stdout) as typeof r1;
    assert.equal(r2.deep, true);
    assert.ok(r2.problems.some((p) => p.kind === 'corrupt-blob' && p.subject === flipped.digest));
    assert.deepEqual(r2.quarantined.map((q) => q.digest), [flipped.digest]);

    const again = await startKiln({ dataDir, env });
    cleanups.push(() => again.close());
    for (const d of [flipped.digest, truncated.digest]) await expectError(await fetch(`${again.url}/v2/fsck/s3/blobs/${d}`), { status: 404, code: 'BLOB_UNKNOWN' });
  });
});
