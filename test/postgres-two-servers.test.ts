// Two `kiln serve` processes on one PostgreSQL database, sharing one data
// directory (the filesystem blob store): what one is told, the other serves.
// Pushes through one, pulls through the other; tags, deletes and referrers
// agree; the same tag pushed from both at once ends on one of the two
// manifests and both stay pullable by digest; a collector in one process
// never deletes what the other is pushing; bad input at the database layer.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fsck } from '../src/gc/fsck.js';
import { openOffline } from '../src/gc/offline.js';
import { ODD_UNICODE } from '../src/store/testing/metadata-store-contract.js';
import { pushWithRetry, verifyPulls, type Pushed, type UploadMode } from './helpers/gc.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { startPostgres, type TestPostgres } from './helpers/postgres.js';
import { OCI_EMPTY, OCI_MANIFEST, RegistryClient, TEST_CONFIG, blob, descriptor, expectError, manifestBlob, randomBlob } from './helpers/registry.js';

describe('two kiln serve processes on one PostgreSQL', () => {
  let pg: TestPostgres;
  let dataDir: string;
  let url: string;
  let a: SpawnedKiln;
  let b: SpawnedKiln;
  let A: RegistryClient;
  let B: RegistryClient;

  before(async () => {
    pg = await startPostgres();
    url = await pg.database();
    dataDir = await tempDir('kiln-two-');
    const env = { KILN_DATABASE_URL: url, KILN_GC_INTERVAL: '0', KILN_GC_GRACE: '0', KILN_FSYNC: 'false' };
    // Started together: both migrate the empty database, one waits for the other.
    [a, b] = await Promise.all([spawnKiln(dataDir, env), spawnKiln(dataDir, env)]);
    A = new RegistryClient(a.url);
    B = new RegistryClient(b.url);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await pg?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves through one what was pushed through the other; tags, deletes and referrers agree', async () => {
    const img = await A.pushImage('two/app', 'v1');
    for (const c of [A, B]) {
      const got = await c.getManifest('two/app', 'v1', OCI_MANIFEST);
      assert.equal(got.res.status, 200);
      assert.ok(got.bytes.equals(img.manifest.bytes));
      for (const l of img.layers) assert.ok((await c.getBlob('two/app', l.digest)).bytes.equals(l.bytes));
    }
    await B.mustPutManifest('two/app', 'v2', img.manifest, OCI_MANIFEST);
    for (const c of [A, B]) assert.deepEqual(await (await c.fetch('/v2/two/app/tags/list')).json(), { name: 'two/app', tags: ['v1', 'v2'] });
    assert.deepEqual(await (await B.fetch('/v2/_catalog')).json(), { repositories: ['two/app'] });

    // A referrer pushed through B is listed by A.
    const empty = blob('{}');
    await B.mustPushBlob('two/app', empty);
    const sig = manifestBlob({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.sig',
      config: descriptor(empty, OCI_EMPTY),
      layers: [descriptor(empty, OCI_EMPTY)],
      subject: descriptor(img.manifest, OCI_MANIFEST),
      annotations: ODD_UNICODE,
    });
    await B.mustPutManifest('two/app', sig.digest, sig, OCI_MANIFEST);
    const referrers = (await (await A.fetch(`/v2/two/app/referrers/${img.manifest.digest}`)).json()) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    assert.deepEqual(referrers.manifests.map((m) => m.digest), [sig.digest]);
    assert.deepEqual(referrers.manifests[0]!.annotations, ODD_UNICODE, 'odd Unicode in annotations comes back exactly');
    assert.ok((await A.getManifest('two/app', sig.digest, OCI_MANIFEST)).bytes.equals(sig.bytes));

    // Deletes through one are seen by the other.
    assert.equal((await A.fetch('/v2/two/app/manifests/v2', { method: 'DELETE' })).status, 202);
    assert.equal((await B.getManifest('two/app', 'v2', OCI_MANIFEST)).res.status, 404);
    assert.equal((await B.fetch(`/v2/two/app/manifests/${sig.digest}`, { method: 'DELETE' })).status, 202);
    assert.deepEqual(((await (await A.fetch(`/v2/two/app/referrers/${img.manifest.digest}`)).json()) as { manifests: unknown[] }).manifests, []);
    assert.equal((await A.fetch(`/v2/two/app/manifests/${img.manifest.digest}`, { method: 'DELETE' })).status, 202);
    for (const c of [A, B]) assert.equal((await c.getManifest('two/app', 'v1', OCI_MANIFEST)).res.status, 404);
  });

  it('takes names and tags at the grammar limits and refuses media types the database could not keep', async () => {
    const repo = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(53)}`;
    const tag = `T${'x'.repeat(127)}`;
    const img = await A.pushImage(repo, tag);
    assert.ok((await B.getManifest(repo, tag, OCI_MANIFEST)).bytes.equals(img.manifest.bytes));
    assert.deepEqual(await (await B.fetch(`/v2/${repo}/tags/list`)).json(), { name: repo, tags: [tag] });
    await expectError(await B.putManifest(`${repo}x`, 'v1', img.manifest.bytes, OCI_MANIFEST), { status: 400, code: 'NAME_INVALID' });
    const { message } = await expectError(await B.putManifest(repo, `${tag}x`, img.manifest.bytes, OCI_MANIFEST), { status: 400, code: 'MANIFEST_INVALID' });
    assert.match(message, /neither a digest nor a valid tag/);

    for (const artifactType of ['application/vnd.x\u0000y', 'application/\ud800', 'text/plain\n']) {
      const bad = manifestBlob({ ...img.doc, artifactType });
      const res = await A.putManifest(repo, bad.digest, bad.bytes, OCI_MANIFEST);
      const { message } = await expectError(res, { status: 400, code: 'MANIFEST_INVALID' });
      assert.match(message, /is not a media type/);
    }
  });

  it('ends a tag pushed from both at once on one of the two; both pushes stay pullable by digest; later pushes win', async () => {
    for (let round = 0; round < 8; round++) {
      const x = await A.pushImage('race/app', `x${round}`);
      const y = await B.pushImage('race/app', `y${round}`);
      const [rx, ry] = await Promise.all([
        A.putManifest('race/app', 'latest', x.manifest.bytes, OCI_MANIFEST),
        B.putManifest('race/app', 'latest', y.manifest.bytes, OCI_MANIFEST),
      ]);
      assert.equal(rx.status, 201);
      assert.equal(ry.status, 201);
      const seen = await Promise.all([A, B].map(async (c) => (await c.fetch('/v2/race/app/manifests/latest', { method: 'HEAD', headers: { accept: OCI_MANIFEST } })).headers.get('docker-content-digest')));
      assert.equal(seen[0], seen[1], 'both servers agree on the tag');
      assert.ok([x.manifest.digest, y.manifest.digest].includes(seen[0]!), 'the tag names one of the two pushes');
      for (const c of [A, B]) {
        for (const m of [x.manifest, y.manifest]) assert.ok((await c.getManifest('race/app', m.digest, OCI_MANIFEST)).bytes.equals(m.bytes));
      }
      // One after the other, the last writer wins, whichever server it used.
      const [first, second] = round % 2 ? [A, B] : [B, A];
      await first.mustPutManifest('race/app', 'latest', x.manifest, OCI_MANIFEST);
      await second.mustPutManifest('race/app', 'latest', y.manifest, OCI_MANIFEST);
      for (const c of [A, B]) assert.equal((await c.fetch('/v2/race/app/manifests/latest', { method: 'HEAD', headers: { accept: OCI_MANIFEST } })).headers.get('docker-content-digest'), y.manifest.digest);
    }
  });

  it('a collector in one process never deletes what the other is pushing', async () => {
    const shared = Array.from({ length: 4 }, (_, i) => randomBlob(8192 + i * 1024));
    const live: Pushed[] = [];
    let done = false;
    let runs = 0;
    let completed = 0;
    const collector = (async () => {
      while (!done) {
        const res = await fetch(`${b.url}/api/v1/gc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"dryRun":false}' });
        assert.equal(res.status, 200, await res.clone().text());
        await res.arrayBuffer();
        runs++;
        // With grace 0 a run between a push's blobs and its manifest sweeps the blobs (the push
        // retries); back-to-back runs would starve the pushes, so each waits for another push.
        const target = completed + 1;
        while (!done && completed < target) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, randomInt(0, 60)));
      }
    })();
    const modes: UploadMode[][] = [['monolithic'], ['post-put'], ['chunked'], ['mount', 'post-put']];
    try {
      await Promise.all(
        Array.from({ length: 3 }, async (_, w) => {
          for (let i = 0; i < 8; i++) {
            const repo = `gc2/r${(w + i) % 3}`;
            const config = blob(JSON.stringify({ w, i, n: Math.random() }));
            const layers = [shared[(w + i) % shared.length]!, randomBlob(4096)];
            const manifest = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, TEST_CONFIG), layers: layers.map((l) => descriptor(l, 'application/vnd.oci.image.layer.v1.tar')) });
            await pushWithRetry(a.url, repo, `t${w}-${i}`, [config, ...layers], manifest, modes[(w + i) % modes.length]!, `gc2/r${(w + i + 1) % 3}`);
            live.push({ repo, tag: `t${w}-${i}`, manifest, blobs: [config, ...layers] });
            completed++;
          }
        }),
      );
    } finally {
      done = true;
      await collector;
    }
    assert.ok(runs > 0, 'the collector ran while pushes went on');
    await verifyPulls(a.url, live);
    await verifyPulls(b.url, live);
    // One more collection with nothing in flight: every tagged image survives it too.
    assert.equal((await fetch(`${a.url}/api/v1/gc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 200);
    await verifyPulls(b.url, live);

    const offline = await openOffline(dataDir, 'test fsck', url);
    try {
      const report = await fsck({ dirs: offline.stores.dirs, store: offline.stores.gc, blobs: offline.stores.blobs, quarantine: false });
      assert.deepEqual(report.problems.filter((p) => p.severity === 'error'), []);
    } finally {
      await offline.close();
    }
  });
});
