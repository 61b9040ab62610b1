// Mark and sweep on a real store (SQLite + filesystem CAS), no HTTP: which
// roots keep what, the grace period, dry runs, cache retention, uploads,
// disks, pins, and the manifest insert's re-check.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, beforeEach, describe, it } from 'node:test';
import { GarbageCollector, type GcReport } from '../src/gc/collector.js';
import type { GcConfig } from '../src/gc/config.js';
import { PullTracker } from '../src/gc/pull-tracker.js';
import { parseDigest } from '../src/oci/digest.js';
import { RegistryError } from '../src/registry/errors.js';
import { RegistryService } from '../src/registry/service.js';
import type { DataDir } from '../src/store/data-dir.js';
import { ReferencesMissingError } from '../src/store/errors.js';
import type { GcStore } from '../src/store/gc-store.js';
import type { ImageStore } from '../src/store/image-store.js';
import type { JobStore } from '../src/store/job-store.js';
import { openStores, type Stores } from '../src/store/open.js';
import { tempDir } from './helpers/kiln.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const TEST_CONFIG = 'application/vnd.kiln.test.config.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const CACHE_CONFIG = 'application/vnd.buildkit.cacheconfig.v0';
const HOUR = 3_600_000;

interface Blob {
  bytes: Buffer;
  digest: string;
  size: number;
}
const blob = (bytes: Buffer | string): Blob => {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  return { bytes: b, digest: `sha256:${createHash('sha256').update(b).digest('hex')}`, size: b.length };
};
const desc = (b: Blob, mediaType: string, extra: object = {}) => ({ mediaType, digest: b.digest, size: b.size, ...extra });

class Harness {
  dirs!: DataDir;
  stores!: Stores;
  registry!: RegistryService;
  jobs!: JobStore;
  images!: ImageStore;
  store!: GcStore;
  /** Added to the real clock when the collector asks the time. */
  offset = 0;
  config: GcConfig = { graceMs: HOUR, intervalMs: 0, cacheMaxAgeMs: null, keepGlobalCache: true, uploadTtlMs: 24 * HOUR };

  async open(root: string): Promise<void> {
    this.stores = await openStores({ dataDir: root, durable: false, owner: 'gc-collector.test' });
    ({ dirs: this.dirs, jobs: this.jobs, images: this.images, gc: this.store } = this.stores);
    this.registry = new RegistryService(this.stores.blobs, this.stores.meta);
  }

  collector(): GarbageCollector {
    return new GarbageCollector({
      dirs: this.dirs,
      store: this.store,
      blobs: this.registry.blobs,
      pins: this.registry.pins,
      config: this.config,
      online: true,
      clock: () => Date.now() + this.offset,
    });
  }

  gc(dryRun = false): Promise<GcReport> {
    return this.collector().run({ dryRun, trigger: 'test' });
  }

  async pushBlob(repo: string, b: Blob): Promise<void> {
    const id = await this.registry.startUpload(repo, 'test');
    await this.registry.finishUpload(repo, id, parseDigest(b.digest), Readable.from([b.bytes]), b.size);
  }

  /** Pushes a manifest under a tag, or by digest when `tag` is null. */
  async putManifest(repo: string, tag: string | null, doc: object, mediaType = OCI_MANIFEST): Promise<Blob> {
    const m = blob(JSON.stringify(doc));
    await this.registry.putManifest(repo, tag ?? m.digest, m.bytes, mediaType);
    return m;
  }

  /** An image: config + layers (shared ones may be passed) + manifest under `ref`. */
  async pushImage(repo: string, ref: string | null, opts: { layers?: Blob[]; subject?: Blob; configType?: string } = {}) {
    const config = blob(JSON.stringify({ repo, ref, r: randomBytes(8).toString('hex') }));
    const layers = opts.layers ?? [blob(randomBytes(300))];
    for (const b of [config, ...layers]) await this.pushBlob(repo, b);
    const doc: Record<string, unknown> = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(config, opts.configType ?? TEST_CONFIG), layers: layers.map((l) => desc(l, LAYER)) };
    if (opts.subject) doc.subject = desc(opts.subject, OCI_MANIFEST);
    const manifest = await this.putManifest(repo, ref, doc);
    return { config, layers, manifest };
  }

  hasFile(digest: string): boolean {
    return existsSync(this.dirs.blobPath(digest));
  }

  async tags(repo: string): Promise<string[]> {
    return this.registry.meta.listTags(repo, {});
  }

  async hasManifest(repo: string, digest: string): Promise<boolean> {
    return (await this.registry.meta.getManifest(repo, digest)) !== null;
  }

  close(): Promise<void> {
    return this.stores.close();
  }
}

describe('garbage collection on a store', () => {
  let root: string;
  let h: Harness;

  before(async () => {
    root = await tempDir('kiln-gc-unit-');
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await h?.close();
    await rm(root, { recursive: true, force: true });
    h = new Harness();
    await h.open(root);
  });

  it('keeps tagged images and their blobs; deletes untagged ones after the grace period, sharing layers safely', async () => {
    const shared = blob(randomBytes(1000));
    const kept = await h.pushImage('app/a', 'v1', { layers: [shared] });
    const gone = await h.pushImage('app/a', null, { layers: [shared, blob(randomBytes(500))] });

    // Within the grace period nothing is garbage.
    let report = await h.gc();
    assert.equal(report.deleted.manifests, 0);
    assert.equal(report.deleted.blobs, 0);

    h.offset = 2 * HOUR;
    report = await h.gc();
    assert.equal(report.deleted.manifests, 1);
    assert.deepEqual(report.items.manifests, [`app/a@${gone.manifest.digest}`]);
    assert.ok(await h.hasManifest('app/a', kept.manifest.digest));
    assert.ok(!(await h.hasManifest('app/a', gone.manifest.digest)));
    for (const b of [kept.config, shared, kept.manifest]) assert.ok(h.hasFile(b.digest), `kept ${b.digest}`);
    for (const b of [gone.config, gone.layers[1]!, gone.manifest]) assert.ok(!h.hasFile(b.digest), `deleted ${b.digest}`);
    // config + unique layer + manifest bytes
    assert.equal(report.deleted.blobs, 3);
    assert.equal(report.bytesFreed.blobs, gone.config.size + 500 + gone.manifest.size);
    assert.equal(await h.registry.meta.repoBlobSize('app/a', gone.layers[1]!.digest), null);
    assert.equal(await h.registry.meta.repoBlobSize('app/a', shared.digest), 1000);

    // Untagging the last image frees everything, and the empty repo goes.
    await h.registry.deleteManifest('app/a', 'v1');
    report = await h.gc();
    assert.equal(report.deleted.manifests, 1);
    assert.equal(report.deleted.repos, 1);
    assert.deepEqual(await h.registry.meta.listRepos({}), []);
    assert.deepEqual(await listBlobFiles(h.dirs), []);
  });

  it('keeps children of a tagged index (recursively), and BuildKit cache indexes with blob children', async () => {
    const a = await h.pushImage('multi/app', null);
    const b = await h.pushImage('multi/app', null);
    const stray = await h.pushImage('multi/app', null);
    const inner = await h.putManifest('multi/app', null, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [desc(b.manifest, OCI_MANIFEST)] }, OCI_INDEX);
    const outer = await h.putManifest(
      'multi/app',
      'latest',
      { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [desc(a.manifest, OCI_MANIFEST), desc(inner, OCI_INDEX)] },
      OCI_INDEX,
    );
    // BuildKit's legacy cache export: an index whose entries are layer blobs plus a cacheconfig blob.
    const cacheLayer = blob(randomBytes(700));
    const cacheConfig = blob(JSON.stringify({ layers: [], records: [] }));
    await h.pushBlob('cache/t1', cacheLayer);
    await h.pushBlob('cache/t1', cacheConfig);
    await h.putManifest('cache/t1', 'main', { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [desc(cacheLayer, LAYER), desc(cacheConfig, CACHE_CONFIG)] }, OCI_INDEX);

    h.offset = 2 * HOUR;
    const report = await h.gc();
    assert.deepEqual(report.items.manifests, [`multi/app@${stray.manifest.digest}`]);
    for (const d of [outer, inner, a.manifest, b.manifest]) assert.ok(await h.hasManifest('multi/app', d.digest));
    for (const d of [a.config, a.layers[0]!, b.config, b.layers[0]!, cacheLayer, cacheConfig]) assert.ok(h.hasFile(d.digest));
    assert.ok(!h.hasFile(stray.layers[0]!.digest));
  });

  it('keeps referrers of live manifests and drops them with their subject', async () => {
    const subject = await h.pushImage('sig/app', 'v1');
    const sig = await h.pushImage('sig/app', null, { subject: subject.manifest, configType: 'application/vnd.dev.cosign.artifact.sig.v1+json' });
    const sigOfSig = await h.pushImage('sig/app', null, { subject: sig.manifest, configType: 'application/vnd.example.sbom' });
    h.offset = 2 * HOUR;
    let report = await h.gc();
    assert.equal(report.deleted.manifests, 0);
    assert.ok(await h.hasManifest('sig/app', sigOfSig.manifest.digest));
    assert.ok(h.hasFile(sig.layers[0]!.digest));

    await h.registry.deleteManifest('sig/app', 'v1');
    report = await h.gc();
    assert.equal(report.deleted.manifests, 3);
    assert.deepEqual(await listBlobFiles(h.dirs), []);
  });

  it('honours the grace period for unreferenced blobs, orphan files and upload files', async () => {
    const loose = blob(randomBytes(100));
    await h.pushBlob('loose/x', loose);
    // A blob file without a row (a crash between rename and insert), and an upload file without a session.
    const orphan = blob(randomBytes(64));
    await mkdir(path.dirname(h.dirs.blobPath(orphan.digest)), { recursive: true });
    await writeFile(h.dirs.blobPath(orphan.digest), orphan.bytes);
    await writeFile(h.dirs.uploadPath('put-orphan'), 'partial');
    // An upload in progress (session row + file) is never an orphan.
    const live = await h.registry.startUpload('loose/x', 'loose');
    await h.registry.appendUpload('loose/x', live, Readable.from([Buffer.from('half')]));

    let report = await h.gc();
    assert.equal(report.deleted.blobs + report.deleted.uploads + report.deleted.repoLinks, 0);

    // An hour later (mtimes too): everything but the live session goes.
    h.offset = 2 * HOUR;
    const old = new Date(Date.now() - 2 * HOUR);
    for (const f of [h.dirs.blobPath(orphan.digest), h.dirs.uploadPath('put-orphan'), h.dirs.uploadPath(live)]) await utimes(f, old, old);
    report = await h.gc();
    assert.equal(report.deleted.repoLinks, 1);
    assert.deepEqual(report.items.blobs.sort(), [loose.digest, orphan.digest].sort());
    assert.deepEqual(report.items.uploads, ['put-orphan (no session)']);
    assert.deepEqual(await readdir(h.dirs.uploadsRoot), [live]);
    assert.equal(await h.registry.uploadSize('loose/x', live), 4);

    // Idle past the upload TTL: the session goes as well.
    h.config.uploadTtlMs = HOUR;
    report = await h.gc();
    assert.equal(report.deleted.uploads, 1);
    assert.deepEqual(await readdir(h.dirs.uploadsRoot), []);
  });

  it('dry run reports exactly what a sweep then deletes, and deletes nothing', async () => {
    await h.pushImage('dry/a', 'keep');
    await h.pushImage('dry/a', null);
    await h.pushImage('dry/b', null);
    h.offset = 2 * HOUR;
    const before = await listBlobFiles(h.dirs);
    const dry = await h.gc(true);
    assert.equal(dry.dryRun, true);
    assert.deepEqual(await listBlobFiles(h.dirs), before);
    assert.equal(dry.deleted.manifests, 2);
    assert.equal((await h.registry.meta.listRepos({})).length, 2);
    const real = await h.gc();
    assert.deepEqual(real.deleted, dry.deleted);
    assert.deepEqual(real.bytesFreed, dry.bytesFreed);
    assert.deepEqual([...real.items.blobs].sort(), [...dry.items.blobs].sort());
    const again = await h.gc(true);
    assert.equal(again.bytesFreed.total, 0);
  });

  it('cache retention untags stale cache tags, keeps recently pulled ones and the global cache', async () => {
    h.config.cacheMaxAgeMs = 24 * HOUR;
    const stale = await h.pushImage('cache/tenant-a', 'main');
    const pulled = await h.pushImage('cache/tenant-b', 'main');
    const global = await h.pushImage('cache/global/node', 'k1');
    const hosted = await h.pushImage('10.0.0.1:8083/cache/tenant-c', 'main');
    const notCache = await h.pushImage('acme/cache/app', 'v1');

    // Two days later; tenant-b was pulled (by tag) an hour ago.
    h.offset = 48 * HOUR;
    const tracker = new PullTracker(h.store, undefined, () => Date.now() + h.offset - HOUR);
    h.registry.onManifestPulled((repo, tag) => tracker.record(repo, tag));
    await h.registry.readManifest('cache/tenant-b', 'main');
    await h.registry.findManifest('acme/cache/app', 'v1');
    await tracker.flush();

    const dry = await h.gc(true);
    assert.deepEqual(dry.items.tags.sort(), ['10.0.0.1:8083/cache/tenant-c:main', 'cache/tenant-a:main']);
    assert.deepEqual(await h.tags('cache/tenant-a'), ['main']);

    const report = await h.gc();
    assert.equal(report.deleted.tags, 2);
    assert.deepEqual(await h.tags('cache/tenant-a'), []);
    assert.ok(!h.hasFile(stale.layers[0]!.digest));
    assert.ok(!h.hasFile(hosted.layers[0]!.digest));
    for (const kept of [pulled, global, notCache]) assert.ok(h.hasFile(kept.layers[0]!.digest));

    h.config.keepGlobalCache = false;
    const report2 = await h.gc();
    assert.deepEqual(report2.items.tags, ['cache/global/node:k1']);
    assert.ok(!h.hasFile(global.layers[0]!.digest));
  });

  it('keeps manifests of pending bakes and disks of live images; removes disks of deleted images', async () => {
    const img = await h.pushImage('bake/app', 'v1');
    const pending = await h.pushImage('bake/app', null);
    // A finished bake of the tagged image, a queued one of the untagged image, and a disk whose image is gone.
    await h.images.upsert({ digest: img.manifest.digest, repo: 'bake/app', tag: 'v1', indexDigest: null, platform: null });
    await h.jobs.enqueue('bake', `bake:${img.manifest.digest}`, { digest: img.manifest.digest, repo: 'bake/app' });
    const job = (await h.jobs.claim('bake', 'test-worker', 60_000))!;
    assert.ok(await h.jobs.finish(job.id, 'test-worker', 'done'));
    await h.jobs.enqueue('bake', `bake:${pending.manifest.digest}`, { digest: pending.manifest.digest, repo: 'bake/app' });
    await writeDisk(h.dirs, img.manifest.digest);
    const ghost = blob('ghost image');
    await writeDisk(h.dirs, ghost.digest);
    // A file store write the process died in (hidden, never listed) goes with its image's directory.
    const crashedTemp = path.join(h.dirs.imageDir(ghost.digest), `.rootfs.ext4.tmp-abc123`);
    await writeFile(crashedTemp, 'partial');
    h.offset = 2 * HOUR;
    const old = new Date(Date.now() - 2 * HOUR);
    for (const f of ['rootfs.ext4', 'config.json']) await utimes(path.join(h.dirs.imageDir(ghost.digest), f), old, old);

    let report = await h.gc();
    assert.ok(await h.hasManifest('bake/app', pending.manifest.digest));
    assert.ok(existsSync(h.dirs.imageDir(img.manifest.digest)));
    assert.ok(!existsSync(h.dirs.imageDir(ghost.digest)));
    assert.ok(!existsSync(crashedTemp));
    assert.deepEqual(report.items.disks, [ghost.digest]);
    assert.ok(report.bytesFreed.disks >= 8192);

    // The same image in a second repo (another tenant): untagging it in one repo keeps the
    // image and its disk, and drops only that repo's name.
    for (const b of [img.config, img.layers[0]!]) assert.notEqual(await h.registry.mountBlob('other/app', 'bake/app', b.digest), null);
    await h.registry.putManifest('other/app', 'v1', img.manifest.bytes, OCI_MANIFEST);
    await h.images.upsert({ digest: img.manifest.digest, repo: 'other/app', tag: 'v1', indexDigest: null, platform: null });
    await h.registry.deleteManifest('bake/app', 'v1');
    report = await h.gc();
    assert.deepEqual(report.items.disks, []);
    assert.deepEqual((await h.images.get(img.manifest.digest))?.names.map((n) => n.repo), ['other/app']);
    assert.ok(existsSync(h.dirs.imageDir(img.manifest.digest)));

    // Untagged everywhere: its record, finished job and disk go.
    await h.registry.deleteManifest('other/app', 'v1');
    report = await h.gc();
    assert.deepEqual(report.items.disks, [img.manifest.digest]);
    assert.equal((await h.images.get(img.manifest.digest)), null);
    assert.equal(await h.jobs.get(`bake:${img.manifest.digest}`), null);
    assert.ok(!existsSync(h.dirs.imageDir(img.manifest.digest)));
    // The queued bake is still a root.
    assert.ok(await h.hasManifest('bake/app', pending.manifest.digest));
  });

  it('extra root sources keep manifests (running builds)', async () => {
    const built = await h.pushImage('builds/b1', null);
    h.offset = 2 * HOUR;
    const c = h.collector();
    c.addRootSource('builds', () => [{ repo: 'builds/b1', digest: built.manifest.digest }]);
    assert.equal((await c.run({ trigger: 'test' })).deleted.manifests, 0);
    c.addRootSource('builds', () => []);
    assert.equal((await c.run({ trigger: 'test' })).deleted.manifests, 1);
    c.addRootSource('broken', () => {
      throw new Error('builds db unavailable');
    });
    await assert.rejects(c.run({ trigger: 'test' }), /root source broken failed/);
  });

  it('never deletes a pinned digest (a request is making it visible)', async () => {
    const b = blob(randomBytes(80));
    await mkdir(path.dirname(h.dirs.blobPath(b.digest)), { recursive: true });
    await writeFile(h.dirs.blobPath(b.digest), b.bytes);
    const release = await h.registry.pins.pin(b.digest);
    h.config.graceMs = 0;
    assert.equal((await h.gc()).deleted.blobs, 0);
    assert.ok(h.hasFile(b.digest));
    release();
    assert.equal((await h.gc()).deleted.blobs, 1);
  });

  it('a collection inside each window of a request (commit→row, bytes→manifest row, mount check→link) deletes nothing it needs', async () => {
    h.config.graceMs = 0;
    const blobs = h.registry.blobs;
    const runs: GcReport[] = [];
    const inWindow = async () => {
      runs.push(await h.gc());
    };
    // (1) upload: the file is in blobs/, its row not yet written.
    const commit = blobs.commitUpload.bind(blobs);
    blobs.commitUpload = async (id, d) => {
      const r = await commit(id, d);
      await inWindow();
      return r;
    };
    // (2) manifest: bytes stored, row not yet written.
    const putBytes = blobs.putBytes.bind(blobs);
    blobs.putBytes = async (data, d) => {
      const r = await putBytes(data, d);
      await inWindow();
      return r;
    };
    // One object at a time: with grace 0 any other unreferenced blob would (rightly) be swept.
    const up = blob(randomBytes(123));
    await h.pushBlob('win/a', up);
    assert.equal(runs.length, 1);
    assert.ok(h.hasFile(up.digest), 'uploaded blob file survived');
    assert.equal(await h.registry.blobSize('win/a', up.digest), 123);
    const emptyIndex = await h.putManifest('win/a', 'v1', { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }, OCI_INDEX);
    assert.equal(runs.length, 2);
    assert.ok(h.hasFile(emptyIndex.digest), 'manifest bytes survived');
    assert.ok((await h.registry.readManifest('win/a', 'v1')).bytes.equals(emptyIndex.bytes));

    // (3) mount: source checked, then a collection sweeps the (unreferenced) source link before the new link.
    const loose = blob(randomBytes(99));
    blobs.commitUpload = commit;
    await h.pushBlob('win/src', loose);
    const stat = blobs.stat.bind(blobs);
    blobs.stat = async (d) => {
      const r = await stat(d);
      await inWindow();
      return r;
    };
    assert.equal(await h.registry.mountBlob('win/dst', 'win/src', loose.digest), 99);
    blobs.stat = stat;
    assert.ok(h.hasFile(loose.digest), 'mounted blob file survived');
    assert.equal(await h.registry.blobSize('win/dst', loose.digest), 99);
    const source = await h.registry.openBlob('win/dst', loose.digest, { start: 0, end: 98 });
    const sink = new PassThrough();
    const received = buffer(sink);
    await source.copyTo(sink);
    assert.ok((await received).equals(loose.bytes));
  });

  it('a manifest insert re-checks its references inside the transaction', async () => {
    const layer = blob(randomBytes(50));
    await h.pushBlob('race/x', layer);
    const input = {
      repo: 'race/x',
      digest: blob('m').digest,
      mediaType: OCI_MANIFEST,
      size: 1,
      artifactType: null,
      configMediaType: TEST_CONFIG,
      subject: null,
      annotations: null,
      references: [{ digest: layer.digest, kind: 'layer' as const }],
      tag: 'v1',
    };
    // The collector sweeps between the reference check and the insert.
    h.config.graceMs = 0;
    await h.gc();
    await assert.rejects(h.registry.meta.putManifest(input), (err: unknown) => {
      assert.ok(err instanceof ReferencesMissingError);
      assert.deepEqual(err.digests, [layer.digest]);
      return true;
    });
    assert.equal(await h.registry.meta.resolveTag('race/x', 'v1'), null);
    // And through the service, with the registry's error code.
    const cfg = blob('{}');
    await h.pushBlob('race/x', cfg);
    await assert.rejects(
      h.putManifest('race/x', 'v2', { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(cfg, TEST_CONFIG), layers: [desc(layer, LAYER)] }),
      (err: unknown) => err instanceof RegistryError && err.code === 'MANIFEST_BLOB_UNKNOWN',
    );
  });
});

async function listBlobFiles(dirs: DataDir): Promise<string[]> {
  const out: string[] = [];
  for (const alg of await readdir(dirs.blobsRoot).catch(() => [] as string[])) {
    for (const fan of await readdir(path.join(dirs.blobsRoot, alg))) {
      for (const hex of await readdir(path.join(dirs.blobsRoot, alg, fan))) out.push(`${alg}:${hex}`);
    }
  }
  return out.sort();
}

async function writeDisk(dirs: DataDir, digest: string): Promise<void> {
  const dir = dirs.imageDir(digest);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'rootfs.ext4'), randomBytes(8192));
  await writeFile(path.join(dir, 'config.json'), JSON.stringify({ schemaVersion: 1, disk: { file: 'rootfs.ext4', format: 'ext4', sizeBytes: 8192 } }));
}
