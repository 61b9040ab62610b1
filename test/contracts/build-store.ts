// The shared contract of every BuildStore backend: each backend's test file
// calls buildStoreContract() with a factory of fresh, empty stores.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BuildRecord, BuildStore, NewBuild } from '../../src/store/build-store.js';

export interface BuildStoreUnderTest {
  store: BuildStore;
  /** The same data through a new connection (a restart). */
  reopen(): Promise<BuildStore>;
  close(): Promise<void>;
}

export type BuildStoreFactory = () => Promise<BuildStoreUnderTest>;

export function newBuild(id: string, tenant: string | null, extra: Partial<NewBuild> = {}): NewBuild {
  return {
    id,
    tenant,
    requestedBy: tenant ?? 'admin',
    admin: tenant === null,
    globalKey: null,
    buildArgs: { A: '1' },
    platform: null,
    timeoutSeconds: 60,
    dockerfile: null,
    sourceSha256: 'sha256:' + '0'.repeat(64),
    baseRefs: [],
    secretIds: [],
    ...extra,
  };
}

async function withStore(factory: BuildStoreFactory, fn: (s: BuildStoreUnderTest) => Promise<void>): Promise<void> {
  const s = await factory();
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

const ids = (builds: BuildRecord[]) => builds.map((b) => b.id);

export function buildStoreContract(name: string, factory: BuildStoreFactory): void {
  describe(`BuildStore contract: ${name}`, () => {
    it('creates queued builds with empty results and keeps what it was given', () =>
      withStore(factory, async ({ store }) => {
        const created = await store.create(newBuild('b1', 'acme', { baseRefs: [{ ref: 'k/library/base', repo: 'library/base', reference: 'latest' }], secretIds: ['npmrc'], globalKey: 'node20' }));
        assert.equal(created.status, 'queued');
        assert.deepEqual(await store.get('b1'), created);
        assert.deepEqual(created.buildArgs, { A: '1' });
        assert.deepEqual(created.baseRefs, [{ ref: 'k/library/base', repo: 'library/base', reference: 'latest' }]);
        assert.deepEqual(created.secretIds, ['npmrc']);
        assert.equal(created.globalKey, 'node20');
        assert.deepEqual(created.cacheImports, []);
        assert.equal(created.finishedAt, null);
        assert.equal(created.filesRemovedAt, null);
        assert.ok(created.createdAt > 0);
        assert.equal(await store.get('missing'), null);
        await assert.rejects(store.create(newBuild('b1', 'acme')), 'ids are unique');
      }));

    it('orders the queue by submission and applies changes only from the expected status', () =>
      withStore(factory, async ({ store }) => {
        for (const [id, tenant] of [['b1', 'acme'], ['b2', null], ['b3', 'beta']] as const) await store.create(newBuild(id, tenant));
        assert.deepEqual(ids(await store.withStatus(['queued'])), ['b1', 'b2', 'b3']);
        assert.ok((await store.get('b3'))!.seq > (await store.get('b1'))!.seq);
        assert.equal((await store.update('b1', { status: 'building', startedAt: 1 }, ['queued']))?.status, 'building');
        assert.equal(await store.update('b1', { status: 'building' }, ['queued']), null, 'a second claim fails');
        assert.deepEqual(ids(await store.withStatus(['queued'])), ['b2', 'b3']);
        assert.deepEqual(ids(await store.withStatus(['building', 'queued'])), ['b1', 'b2', 'b3']);
        assert.deepEqual(await store.withStatus([]), []);
        await store.update('b1', { cacheUse: { totalSteps: 3, cachedSteps: 2 }, provenance: { source: { sha256: 'x' } }, baseImages: [{ ref: 'r', repo: 'library/base', digest: 'sha256:1' }] });
        const after = (await store.get('b1'))!;
        assert.equal(after.status, 'building');
        assert.equal(after.startedAt, 1);
        assert.deepEqual(after.cacheUse, { totalSteps: 3, cachedSteps: 2 });
        assert.deepEqual(after.provenance, { source: { sha256: 'x' } });
        assert.deepEqual(after.baseImages, [{ ref: 'r', repo: 'library/base', digest: 'sha256:1' }]);
        assert.equal(await store.update('nope', { status: 'failed' }), null);
      }));

    it('lets exactly one of two simultaneous claims win', () =>
      withStore(factory, async ({ store }) => {
        await store.create(newBuild('race', 'acme'));
        const claims = await Promise.all([1, 2, 3].map((n) => store.update('race', { status: 'building', startedAt: n }, ['queued'])));
        assert.equal(claims.filter((c) => c !== null).length, 1);
      }));

    it('lists newest first, by owner and status, in pages', () =>
      withStore(factory, async ({ store }) => {
        for (let i = 1; i <= 7; i++) await store.create(newBuild(`l${i}`, i % 2 === 0 ? 'beta' : 'acme'));
        await store.create(newBuild('admin1', null));
        await store.update('l3', { status: 'failed', finishedAt: 10 });
        assert.deepEqual(ids(await store.list({ limit: 100 })), ['admin1', 'l7', 'l6', 'l5', 'l4', 'l3', 'l2', 'l1']);
        assert.deepEqual(ids(await store.list({ tenant: 'acme', limit: 100 })), ['l7', 'l5', 'l3', 'l1']);
        assert.deepEqual(ids(await store.list({ tenant: 'beta', limit: 2 })), ['l6', 'l4']);
        assert.deepEqual(ids(await store.list({ tenant: 'beta', limit: 2, after: 'l4' })), ['l2']);
        assert.deepEqual(ids(await store.list({ tenant: 'acme', status: 'failed', limit: 10 })), ['l3']);
        assert.deepEqual(ids(await store.list({ tenant: 'acme', status: 'queued', limit: 10, after: 'l5' })), ['l1']);
        assert.deepEqual(ids(await store.list({ tenant: 'gamma', limit: 10 })), []);
        assert.deepEqual(ids(await store.list({ limit: 10, after: 'no-such-build' })), []);
        assert.deepEqual(ids(await store.list({ limit: 0 })), []);
      }));

    it('answers who owns a build', () =>
      withStore(factory, async ({ store }) => {
        await store.create(newBuild('o1', 'acme'));
        await store.create(newBuild('o2', null));
        assert.equal(await store.ownerOf('o1'), 'acme');
        assert.equal(await store.ownerOf('o2'), null, 'an admin build without a tenant belongs to no tenant');
        assert.equal(await store.ownerOf('missing'), null);
      }));

    it('finds ended builds whose files are kept, oldest end first', () =>
      withStore(factory, async ({ store }) => {
        for (const id of ['e1', 'e2', 'e3', 'e4', 'e5']) await store.create(newBuild(id, 'acme'));
        await store.update('e1', { status: 'ready', finishedAt: 300 });
        await store.update('e2', { status: 'failed', finishedAt: 100 });
        await store.update('e3', { status: 'cancelled', finishedAt: 200, filesRemovedAt: 250 });
        await store.update('e4', { status: 'baking', finishedAt: null });
        await store.update('e5', { status: 'ready', finishedAt: 900 });
        assert.deepEqual(ids(await store.endedBefore(500, 10)), ['e2', 'e1']);
        assert.deepEqual(ids(await store.endedBefore(500, 1)), ['e2']);
        assert.deepEqual(ids(await store.endedBefore(100, 10)), []);
        await store.update('e2', { filesRemovedAt: 600 });
        assert.deepEqual(ids(await store.endedBefore(1000, 10)), ['e1', 'e5']);
        assert.equal((await store.get('e2'))!.filesRemovedAt, 600);
      }));

    it('keeps everything across a reopen', () =>
      withStore(factory, async (s) => {
        await s.store.create(newBuild('r1', 'acme'));
        await s.store.create(newBuild('r2', null));
        await s.store.update('r1', { status: 'building', startedAt: 5 });
        const again = await s.reopen();
        assert.deepEqual(
          (await again.withStatus(['queued', 'building'])).map((b) => [b.id, b.status]),
          [
            ['r1', 'building'],
            ['r2', 'queued'],
          ],
        );
        await again.create(newBuild('r3', 'acme'));
        assert.ok((await again.get('r3'))!.seq > (await again.get('r2'))!.seq);
      }));
  });
}
