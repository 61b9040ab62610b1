// The GcStore contract as a test suite, run against every backend. The
// harness gives the metadata store and pins of the same database, since the
// collector's store reads what they write.
import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import type { GcDeletion, GcStore } from '../gc-store.js';
import type { PinStore } from '../pins.js';
import type { MetadataStore, PutManifestInput } from '../types.js';

export interface GcStoreHarness {
  gc: GcStore;
  meta: MetadataStore;
  pins: PinStore;
  close(): Promise<void>;
}

const d = (n: number) => `sha256:${String(n).padStart(64, '0')}`;
const NONE: GcDeletion = { tags: [], manifests: [], links: [], blobs: [], repos: [], images: [] };
const manifest = (repo: string, digest: string, extra: Partial<PutManifestInput> = {}): PutManifestInput => ({
  repo,
  digest,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  size: 10,
  artifactType: null,
  configMediaType: null,
  subject: null,
  annotations: null,
  references: [],
  ...extra,
});

export function gcStoreContract(backend: string, factory: () => Promise<GcStoreHarness>): void {
  describe(`GcStore contract: ${backend}`, () => {
    let h: GcStoreHarness;
    beforeEach(async () => {
      await h?.close();
      h = await factory();
    });
    after(async () => h?.close());

    async function fill(): Promise<void> {
      await h.meta.linkBlob('app', d(1), 100);
      await h.meta.linkBlob('app', d(2), 200);
      await h.meta.putManifest(manifest('app', d(10), { tag: 'v1', references: [{ digest: d(1), kind: 'layer' }] }));
      await h.meta.putManifest(manifest('app', d(11), { subject: d(10), references: [{ digest: d(2), kind: 'config' }] }));
      await h.meta.linkBlob('cache/x', d(1), 100);
      await h.meta.createUpload('up-1', 'app');
    }

    it('reads one snapshot of every table', async () => {
      await fill();
      const s = await h.gc.read();
      const repo = new Map(s.repos.map((r) => [r.id, r.name]));
      assert.deepEqual(s.repos.map((r) => r.name).sort(), ['app', 'cache/x']);
      assert.deepEqual(s.manifests.map((m) => `${repo.get(m.repoId)}@${m.digest}`).sort(), [`app@${d(10)}`, `app@${d(11)}`]);
      assert.equal(s.manifests.find((m) => m.digest === d(11))?.subject, d(10));
      assert.deepEqual(s.refs.map((r) => `${r.manifestDigest}>${r.childDigest}:${r.kind}`).sort(), [`${d(10)}>${d(1)}:layer`, `${d(11)}>${d(2)}:config`]);
      assert.deepEqual(s.tags.map((t) => [repo.get(t.repoId), t.name, t.digest, t.pulledAt]), [['app', 'v1', d(10), null]]);
      assert.deepEqual(s.links.map((l) => `${repo.get(l.repoId)}@${l.digest}`).sort(), [`app@${d(1)}`, `app@${d(2)}`, `cache/x@${d(1)}`]);
      assert.deepEqual(s.blobs.map((b) => [b.digest, b.size]).sort(), [[d(1), 100], [d(10), 10], [d(11), 10], [d(2), 200]].sort());
      assert.deepEqual(s.pinned, []);
      assert.deepEqual((await h.gc.uploads()).map((u) => [u.id, u.repo]), [['up-1', 'app']]);
    });

    it('deletes what the decision names, in one step with the snapshot', async () => {
      await fill();
      const result = await h.gc.collect((s) => {
        const app = s.repos.find((r) => r.name === 'app')!.id;
        const cache = s.repos.find((r) => r.name === 'cache/x')!.id;
        return {
          result: s.manifests.length,
          deletion: {
            ...NONE,
            tags: [{ repoId: app, name: 'v1', digest: d(10) }],
            manifests: [{ repoId: app, digest: d(11) }],
            links: [{ repoId: cache, digest: d(1) }],
            blobs: [d(11)],
            repos: [cache, app],
          },
        };
      });
      assert.equal(result, 2);
      const s = await h.gc.read();
      assert.deepEqual(s.repos.map((r) => r.name), ['app'], 'only the emptied repository goes');
      assert.deepEqual(s.manifests.map((m) => m.digest), [d(10)]);
      assert.deepEqual(s.refs.map((r) => r.manifestDigest), [d(10)], "a deleted manifest's references go with it");
      assert.deepEqual(s.tags, []);
      assert.equal(s.blobs.some((b) => b.digest === d(11)), false);
      assert.equal(await h.meta.repoBlobSize('cache/x', d(1)), null);
      assert.equal(await h.meta.repoBlobSize('app', d(1)), 100);
    });

    it('deletes nothing for a dry run', async () => {
      await fill();
      const before = await h.gc.read();
      assert.equal(await h.gc.collect(() => ({ result: 'dry', deletion: null })), 'dry');
      assert.deepEqual(await h.gc.read(), before);
    });

    it('answers point checks inside a guarded step', async () => {
      await fill();
      const release = await h.pins.pin(d(99));
      const seen = await h.gc.guard({ blobs: [d(1), d(3), d(99)], uploads: ['up-1', 'up-2'], images: [d(10)] }, (v) => ({
        blob1: v.blobRowExists(d(1)),
        blob3: v.blobRowExists(d(3)),
        upload1: v.uploadSessionExists('up-1'),
        upload2: v.uploadSessionExists('up-2'),
        image: v.imageWanted(d(10)),
        bake: v.bakeActive(d(10)),
        pinnedHere: h.pins.has(d(99)) || v.pinned(d(99)),
      }));
      release();
      assert.deepEqual(seen, { blob1: true, blob3: false, upload1: true, upload2: false, image: false, bake: false, pinnedHere: true });
    });

    it('records the latest pull of a tag; forgets pulls of deleted tags', async () => {
      await fill();
      await h.gc.recordPulls([['app', 'v1', 5000]]);
      await h.gc.recordPulls([
        ['app', 'v1', 4000],
        ['app', 'gone', 1],
      ]);
      const s = await h.gc.read();
      assert.equal(s.tags[0]?.pulledAt, 5000, 'an older pull never moves the time back');
      await h.gc.collect((snap) => ({ result: null, deletion: { ...NONE, tags: snap.tags.map((t) => ({ repoId: t.repoId, name: t.name, digest: t.digest })) } }));
      await h.meta.putManifest(manifest('app', d(10), { tag: 'v1' }));
      assert.equal((await h.gc.read()).tags[0]?.pulledAt, null, 'a tag pushed again starts without pulls');
    });

    it('finds idle uploads, deletes sessions and blob rows', async () => {
      await fill();
      assert.deepEqual(await h.gc.uploadsIdleSince(0), []);
      assert.deepEqual((await h.gc.uploadsIdleSince(Date.now() + 1)).map((u) => u.id), ['up-1']);
      await h.gc.deleteUpload('up-1');
      assert.deepEqual(await h.gc.uploads(), []);
      await h.gc.deleteBlobRows([d(1), d(2)]);
      assert.equal(await h.meta.blobSize(d(1)), null);
      assert.equal(await h.meta.blobSize(d(10)), 10);
    });

    it('reports a sound database as sound, and unknown bakes as absent', async () => {
      await fill();
      assert.deepEqual(await h.gc.integrityCheck(), []);
      assert.equal(await h.gc.bakeStatus(d(10)), null);
      assert.equal(await h.gc.imageDiskSize(d(10)), null);
    });

    it('runs an exclusive section and returns its result', async () => {
      assert.equal(await h.gc.runExclusive(async () => 42), 42);
      await assert.rejects(h.gc.runExclusive(async () => Promise.reject(new Error('boom'))), /boom/);
      assert.equal(await h.gc.runExclusive(async () => 'again'), 'again', 'a failed section releases the lock');
    });
  });
}
