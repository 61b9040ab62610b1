// The ImageStore contract as a test suite, run against every backend.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ImageStore } from '../image-store.js';

export interface ImageStoreHarness {
  store: ImageStore;
  close(): Promise<void>;
}

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

export function imageStoreContract(backend: string, factory: () => Promise<ImageStoreHarness>): void {
  describe(`ImageStore contract: ${backend}`, () => {
    let h: ImageStoreHarness;
    let store: ImageStore;
    before(async () => {
      h = await factory();
      store = h.store;
    });
    after(async () => h?.close());

    it('records an image once per digest with a name per repo:tag', async () => {
      await store.upsert({ digest: d(1), repo: 'acme/app', tag: 'v1', indexDigest: null, platform: null });
      const record = await store.upsert({ digest: d(1), repo: 'other/app', tag: 'v2', indexDigest: d(9), platform: 'linux/arm64' });
      assert.equal(record.digest, d(1));
      assert.deepEqual(record.names.map((n) => `${n.repo}:${n.tag}`).sort(), ['acme/app:v1', 'other/app:v2']);
      const other = record.names.find((n) => n.repo === 'other/app')!;
      assert.equal(other.indexDigest, d(9));
      assert.equal(other.platform, 'linux/arm64');
      assert.equal(record.names.find((n) => n.repo === 'acme/app')!.indexDigest, null, "another tenant's index is not this name's");
      assert.equal(await store.get(d(404)), null);
    });

    it('keeps a tag name instead of a digest name of the same image in the same repo', async () => {
      await store.upsert({ digest: d(2), repo: 'acme/two', tag: null, indexDigest: null, platform: null });
      await store.upsert({ digest: d(2), repo: 'acme/two', tag: 'v1', indexDigest: null, platform: null });
      await store.upsert({ digest: d(2), repo: 'acme/two', tag: null, indexDigest: null, platform: null });
      assert.deepEqual((await store.get(d(2)))!.names.map((n) => n.tag), ['v1']);
    });

    it('finds names by tag, by digest in a repo (image or index) and anywhere', async () => {
      assert.deepEqual((await store.namesOfTag('other/app', 'v2')).map((n) => n.digest), [d(1)]);
      assert.deepEqual((await store.namesOfDigest('other/app', d(9))).map((n) => n.tag), ['v2'], 'by its index digest');
      assert.deepEqual((await store.namesAnywhere(d(1))).map((n) => n.repo).sort(), ['acme/app', 'other/app']);
    });

    it('lists names in key order, paged, within a scope', async () => {
      const all = await store.listNames({ limit: 10 }, { all: true });
      assert.deepEqual(all.map((n) => `${n.repo}:${n.tag}`), ['acme/app:v1', 'acme/two:v1', 'other/app:v2']);
      const first = await store.listNames({ limit: 1 }, { all: true });
      const last = first.at(-1)!;
      const next = await store.listNames({ limit: 10, after: { repo: last.repo, tag: last.tag, digest: last.digest, indexDigest: last.indexDigest } }, { all: true });
      assert.deepEqual(next.map((n) => n.repo), ['acme/two', 'other/app']);
      const scoped = await store.listNames({ limit: 10 }, { all: false, prefixes: ['other/'], names: ['acme/two'] });
      assert.deepEqual(scoped.map((n) => n.repo), ['acme/two', 'other/app']);
    });

    it('records disk sizes and shows them in listings', async () => {
      await store.setDiskSize(d(1), 4096);
      assert.equal((await store.get(d(1)))!.diskSize, 4096);
      assert.equal((await store.listNames({ limit: 1 }, { all: true }))[0]!.diskSize, 4096);
    });

    it('drops the names of a deleted or moved tag and of a deleted manifest', async () => {
      await store.upsert({ digest: d(3), repo: 'acme/move', tag: 'latest', indexDigest: null, platform: null });
      assert.deepEqual(await store.dropTag('acme/move', 'latest', d(3)), [], 'the tag still names this image');
      assert.deepEqual(await store.dropTag('acme/move', 'latest', d(4)), [d(3)], 'moved to another manifest');
      await store.upsert({ digest: d(5), repo: 'acme/idx', tag: 'v1', indexDigest: d(6), platform: 'linux/amd64' });
      assert.deepEqual(await store.dropTag('acme/idx', 'v1', d(6)), [], 'the tag names the index this name came from');
      assert.deepEqual(await store.dropManifest('acme/idx', d(6)), [d(5)]);
      assert.deepEqual((await store.get(d(5)))!.names, []);
    });

    it('forgets one name, and deletes an image with its names', async () => {
      assert.equal(await store.deleteName(d(1), 'acme/app', 'v1'), true);
      assert.equal(await store.deleteName(d(1), 'acme/app', 'v1'), false);
      assert.deepEqual((await store.get(d(1)))!.names.map((n) => n.repo), ['other/app']);
      assert.equal(await store.delete(d(1)), true);
      assert.equal(await store.get(d(1)), null);
      assert.deepEqual(await store.namesAnywhere(d(1)), []);
      assert.equal(await store.delete(d(1)), false);
    });
  });
}
