import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admissionProblem, bucketOf, buildsToStart, buildTimeout, queueOrder, type FairnessLimits, type QueuedBuild } from './fairness.js';

/** `a1 a2 b1` → builds of buckets a, a, b in that submission order. */
function queue(spec: string): QueuedBuild[] {
  return spec
    .split(/\s+/)
    .filter(Boolean)
    .map((id, seq) => ({ id, bucket: id.replace(/\d+$/, ''), seq }));
}

const limits = (slots: number, runningPerTenant: number, queuedPerTenant = 10): FairnessLimits => ({ slots, runningPerTenant, queuedPerTenant });

describe('buildsToStart', () => {
  // queued, running buckets, slots, per tenant → started
  const table: Array<[string, string[], number, number, string[]]> = [
    ['a1 a2 b1', [], 2, 1, ['a1', 'b1']],
    ['a1 a2 b1', [], 2, 2, ['a1', 'b1']],
    ['a1 a2 a3', [], 2, 2, ['a1', 'a2']],
    ['a1 a2 a3', [], 2, 1, ['a1']],
    // The starvation: one tenant's two sleeps held both slots; now the other tenant gets one.
    ['a2 b1', ['a'], 2, 1, ['b1']],
    ['a2 b1', ['a'], 2, 2, ['b1']],
    ['a3 b1', ['a', 'a'], 2, 2, []],
    ['a1 b1 c1', ['b'], 3, 1, ['a1', 'c1']],
    ['a1', ['b', 'c'], 2, 1, []],
    ['', [], 2, 1, []],
    // Within a bucket, oldest first; among buckets, least busy first, then oldest.
    ['b1 a1 a2 c1', ['a'], 4, 3, ['b1', 'c1', 'a1']],
    ['(admin)1 a1', ['(admin)'], 3, 1, ['a1']],
  ];
  for (const [spec, running, slots, perTenant, want] of table) {
    it(`${spec || '(empty)'} with [${running.join(',')}] running, ${slots} slots, ${perTenant} per tenant → ${want.join(',') || 'none'}`, () => {
      assert.deepEqual(buildsToStart(queue(spec), running, limits(slots, perTenant)), want);
    });
  }

  // On a shared store: the per-tenant limit counts every server's builds, the slots this server's only.
  const shared: Array<[string, string[], number, number, number, string[]]> = [
    // Tenant a runs one build on another server: with one per tenant, a waits here though this server is idle.
    ['a2 b1', ['a'], 0, 2, 1, ['b1']],
    ['a2', ['a'], 0, 2, 1, []],
    // Two builds run elsewhere; this server's own two slots are free.
    ['a1 b1', ['c', 'd'], 0, 2, 1, ['a1', 'b1']],
    // This server runs one of the two (slotsUsed 1): one slot left.
    ['a1 b1', ['c', 'd'], 1, 2, 1, ['a1']],
  ];
  for (const [spec, running, used, slots, perTenant, want] of shared) {
    it(`shared: ${spec} with [${running.join(',')}] running in all, ${used} here, ${slots} slots, ${perTenant} per tenant → ${want.join(',') || 'none'}`, () => {
      assert.deepEqual(buildsToStart(queue(spec), running, limits(slots, perTenant), used), want);
    });
  }
});

describe('queueOrder', () => {
  const table: Array<[string, string[], string[]]> = [
    ['a1 a2 a3 b1', [], ['a1', 'b1', 'a2', 'a3']],
    ['a1 a2 a3 b1', ['a'], ['b1', 'a1', 'a2', 'a3']],
    ['a1 b1 a2 b2 c1', [], ['a1', 'b1', 'c1', 'a2', 'b2']],
    ['a1 a2', ['b', 'b'], ['a1', 'a2']],
    ['', ['a'], []],
  ];
  for (const [spec, running, want] of table) {
    it(`${spec || '(empty)'} with [${running.join(',')}] running → ${want.join(',') || 'none'}`, () => assert.deepEqual(queueOrder(queue(spec), running), want));
  }

  it('puts first the build that would start next', () => {
    for (const [spec, running] of [['a1 a2 b1', ['a']], ['b1 a1 c1', ['b', 'c']], ['a1', []]] as const) {
      assert.equal(queueOrder(queue(spec), running)[0], buildsToStart(queue(spec), running, limits(running.length + 1, 99))[0], spec);
    }
  });
});

describe('bucketOf', () => {
  it('puts admin builds in one bucket and tenants in their own', () => {
    assert.equal(bucketOf({ tenant: 'acme', admin: false }), 'acme');
    assert.equal(bucketOf({ tenant: 'acme', admin: true }), '(admin)');
    assert.equal(bucketOf({ tenant: null, admin: true }), '(admin)');
  });
});

describe('admissionProblem', () => {
  it('lets a tenant queue up to the limit and names the setting beyond it', () => {
    assert.equal(admissionProblem(0, limits(2, 1, 2)), null);
    assert.equal(admissionProblem(1, limits(2, 1, 2)), null);
    assert.match(admissionProblem(2, limits(2, 1, 2)) ?? '', /2 builds waiting.*KILN_BUILD_QUEUE_PER_TENANT=2/);
  });
});

describe('buildTimeout', () => {
  const t = { defaultSeconds: 1800, tenantMaxSeconds: 3600, adminMaxSeconds: 86_400 };
  const table: Array<[number | null, boolean, number | RegExp]> = [
    [null, false, 1800],
    [null, true, 1800],
    [60, false, 60],
    [3600, false, 3600],
    [86_400, false, /above the 3600 s tenant builds may ask for \(KILN_BUILD_MAX_TIMEOUT_SECONDS\)/],
    [86_400, true, 86_400],
    [86_401, true, /KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS/],
    [0, false, /whole number from 1 to 3600/],
    [1.5, false, /whole number/],
  ];
  for (const [requested, admin, want] of table) {
    it(`${requested ?? 'none'} for ${admin ? 'an admin' : 'a tenant'}`, () => {
      const got = buildTimeout(requested, admin, t);
      if (typeof want === 'number') assert.deepEqual(got, { seconds: want });
      else assert.match('problem' in got ? got.problem : '', want);
    });
  }
  it('caps the default at the maximum', () => {
    assert.deepEqual(buildTimeout(null, false, { defaultSeconds: 7200, tenantMaxSeconds: 600, adminMaxSeconds: 86_400 }), { seconds: 600 });
  });
});
