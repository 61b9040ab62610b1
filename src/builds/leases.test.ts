import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { leaseVerdict, type LeaseJudge } from './leases.js';

const judge: LeaseJudge = { now: 1000, self: 'here:1:aa', isDead: (runner) => runner === 'here:2:bb' };

describe('leaseVerdict', () => {
  const cases: Array<[string, Parameters<typeof leaseVerdict>[0], string]> = [
    ['building, lease running, holder alive', { status: 'building', runner: 'there:9:cc', leaseUntil: 2000, secretIds: [] }, 'held'],
    ['pushing, lease running, holder alive', { status: 'pushing', runner: 'there:9:cc', leaseUntil: 1000, secretIds: [] }, 'held'],
    ['building, lease ran out', { status: 'building', runner: 'there:9:cc', leaseUntil: 999, secretIds: [] }, 'interrupted'],
    ['pushing, holder dead on this host, lease still running', { status: 'pushing', runner: 'here:2:bb', leaseUntil: 5000, secretIds: [] }, 'interrupted'],
    ['building, a row from before leases (no runner)', { status: 'building', runner: null, leaseUntil: null, secretIds: [] }, 'interrupted'],
    ['building, held by this server even past its lease', { status: 'building', runner: 'here:1:aa', leaseUntil: 10, secretIds: [] }, 'held'],
    ['queued without secrets, no runner', { status: 'queued', runner: null, leaseUntil: null, secretIds: [] }, 'held'],
    ['queued with secrets, holder alive', { status: 'queued', runner: 'there:9:cc', leaseUntil: 2000, secretIds: ['npmrc'] }, 'held'],
    ['queued with secrets, lease ran out', { status: 'queued', runner: 'there:9:cc', leaseUntil: 10, secretIds: ['npmrc'] }, 'secrets-lost'],
    ['queued with secrets, holder dead', { status: 'queued', runner: 'here:2:bb', leaseUntil: 5000, secretIds: ['npmrc'] }, 'secrets-lost'],
    ['queued with secrets from before leases', { status: 'queued', runner: null, leaseUntil: null, secretIds: ['npmrc'] }, 'secrets-lost'],
    ['queued with secrets, held by this server', { status: 'queued', runner: 'here:1:aa', leaseUntil: 10, secretIds: ['npmrc'] }, 'held'],
    ['baking, lease long gone', { status: 'baking', runner: 'there:9:cc', leaseUntil: 10, secretIds: [] }, 'held'],
    ['failed, no runner', { status: 'failed', runner: null, leaseUntil: null, secretIds: [] }, 'held'],
  ];
  for (const [name, build, want] of cases) {
    it(name, () => assert.equal(leaseVerdict(build, judge), want));
  }
});
