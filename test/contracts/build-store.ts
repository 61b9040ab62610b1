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
        assert.equal(created.tokenJti, null);
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
        assert.equal((await store.update('b1', { tokenJti: 'jti-1' }))?.tokenJti, 'jti-1');
        assert.equal((await store.get('b1'))!.tokenJti, 'jti-1');
        assert.equal(await store.update('nope', { status: 'failed' }), null);
      }));

    it('lets exactly one of two simultaneous claims win', () =>
      withStore(factory, async ({ store }) => {
        await store.create(newBuild('race', 'acme'));
        const claims = await Promise.all([1, 2, 3].map((n) => store.update('race', { status: 'building', startedAt: n }, ['queued'])));
        assert.equal(claims.filter((c) => c !== null).length, 1);
      }));

    it('claims a queued build with a lease, for one runner only', () =>
      withStore(factory, async ({ store }) => {
        const created = await store.create(newBuild('c1', 'acme'));
        assert.equal(created.runner, null, 'a queued build without secrets is held by no one');
        assert.equal(created.leaseUntil, null);
        const claimed = await store.claim('c1', { runner: 'h:1:aa', leaseUntil: 5000 }, { status: 'building', startedAt: 7 });
        assert.equal(claimed?.status, 'building');
        assert.equal(claimed?.runner, 'h:1:aa');
        assert.equal(claimed?.leaseUntil, 5000);
        assert.deepEqual(await store.get('c1'), claimed);
        assert.equal(await store.claim('c1', { runner: 'h:2:bb', leaseUntil: 9000 }, { status: 'building' }), null, 'no second claim, by anyone');
        assert.equal(await store.claim('c1', { runner: 'h:1:aa', leaseUntil: 9000 }, { status: 'building' }), null, 'nor by the holder: it is no longer queued');
        assert.equal(await store.claim('missing', { runner: 'h:1:aa', leaseUntil: 1 }, { status: 'building' }), null);
        // Updates leave the lease alone.
        const pushing = await store.update('c1', { status: 'pushing', pushingAt: 8 }, ['building']);
        assert.equal(pushing?.runner, 'h:1:aa');
        assert.equal((await store.get('c1'))!.leaseUntil, 5000);

        // A queued build held from its creation (its secrets live in one server) is claimed only by that server.
        const held = await store.create(newBuild('c2', 'acme', { secretIds: ['npmrc'], lease: { runner: 'h:1:aa', leaseUntil: 4000 } }));
        assert.equal(held.runner, 'h:1:aa');
        assert.equal(held.leaseUntil, 4000);
        assert.equal(await store.claim('c2', { runner: 'h:2:bb', leaseUntil: 6000 }, { status: 'building' }), null, 'another server may not take it');
        assert.equal((await store.get('c2'))!.status, 'queued');
        assert.equal((await store.claim('c2', { runner: 'h:1:aa', leaseUntil: 6000 }, { status: 'building' }))?.leaseUntil, 6000);
      }));

    it('lets exactly one of simultaneous claims by different runners win', () =>
      withStore(factory, async ({ store }) => {
        await store.create(newBuild('lrace', 'acme'));
        const claims = await Promise.all([1, 2, 3].map((n) => store.claim('lrace', { runner: `h:${n}:aa`, leaseUntil: 1000 + n }, { status: 'building', startedAt: n })));
        const won = claims.filter((c) => c !== null);
        assert.equal(won.length, 1);
        const now = (await store.get('lrace'))!;
        assert.equal(now.runner, won[0]!.runner);
        assert.equal(now.startedAt, won[0]!.startedAt);
      }));

    it("renews only the runner's own builds in a leased status", () =>
      withStore(factory, async ({ store }) => {
        for (const id of ['n1', 'n2', 'n3', 'n4', 'n5']) await store.create(newBuild(id, 'acme'));
        await store.claim('n1', { runner: 'h:1:aa', leaseUntil: 100 }, { status: 'building' });
        await store.claim('n2', { runner: 'h:1:aa', leaseUntil: 100 }, { status: 'building' });
        await store.update('n2', { status: 'pushing' });
        await store.claim('n3', { runner: 'h:2:bb', leaseUntil: 100 }, { status: 'building' });
        await store.claim('n4', { runner: 'h:1:aa', leaseUntil: 100 }, { status: 'building' });
        await store.update('n4', { status: 'cancelled', finishedAt: 50 });
        await store.create(newBuild('n6', 'acme', { secretIds: ['s'], lease: { runner: 'h:1:aa', leaseUntil: 100 } }));
        const renewed = await store.renew('h:1:aa', ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'missing'], 900);
        assert.deepEqual([...renewed].sort(), ['n1', 'n2', 'n6'], 'its building, pushing and held queued builds; not another runner\'s, an ended one, an unheld one');
        assert.equal((await store.get('n1'))!.leaseUntil, 900);
        assert.equal((await store.get('n2'))!.leaseUntil, 900);
        assert.equal((await store.get('n6'))!.leaseUntil, 900);
        assert.equal((await store.get('n3'))!.leaseUntil, 100, "another runner's lease is untouched");
        assert.equal((await store.get('n4'))!.leaseUntil, 100);
        assert.equal((await store.get('n5'))!.leaseUntil, null);
        assert.deepEqual(await store.renew('h:1:aa', [], 900), []);
        // Released (a stopping server): the lease ends now.
        assert.deepEqual(await store.renew('h:1:aa', ['n1'], 0), ['n1']);
        assert.equal((await store.get('n1'))!.leaseUntil, 0);
      }));

    it('ends an expired build only while its lease is the one seen, and a renewal after that fails', () =>
      withStore(factory, async ({ store }) => {
        await store.create(newBuild('x1', 'acme'));
        await store.claim('x1', { runner: 'h:1:aa', leaseUntil: 100 }, { status: 'building' });
        const seen = { runner: 'h:1:aa', leaseUntil: 100 };
        // The holder renewed after the reader looked: the take-over fails.
        await store.renew('h:1:aa', ['x1'], 200);
        assert.equal(await store.takeOver('x1', seen, { status: 'failed', error: 'gone', finishedAt: 1 }, ['building', 'pushing']), null);
        assert.equal((await store.get('x1'))!.status, 'building');
        // With the lease as it is now it succeeds, once.
        const fresh = { runner: 'h:1:aa', leaseUntil: 200 };
        const ended = await store.takeOver('x1', fresh, { status: 'failed', error: 'gone', finishedAt: 1 }, ['building', 'pushing']);
        assert.equal(ended?.status, 'failed');
        assert.equal(ended?.error, 'gone');
        assert.equal(ended?.runner, 'h:1:aa', 'the record keeps who ran it');
        assert.equal(await store.takeOver('x1', fresh, { status: 'failed', error: 'again' }, ['building', 'pushing']), null, 'not from an ended status');
        assert.deepEqual(await store.renew('h:1:aa', ['x1'], 300), [], 'the old holder learns it lost the build');
        assert.equal((await store.get('x1'))!.error, 'gone');

        // Rows without a runner (from before leases) are taken over by the lease seen: none.
        await store.create(newBuild('x2', 'acme'));
        await store.update('x2', { status: 'building' });
        assert.equal(await store.takeOver('x2', { runner: 'h:1:aa', leaseUntil: 100 }, { status: 'failed' }, ['building']), null);
        assert.equal((await store.takeOver('x2', { runner: null, leaseUntil: null }, { status: 'failed' }, ['building']))?.status, 'failed');
        assert.equal(await store.takeOver('missing', { runner: null, leaseUntil: null }, { status: 'failed' }, ['building']), null);
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
        await s.store.claim('r1', { runner: 'h:1:aa', leaseUntil: 1234 }, { status: 'building', startedAt: 5 });
        const again = await s.reopen();
        assert.equal((await again.get('r1'))!.runner, 'h:1:aa');
        assert.equal((await again.get('r1'))!.leaseUntil, 1234);
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
