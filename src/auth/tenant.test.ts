import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { isValidTenantName, tenantNameProblem, tenantScope } from './tenant.js';

describe('tenant names', () => {
  const valid = ['acme', 'a', 'acme-corp', 'acme.io', 'acme_1', 'team__x', '0day', 'a'.repeat(64)];
  const invalid: [string, RegExp][] = [
    ['', /empty/],
    ['Acme', /lowercase/],
    ['acme/app', /lowercase letters/],
    ['-acme', /lowercase letters/],
    ['acme-', /lowercase letters/],
    ['a'.repeat(65), /longer than 64/],
    ['cache', /reserved/],
    ['builds', /reserved/],
  ];
  for (const name of valid) it(`accepts "${name}"`, () => assert.equal(isValidTenantName(name), true));
  for (const [name, why] of invalid) it(`refuses "${name}"`, () => assert.match(tenantNameProblem(name) ?? '', why));
});

describe('tenantScope', () => {
  it('is "tenant-" and the first 16 hex digits of sha256(tenant)', () => {
    const hex = createHash('sha256').update('acme').digest('hex');
    assert.equal(tenantScope('acme'), `tenant-${hex.slice(0, 16)}`);
  });
  it('is stable and distinct per tenant', () => {
    assert.equal(tenantScope('acme'), tenantScope('acme'));
    assert.notEqual(tenantScope('acme'), tenantScope('beta'));
  });
  it('does not contain the tenant name', () => assert.doesNotMatch(tenantScope('acme'), /acme/));
  it('is a valid single repository path component', () => assert.match(tenantScope('x'), /^tenant-[0-9a-f]{16}$/));
});
