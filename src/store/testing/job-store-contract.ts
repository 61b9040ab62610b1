// The JobStore contract as a test suite, run against every backend that has one.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JobStore } from '../job-store.js';

export interface JobStoreHarness {
  store: JobStore;
  close(): Promise<void>;
}

const LEASE = 60_000;
const never = () => false;

export function jobStoreContract(backend: string, factory: () => Promise<JobStoreHarness>): void {
  describe(`JobStore contract: ${backend}`, () => {
    let h: JobStoreHarness;
    let store: JobStore;
    before(async () => {
      h = await factory();
      store = h.store;
    });
    after(async () => h?.close());
    const expire = (now: number, maxAttempts = 3, isDead: (o: string) => boolean = never, backoffPerAttempt = 1000) =>
      store.expireLeases({ now, maxAttempts, backoffMs: (a) => a * backoffPerAttempt, isDead });

    it('keeps one job per key', async () => {
      const a = await store.enqueue('k1', 'k1:a', { n: 1 });
      const again = await store.enqueue('k1', 'k1:a', { n: 2 });
      assert.equal(again.id, a.id);
      assert.deepEqual(again.payload, { n: 1 });
      assert.equal(a.status, 'queued');
    });

    it('claims the oldest queued job once, with a lease held by the claimer', async () => {
      await store.enqueue('k2', 'k2:a', {});
      await store.enqueue('k2', 'k2:b', {});
      const first = (await store.claim('k2', 'w1', LEASE))!;
      assert.equal(first.key, 'k2:a');
      assert.equal(first.status, 'running');
      assert.equal(first.attempts, 1);
      assert.equal(first.leaseOwner, 'w1');
      assert.ok(first.leaseUntil! > Date.now());
      assert.equal((await store.claim('k2', 'w2', LEASE))!.key, 'k2:b');
      assert.equal(await store.claim('k2', 'w3', LEASE), null);
    });

    it('lets only the holder renew, report and finish', async () => {
      await store.enqueue('k3', 'k3:a', {});
      const job = (await store.claim('k3', 'w1', LEASE))!;
      assert.equal(await store.renew(job.id, 'w1', LEASE), 'held');
      assert.equal(await store.renew(job.id, 'other', LEASE), 'lost');
      await store.progress(job.id, 'other', 5, 10);
      assert.equal((await store.get('k3:a'))!.progressDone, 0);
      await store.progress(job.id, 'w1', 5, 10);
      assert.equal((await store.get('k3:a'))!.progressDone, 5);
      assert.equal(await store.finish(job.id, 'other', 'done'), false);
      assert.equal(await store.finish(job.id, 'w1', 'done'), true);
      const done = (await store.get('k3:a'))!;
      assert.equal(done.status, 'done');
      assert.equal(done.leaseOwner, null);
      assert.equal(await store.renew(job.id, 'w1', LEASE), 'lost');
    });

    it('requeues a job whose lease ran out, after a backoff, and drops the old holder', async () => {
      await store.enqueue('k4', 'k4:a', {});
      const job = (await store.claim('k4', 'w1', 1))!;
      const now = Date.now() + 10;
      assert.deepEqual(await expire(now), [{ key: 'k4:a', leaseOwner: 'w1', failed: false }]);
      assert.equal((await store.get('k4:a'))!.status, 'queued');
      assert.equal(await store.claim('k4', 'w2', LEASE), null, 'not before its backoff (1 s after one attempt)');
      assert.equal(await store.finish(job.id, 'w1', 'done'), false, 'the old holder cannot finish it');
      assert.deepEqual(await expire(Date.now()), [], 'a queued job is not expired again');
    });

    it('takes a job from a holder said to be dead before its lease ends', async () => {
      await store.enqueue('k5', 'k5:a', {});
      await store.claim('k5', 'dead-worker', LEASE);
      await store.enqueue('k5', 'k5:b', {});
      await store.claim('k5', 'live-worker', LEASE);
      const expired = await expire(Date.now(), 3, (owner) => owner === 'dead-worker');
      assert.deepEqual(expired.map((e) => e.key), ['k5:a']);
      assert.equal((await store.get('k5:b'))!.status, 'running');
    });

    it('fails a job after maxAttempts workers died on it, naming the setting', async () => {
      await store.enqueue('k6', 'k6:a', {});
      for (let attempt = 1; attempt <= 2; attempt++) {
        // A lease that has already ended, and no backoff: the next attempt may be claimed at once.
        const job = await store.claim('k6', `w${attempt}`, -1);
        assert.ok(job, `attempt ${attempt} is claimed`);
        assert.equal(job.attempts, attempt);
        await expire(Date.now(), 2, never, 0);
      }
      const failed = (await store.get('k6:a'))!;
      assert.equal(failed.status, 'failed');
      assert.match(failed.error!, /KILN_JOB_MAX_ATTEMPTS=2/);
      assert.equal(await store.requeue('k6:a'), true);
      const again = (await store.get('k6:a'))!;
      assert.equal(again.status, 'queued');
      assert.equal(again.attempts, 0, 'a retry asked for starts afresh');
    });

    it('hands a released job back without counting the attempt', async () => {
      await store.enqueue('k7', 'k7:a', {});
      const job = (await store.claim('k7', 'w1', LEASE))!;
      assert.equal(await store.release(job.id, 'other'), false);
      assert.equal(await store.release(job.id, 'w1'), true);
      const back = (await store.get('k7:a'))!;
      assert.equal(back.status, 'queued');
      assert.equal(back.attempts, 0);
      assert.equal((await store.claim('k7', 'w2', LEASE))!.attempts, 1, 'claimable at once');
    });

    it('cancels a queued job at once and signals a running one through its lease', async () => {
      await store.enqueue('k8', 'k8:a', {});
      assert.equal(await store.requestCancel('k8:a', 'because'), 'cancelled');
      assert.equal((await store.get('k8:a'))!.status, 'cancelled');
      assert.equal(await store.requestCancel('k8:a', 'again'), null);
      await store.enqueue('k8', 'k8:b', {});
      const job = (await store.claim('k8', 'w1', LEASE))!;
      assert.equal(await store.requestCancel('k8:b', 'stop'), 'signalled');
      assert.equal(await store.renew(job.id, 'w1', LEASE), 'cancel');
      assert.equal(await store.finish(job.id, 'w1', 'cancelled', 'stop'), true);
      assert.equal((await store.get('k8:b'))!.status, 'cancelled');
      assert.equal(await store.requestCancel('nope', 'x'), null);
    });

    it('deletes jobs and lists them by kind', async () => {
      await store.enqueue('k9', 'k9:a', {});
      assert.deepEqual((await store.list('k9')).map((j) => j.key), ['k9:a']);
      assert.equal(await store.delete('k9:a'), true);
      assert.equal(await store.delete('k9:a'), false);
      assert.deepEqual(await store.list('k9'), []);
    });
  });
}
