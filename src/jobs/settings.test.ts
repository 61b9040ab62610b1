import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultWorkers, loadJobSettings, renewIntervalMs, retryBackoffMs } from './settings.js';
import { holderIsDead, newWorkerId, parseWorkerId } from './worker-id.js';

describe('job settings', () => {
  it('reads workers, lease and attempts, naming the setting when wrong', () => {
    const cases: Array<[Record<string, string>, { workers?: string }, Partial<ReturnType<typeof loadJobSettings>> | RegExp]> = [
      [{ KILN_WORKERS: '3', KILN_JOB_LEASE: '30s', KILN_JOB_MAX_ATTEMPTS: '5' }, {}, { workers: 3, leaseMs: 30_000, maxAttempts: 5 }],
      [{ KILN_WORKERS: '3' }, { workers: '0' }, { workers: 0 }],
      [{ KILN_JOB_LEASE: '20' }, {}, { leaseMs: 20_000 }],
      [{ KILN_JOB_LEASE: '2m' }, {}, { leaseMs: 120_000 }],
      [{ KILN_WORKERS: '-1' }, {}, /KILN_WORKERS must be a whole number of at least 0/],
      [{}, { workers: 'two' }, /--workers must be a whole number/],
      [{ KILN_JOB_MAX_ATTEMPTS: '0' }, {}, /KILN_JOB_MAX_ATTEMPTS must be a whole number of at least 1/],
      [{ KILN_JOB_LEASE: 'soon' }, {}, /KILN_JOB_LEASE: "soon" is not a duration/],
    ];
    for (const [env, flags, expected] of cases) {
      if (expected instanceof RegExp) assert.throws(() => loadJobSettings(env, flags), expected);
      else {
        const got = loadJobSettings(env, flags);
        for (const [k, v] of Object.entries(expected)) assert.equal(got[k as keyof typeof got], v, `${JSON.stringify(env)} ${k}`);
      }
    }
  });

  it('starts half the cores as workers, at least one', () => {
    assert.deepEqual([1, 2, 3, 8].map((c) => defaultWorkers(c)), [1, 1, 1, 4]);
  });

  it('renews three times per lease and backs off exponentially up to a minute', () => {
    assert.equal(renewIntervalMs({ leaseMs: 15_000 }), 5000);
    assert.deepEqual([1, 2, 3, 7, 20].map(retryBackoffMs), [1000, 2000, 4000, 60_000, 60_000]);
  });
});

describe('worker ids', () => {
  it('name host and pid, and tell a dead holder on this host only', () => {
    const id = newWorkerId('host-a', 1234);
    assert.deepEqual(parseWorkerId(id), { host: 'host-a', pid: 1234 });
    assert.equal(parseWorkerId('garbage'), null);
    const dead = () => false;
    const alive = () => true;
    assert.equal(holderIsDead(id, 'host-a', dead), true);
    assert.equal(holderIsDead(id, 'host-a', alive), false);
    assert.equal(holderIsDead(id, 'host-b', dead), false, 'another host: left to the lease');
    assert.equal(holderIsDead('garbage', 'host-a', dead), false);
  });
});
