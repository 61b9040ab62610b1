// The MetadataStore contract as a test suite, run against every backend: a
// backend's test file calls `metadataStoreContract` with a factory that opens
// a store on a fresh, empty database.
import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import { ReferencesMissingError } from '../errors.js';
import type { MetadataStore, PutManifestInput } from '../types.js';

export interface MetadataStoreHarness {
  store: MetadataStore;
  close(): Promise<void>;
}

export type MetadataStoreFactory = () => Promise<MetadataStoreHarness>;

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const d = (n: number | string) => `sha256:${String(n).padStart(64, '0')}`;

/** Annotation values that trip naive storage: NUL and other controls, lone and paired surrogates, BOM, noncharacters, RTL, combining marks. */
export const ODD_UNICODE: Record<string, string> = {
  nul: 'a\u0000b',
  controls: '\u0001\u0007\u001b[31m\u007f',
  loneHigh: 'x\ud800y',
  loneLow: '\udfff',
  reversedPair: '\udc00\ud800',
  astral: '𝄞😀🏳️‍🌈',
  bom: '\ufeffstart',
  nonchar: '\uffff\ufffe',
  rtl: '\u202eevil\u202c שלום',
  combining: 'e\u0301\u0301\u0301',
  empty: '',
  long: 'é'.repeat(10_000),
  'key with \u0000 nul and 𝄞': 'v',
};

function manifest(repo: string, digest: string, extra: Partial<PutManifestInput> = {}): PutManifestInput {
  return {
    repo,
    digest,
    mediaType: MANIFEST,
    size: 100,
    artifactType: null,
    configMediaType: 'application/vnd.oci.image.config.v1+json',
    subject: null,
    annotations: null,
    references: [],
    ...extra,
  };
}

export function metadataStoreContract(backend: string, factory: MetadataStoreFactory): void {
  describe(`MetadataStore contract: ${backend}`, () => {
    let h: MetadataStoreHarness;
    let store: MetadataStore;
    beforeEach(async () => {
      await h?.close();
      h = await factory();
      store = h.store;
    });
    after(async () => h?.close());

    it('links blobs per repository and knows their sizes', async () => {
      assert.equal(await store.repoExists('a/b'), false);
      await store.linkBlob('a/b', d(1), 123);
      assert.equal(await store.repoExists('a/b'), true);
      assert.equal(await store.repoBlobSize('a/b', d(1)), 123);
      assert.equal(await store.repoBlobSize('other', d(1)), null);
      assert.equal(await store.blobSize(d(1)), 123);
      await store.linkBlob('a/b', d(1), 123);
      assert.equal(await store.unlinkBlob('a/b', d(1)), true);
      assert.equal(await store.unlinkBlob('a/b', d(1)), false);
      assert.equal(await store.repoBlobSize('a/b', d(1)), null);
      assert.equal(await store.blobSize(d(1)), 123, 'the blob row outlives its links (the collector removes it)');
    });

    it('pages repositories and tags in byte order', async () => {
      for (const repo of ['b', 'a/z', 'a', 'a-b', 'a/a']) await store.linkBlob(repo, d(1), 1);
      assert.deepEqual(await store.listRepos({}), ['a', 'a-b', 'a/a', 'a/z', 'b']);
      assert.deepEqual(await store.listRepos({ limit: 2 }), ['a', 'a-b']);
      assert.deepEqual(await store.listRepos({ last: 'a-b', limit: 2 }), ['a/a', 'a/z']);
      assert.deepEqual(await store.listRepos({ last: 'b' }), []);

      const tags = ['v1', 'V2', 'latest', '_x', 'a.b', 'a-b', 'Z', '0'];
      for (const tag of tags) await store.putManifest(manifest('a', d(`1${tag.length}`), { tag }));
      const sorted = [...tags].sort((x, y) => (Buffer.compare(Buffer.from(x), Buffer.from(y))));
      assert.deepEqual(await store.listTags('a', {}), sorted);
      assert.deepEqual(await store.listTags('a', { last: sorted[2], limit: 3 }), sorted.slice(3, 6));
      assert.deepEqual(await store.listTags('nope', {}), []);
    });

    it('stores manifests with their tag in one step and re-checks references', async () => {
      await store.linkBlob('r', d(1), 10);
      const m = manifest('r', d(2), { tag: 'v1', references: [{ digest: d(1), kind: 'layer' }] });
      await store.putManifest(m);
      assert.equal(await store.resolveTag('r', 'v1'), d(2));
      const rec = await store.getManifest('r', d(2));
      assert.equal(rec?.mediaType, MANIFEST);
      assert.equal(rec?.size, 100);
      assert.equal(rec?.repo, 'r');
      assert.equal(typeof rec?.createdAt, 'number');
      assert.deepEqual(await store.getTaggedManifest('r', 'v1'), rec);
      assert.equal(await store.getTaggedManifest('r', 'v9'), null);
      assert.equal(await store.getTaggedManifest('other', 'v1'), null);
      assert.equal(await store.getManifest('other', d(2)), null);

      await assert.rejects(
        store.putManifest(manifest('r', d(3), { tag: 'v2', references: [{ digest: d(9), kind: 'layer' }, { digest: d(8), kind: 'manifest' }] })),
        (err: unknown) => err instanceof ReferencesMissingError && err.digests.includes(d(9)) && err.digests.includes(d(8)),
      );
      assert.equal(await store.getManifest('r', d(3)), null, 'nothing of a refused manifest is stored');
      assert.equal(await store.resolveTag('r', 'v2'), null);

      // A child manifest of the same repo satisfies a 'manifest' reference; one of another repo does not.
      await store.putManifest(manifest('r', d(4), { references: [{ digest: d(2), kind: 'manifest' }] }));
      await assert.rejects(store.putManifest(manifest('s', d(5), { references: [{ digest: d(2), kind: 'manifest' }] })), ReferencesMissingError);
    });

    it('moves a tag to the last manifest pushed under it; deleting a manifest deletes its tags', async () => {
      await store.putManifest(manifest('r', d(1), { tag: 't' }));
      await store.putManifest(manifest('r', d(2), { tag: 't' }));
      await store.putManifest(manifest('r', d(2), { tag: 'u' }));
      assert.equal(await store.resolveTag('r', 't'), d(2));
      assert.equal((await store.getTaggedManifest('r', 't'))?.digest, d(2));
      assert.deepEqual(await store.tagsOf('r', d(2)), ['t', 'u']);
      assert.deepEqual(await store.tagsOf('r', d(1)), []);
      assert.ok(await store.getManifest('r', d(1)), 'the untagged manifest stays');
      assert.equal(await store.deleteTag('r', 'u'), true);
      assert.equal(await store.deleteTag('r', 'u'), false);
      assert.equal(await store.deleteManifest('r', d(2)), true);
      assert.equal(await store.deleteManifest('r', d(2)), false);
      assert.equal(await store.resolveTag('r', 't'), null);
      assert.equal(await store.deleteManifest('nope', d(2)), false);
    });

    it('lists referrers of a subject in push order, typed by artifactType or config type, filtered', async () => {
      await store.putManifest(manifest('r', d(1)));
      await store.putManifest(manifest('r', d(2), { subject: d(1), artifactType: 'application/vnd.example.sig', annotations: { k: 'v' } }));
      await store.putManifest(manifest('r', d(3), { subject: d(1), configMediaType: 'application/vnd.example.sbom' }));
      await store.putManifest(manifest('other', d(4), { subject: d(1), artifactType: 'application/vnd.example.sig' }));
      const all = await store.listReferrers('r', d(1));
      assert.deepEqual(
        all.map((r) => [r.digest, r.artifactType]),
        [
          [d(2), 'application/vnd.example.sig'],
          [d(3), 'application/vnd.example.sbom'],
        ],
      );
      assert.deepEqual(all[0]!.annotations, { k: 'v' });
      assert.deepEqual((await store.listReferrers('r', d(1), 'application/vnd.example.sbom')).map((r) => r.digest), [d(3)]);
      assert.deepEqual(await store.listReferrers('r', d(9)), []);
    });

    it('keeps annotations with odd Unicode exactly', async () => {
      await store.putManifest(manifest('r', d(1), { annotations: ODD_UNICODE, subject: d(7), artifactType: 'application/vnd.example+json' }));
      assert.deepEqual((await store.getManifest('r', d(1)))?.annotations, ODD_UNICODE);
      assert.deepEqual((await store.listReferrers('r', d(7)))[0]?.annotations, ODD_UNICODE);
    });

    it('takes names and tags at the grammar limits', async () => {
      const longName = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(53)}`;
      assert.equal(longName.length, 255);
      const longTag = `T${'x'.repeat(127)}`;
      await store.linkBlob(longName, d(1), 1);
      await store.putManifest(manifest(longName, d(2), { tag: longTag }));
      assert.equal(await store.resolveTag(longName, longTag), d(2));
      assert.deepEqual(await store.listTags(longName, {}), [longTag]);
      assert.deepEqual(await store.listRepos({}), [longName]);
      const sha512 = `sha512:${'f'.repeat(128)}`;
      await store.linkBlob(longName, sha512, 2 ** 40);
      assert.equal(await store.repoBlobSize(longName, sha512), 2 ** 40, 'sizes beyond 32 bits');
    });

    it('keeps upload sessions and finds idle and never-used ones', async () => {
      const quota = { perOwner: 10, total: 10 };
      assert.deepEqual(await store.createUpload({ id: 'u1', repo: 'r', owner: 'acme' }, quota), { created: true });
      const s = await store.getUpload('u1');
      assert.deepEqual([s?.repo, s?.owner, s?.started], ['r', 'acme', false]);
      assert.equal(s?.createdAt, s?.updatedAt);
      await assert.rejects(store.createUpload({ id: 'u1', repo: 'r', owner: 'acme' }, quota), 'ids are unique');
      const at = s!.updatedAt;
      assert.deepEqual(await store.listExpiredUploads({ idleBefore: at, emptyBefore: at }), []);
      assert.deepEqual((await store.listExpiredUploads({ idleBefore: at + 1, emptyBefore: at })).map((u) => u.id), ['u1']);
      assert.deepEqual((await store.listExpiredUploads({ idleBefore: at, emptyBefore: at + 1 })).map((u) => u.id), ['u1'], 'never used');
      await new Promise((r) => setTimeout(r, 5));
      await store.touchUpload('u1');
      const used = (await store.getUpload('u1'))!;
      assert.ok(used.updatedAt > at);
      assert.equal(used.started, true);
      assert.deepEqual(await store.listExpiredUploads({ idleBefore: at + 1, emptyBefore: Date.now() + 1000 }), [], 'used: only the idle cutoff applies');
      assert.equal(await store.countUploads(), 1);
      await store.deleteUpload('u1');
      assert.equal(await store.getUpload('u1'), null);
      await store.deleteUpload('u1');
      assert.equal(await store.countUploads(), 0);
    });

    it('refuses upload sessions past the quota, per owner and in all, atomically', async () => {
      const quota = { perOwner: 3, total: 5 };
      const open = (id: string, owner: string) => store.createUpload({ id, repo: `${owner}/app`, owner }, quota);
      const racing = await Promise.all(Array.from({ length: 6 }, (_, i) => open(`a${i}`, 'acme')));
      assert.equal(racing.filter((o) => o.created).length, 3, 'concurrent requests never exceed the quota');
      assert.deepEqual(racing.find((o) => !o.created), { created: false, limit: 'perOwner', open: 3 });
      assert.deepEqual(await open('b0', 'beta'), { created: true });
      assert.deepEqual(await open('b1', 'beta'), { created: true });
      assert.deepEqual(await open('b2', 'beta'), { created: false, limit: 'total', open: 5 });
      await store.deleteUpload('a0');
      assert.deepEqual(await open('b2', 'beta'), { created: true });
    });

    it('lists repositories within a scope, paging each name range', async () => {
      for (const repo of ['a/1', 'a/2', 'b/1', 'b/2', 'b/3', 'c/x', 'cache/global/k', 'cache/tenant-a', 'z']) await store.linkBlob(repo, d(1), 1);
      const scope = { all: false as const, prefixes: ['b/', 'cache/global/'], names: ['a/2', 'z', 'nope/never'] };
      assert.deepEqual(await store.listRepos({}, scope), ['a/2', 'b/1', 'b/2', 'b/3', 'cache/global/k', 'z']);
      assert.deepEqual(await store.listRepos({ limit: 2 }, scope), ['a/2', 'b/1']);
      assert.deepEqual(await store.listRepos({ last: 'b/1', limit: 3 }, scope), ['b/2', 'b/3', 'cache/global/k']);
      assert.deepEqual(await store.listRepos({ last: 'cache/global/k' }, scope), ['z']);
      assert.deepEqual(await store.listRepos({}, { all: false, prefixes: [], names: [] }), []);
      assert.equal((await store.listRepos({}, { all: true })).length, 9);
    });

    it('finds a repository holding a blob within a scope', async () => {
      await store.linkBlob('a/app', d(1), 1);
      await store.linkBlob('b/app', d(2), 1);
      assert.equal(await store.findRepoWithBlob(d(1), { all: true }), 'a/app');
      assert.equal(await store.findRepoWithBlob(d(1), { all: false, prefixes: ['b/'], names: [] }), null);
      assert.equal(await store.findRepoWithBlob(d(2), { all: false, prefixes: ['b/'], names: [] }), 'b/app');
      assert.equal(await store.findRepoWithBlob(d(1), { all: false, prefixes: [], names: ['a/app'] }), 'a/app');
      assert.equal(await store.findRepoWithBlob(d(9), { all: true }), null);
    });

    it('keeps every concurrent write of one repository', async () => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.linkBlob('new/repo', d(i + 1), i)));
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.putManifest(manifest('new/repo', d(100 + i), { tag: `t${i}` }))));
      assert.deepEqual(await store.listRepos({}), ['new/repo']);
      assert.equal((await store.listTags('new/repo', {})).length, 20);
      for (let i = 0; i < 20; i++) assert.equal(await store.repoBlobSize('new/repo', d(i + 1)), i);
    });
  });
}
