// GC concurrent with pushes that share layers (real server, grace period 0,
// collections back to back): nothing a live tag references ever disappears.
// Pushes whose unreferenced blobs are swept before their manifest arrives
// get MANIFEST_BLOB_UNKNOWN and push again, as clients do.
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { GcReport } from '../src/gc/collector.js';
import { fsck } from '../src/gc/fsck.js';
import { openOffline } from '../src/gc/offline.js';
import { rm } from 'node:fs/promises';
import { pushWithRetry, verifyPulls, type Pushed, type UploadMode } from './helpers/gc.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { OCI_LAYER_GZIP, OCI_MANIFEST, TEST_CONFIG, blob, descriptor, manifestBlob, randomBlob } from './helpers/registry.js';

const WORKERS = Number(process.env.KILN_GC_CONC_WORKERS ?? 8);
const PUSHES_PER_WORKER = Number(process.env.KILN_GC_CONC_PUSHES ?? 12);

describe('GC concurrent with pushes sharing layers', () => {
  let server: TestKiln;
  let dataDir: string;

  before(async () => {
    dataDir = await tempDir('kiln-gc-conc-');
    server = await startKiln({ dataDir, env: { KILN_GC_GRACE: '0', KILN_GC_INTERVAL: '0', KILN_FSYNC: 'false' } });
  });
  after(async () => {
    await server?.close().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('never loses a blob or manifest that a live tag references', async () => {
    const base = server.url;
    const shared = Array.from({ length: 6 }, (_, i) => randomBlob(16_384 + i * 4096));
    const live = new Map<string, Pushed>();
    let attemptsTotal = 0;
    let deletedTags = 0;
    let done = false;
    let completed = 0;

    const gcReports: GcReport[] = [];
    const collector = (async () => {
      while (!done) {
        const res = await fetch(`${base}/api/v1/gc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"dryRun":false}' });
        assert.equal(res.status, 200, await res.clone().text());
        gcReports.push((await res.json()) as GcReport);
        // With grace 0 a collection between a push's blobs and its manifest sweeps the blobs (the
        // push then retries); back-to-back runs would starve the pushes on a slow machine. So the
        // next run waits until two more pushes got through, plus a random pause.
        const target = completed + 2;
        while (!done && completed < target) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, randomInt(0, 100)));
      }
    })();

    const modes: UploadMode[][] = [['monolithic'], ['post-put'], ['chunked'], ['mount', 'post-put'], ['mount', 'chunked', 'monolithic']];
    const workers = Array.from({ length: WORKERS }, async (_, w) => {
      for (let i = 0; i < PUSHES_PER_WORKER; i++) {
        const repo = `conc/r${(w + i) % 4}`;
        const mountFrom = `conc/r${(w + i + 1) % 4}`;
        const tag = `w${w}-p${i}`;
        const layers = [shared[randomInt(shared.length)]!, shared[randomInt(shared.length)]!, randomBlob(randomInt(100, 5000))];
        const uniqueLayers = [...new Map(layers.map((l) => [l.digest, l])).values()];
        const config = blob(JSON.stringify({ w, i, r: randomBytes(4).toString('hex') }));
        const doc = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config, TEST_CONFIG), layers: uniqueLayers.map((l) => descriptor(l, OCI_LAYER_GZIP)) };
        const manifest = manifestBlob(doc);
        const blobs = [config, ...uniqueLayers];
        const attempts = await pushWithRetry(base, repo, tag, blobs, manifest, modes[(w + i) % modes.length]!, mountFrom);
        attemptsTotal += attempts;
        completed++;
        const pushed = { repo, tag, manifest, blobs };
        // A third of the pushes are untagged again right away: real garbage for the collector.
        if (randomInt(3) === 0) {
          const del = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'DELETE' });
          assert.equal(del.status, 202);
          deletedTags++;
        } else {
          live.set(`${repo}:${tag}`, pushed);
          // Check a random earlier push while the collector runs.
          const earlier = [...live.values()][randomInt(live.size)]!;
          await verifyPulls(base, [earlier]);
        }
      }
    });
    await Promise.all(workers);
    done = true;
    await collector;

    await verifyPulls(base, live.values());
    const final = await fetch(`${base}/api/v1/gc`, { method: 'POST' }).then((r) => r.json() as Promise<GcReport>);
    await verifyPulls(base, live.values());
    const sweptManifests = gcReports.reduce((n, r) => n + r.deleted.manifests, 0) + final.deleted.manifests;
    const sweptBlobs = gcReports.reduce((n, r) => n + r.deleted.blobs, 0) + final.deleted.blobs;
    const pushes = WORKERS * PUSHES_PER_WORKER;
    process.stdout.write(
      `# ${pushes} pushes (${attemptsTotal - pushes} retried after MANIFEST_BLOB_UNKNOWN), ${deletedTags} untagged, ` +
        `${gcReports.length + 1} collections swept ${sweptManifests} manifests and ${sweptBlobs} blobs\n`,
    );
    assert.ok(gcReports.length >= 3, `only ${gcReports.length} collections ran during the pushes`);
    assert.ok(sweptManifests >= deletedTags, `${sweptManifests} manifests swept, ${deletedTags} untagged`);

    const metrics = await fetch(`${base}/metrics`).then((r) => r.text());
    assert.match(metrics, /kiln_gc_runs_total\{mode="sweep",trigger="api",result="ok"\} \d+/);
    assert.match(metrics, /kiln_gc_items_deleted_total\{kind="manifest",mode="sweep"\} \d+/);

    await server.close();
    const offline = await openOffline(dataDir, 'test fsck');
    try {
      const report = await fsck({ dirs: offline.stores.dirs, store: offline.stores.gc });
      assert.deepEqual(report.problems, []);
    } finally {
      await offline.close();
    }
  });
});
