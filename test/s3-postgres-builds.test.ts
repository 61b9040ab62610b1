// Builds with Kiln as it runs at scale: two servers with their own data
// directories on one PostgreSQL database and one S3 bucket (a real Ceph RGW).
// A build submitted to server A and run there keeps its source, log and
// result as objects in the bucket and nothing under either data directory's
// builds/; server B, which cannot build and shares no disk with A, follows
// the log over SSE while A's build runs and gets every line, and downloads
// it; retention and the collector remove the objects.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { buildkitEnv, buildkitSkipReason, ended, followLog, logOf, pushBaseImage, submitBuild, tarGz, waitForBuild } from './helpers/builds.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { rgwMissing, startRgw, type Rgw } from './helpers/rgw.js';

const skip = rgwMissing() ?? postgresMissing() ?? (await buildkitSkipReason()) ?? false;

describe('builds on PostgreSQL + S3, two servers with their own data directories', { skip }, () => {
  let pg: TestPostgres;
  let rgw: Rgw;
  let bucket: string;
  let dataA: string;
  let dataB: string;
  let a: TestKiln;
  let b: TestKiln;

  before(async () => {
    [pg, rgw] = await Promise.all([startPostgres(), startRgw()]);
    bucket = await rgw.createBucket();
    dataA = await tempDir('kiln-s3-builds-a-');
    dataB = await tempDir('kiln-s3-builds-b-');
    // A's worker process inherits the credentials from this process's environment (only KILN_* settings are handed on).
    const s3Env = rgw.kilnEnv(bucket);
    process.env.AWS_ACCESS_KEY_ID = s3Env.AWS_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = s3Env.AWS_SECRET_ACCESS_KEY;
    const env = {
      ...s3Env,
      KILN_DATABASE_URL: await pg.database(),
      KILN_GC_INTERVAL: '0',
      KILN_BUILD_LOG_POLL_SECONDS: '0.05',
      KILN_BUILD_LOG_PUBLISH_SECONDS: '0.2',
      KILN_BUILD_RETENTION: '1s',
    };
    a = await startKiln({ dataDir: dataA, env: { ...env, ...buildkitEnv(), KILN_WORKERS: '1' } });
    // B has no BuildKit (so it never takes the build) and no workers (so A bakes the disk).
    b = await startKiln({ dataDir: dataB, env: { ...env, KILN_BUILDKIT_DIR: path.join(dataB, 'no-buildkit'), KILN_WORKERS: '0' } });
    assert.equal(b.kiln.stores.backend, 'postgres');
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await Promise.all([pg?.stop(), rgw?.stop()]);
    for (const dir of [dataA, dataB]) if (dir) await rm(dir, { recursive: true, force: true });
  });

  const objectsOf = async (id: string): Promise<string[]> => {
    const page = await rgw.client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `builds/${id}/` }));
    return (page.Contents ?? []).map((o) => o.Key!.slice(`builds/${id}/`.length)).sort();
  };
  const localBuildFiles = async (dataDir: string): Promise<string[]> => readdir(path.join(dataDir, 'builds')).catch(() => []);

  it('a build run on A keeps its files in the bucket; B follows every line of its log while it runs; retention and GC remove them', { timeout: 600_000 }, async () => {
    await pushBaseImage(a.url, 'library/base', 'latest');
    const lines = 25;
    const dockerfile = `FROM ${a.host}/library/base\nRUN i=1; while [ $i -le ${lines} ]; do echo "counted line $i"; i=$((i+1)); sleep 0.2; done\n`;
    const accepted = await submitBuild(a.url, { files: { Dockerfile: dockerfile } });
    // Published before the row was created: the source is in the bucket at once, nothing on disk.
    assert.deepEqual(await objectsOf(accepted.id), ['build.log', 'source.tar.gz'], 'the source and the queued line are stored');
    // The first RUN line reaches B while A's build still runs (A publishes the log as it grows).
    const seen: { status: Promise<string> | null } = { status: null };
    const followed = await followLog(b.url, accepted.id, {
      onLine: (line) => {
        if (seen.status === null && line.endsWith('counted line 1')) seen.status = waitForBuild(b.url, accepted.id, () => true).then((v) => v.status);
      },
    });
    assert.ok(seen.status !== null, 'B saw the first line of the RUN step');
    assert.ok(['building', 'pushing'].includes(await seen.status), 'B saw it while the build ran');
    assert.equal(followed.end?.status, 'ready', JSON.stringify(followed.end));
    const view = await waitForBuild(a.url, accepted.id, ended);
    assert.equal(view.status, 'ready');

    // Every line, once and in order, as stored at the end.
    const stored = (await logOf(b.url, accepted.id)).split('\n').slice(0, -1);
    assert.deepEqual(followed.lines, stored, 'B streamed exactly the stored log');
    assert.deepEqual(followed.ids, stored.map((_, i) => i));
    assert.match(stored[0]!, new RegExp(`^==> build ${accepted.id} queued`));
    assert.equal(stored.at(-1), '==> build ready');
    for (let i = 1; i <= lines; i++) assert.ok(stored.some((l) => l.endsWith(`counted line ${i}`)), `line ${i} of the RUN step is in the log`);
    assert.equal(await logOf(a.url, accepted.id), `${stored.join('\n')}\n`, 'A serves the same log');

    // The files are objects; no data directory has builds/<id>/ and A dropped its running copy.
    assert.deepEqual(await objectsOf(accepted.id), ['build.log', 'result.json', 'source.tar.gz']);
    assert.deepEqual(await localBuildFiles(dataA), []);
    assert.deepEqual(await localBuildFiles(dataB), []);
    assert.equal(existsSync(path.join(a.kiln.dirs.scratchRoot, 'build-logs', `${accepted.id}.log`)), false, "A's local copy of the log is gone");
    const result = JSON.parse((await a.kiln.stores.files.readBytes(`builds/${accepted.id}/result.json`))!.toString()) as { id: string; status: string };
    assert.deepEqual([result.id, result.status], [accepted.id, 'ready']);

    // KILN_BUILD_RETENTION=1s: the collector removes the build's objects and keeps its record.
    await new Promise((r) => setTimeout(r, 1100));
    const report = await b.kiln.gc.run({ dryRun: false, graceMs: 3_600_000 });
    assert.ok(report.deleted.buildFiles >= 1, JSON.stringify(report.deleted));
    assert.ok(report.bytesFreed.buildFiles > 0);
    assert.deepEqual(await objectsOf(accepted.id), [], 'the objects are gone');
    const gone = await fetch(`${b.url}/api/v1/builds/${accepted.id}/logs`);
    assert.equal(gone.status, 404);
    assert.equal((await waitForBuild(b.url, accepted.id, () => true)).files_kept, false);
  });

  it("a cancel through B ends A's build; the log A stores ends with the cancel; a plain tar source is stored gzip-compressed", { timeout: 600_000 }, async () => {
    // A plain (uncompressed) tar, as `tar -c` sends it.
    const tar = gunzipSync(await tarGz({ Dockerfile: `FROM ${a.host}/library/base\nRUN echo started-sleeping; sleep 120\n` }));
    const form = new FormData();
    form.set('source', new Blob([tar]), 'source.tar');
    const res = await fetch(`${a.url}/api/v1/builds`, { method: 'POST', body: form });
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    const source = (await a.kiln.stores.files.readBytes(`builds/${id}/source.tar.gz`))!;
    assert.deepEqual([...source.subarray(0, 2)], [0x1f, 0x8b], 'stored gzip-compressed');
    assert.deepEqual(gunzipSync(source), tar);

    const seen: { cancelling: Promise<Response> | null } = { cancelling: null };
    const followed = await followLog(b.url, id, {
      onLine: (line) => {
        if (seen.cancelling === null && line.endsWith('started-sleeping')) seen.cancelling = fetch(`${b.url}/api/v1/builds/${id}`, { method: 'DELETE' });
      },
    });
    assert.ok(seen.cancelling !== null, 'B saw the RUN step start');
    const cancelled = await seen.cancelling;
    assert.equal(cancelled.status, 200);
    assert.equal(followed.end?.status, 'cancelled');
    assert.equal(followed.lines.at(-1), '==> build cancelled: cancelled by request', followed.lines.slice(-5).join('\n'));
    const stored = (await logOf(b.url, id)).split('\n').slice(0, -1);
    assert.deepEqual(followed.lines, stored, 'B streamed exactly the stored log');
    assert.equal(stored.filter((l) => l.startsWith('==> build cancelled')).length, 1, 'one end line');
    assert.equal((await waitForBuild(a.url, id, ended)).status, 'cancelled');
    // A lets go of its local copy once it stored the log a last time.
    const localCopy = path.join(a.kiln.dirs.scratchRoot, 'build-logs', `${id}.log`);
    for (let i = 0; i < 600 && existsSync(localCopy); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(existsSync(localCopy), false);
  });
});
