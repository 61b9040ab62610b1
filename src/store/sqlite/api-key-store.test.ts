import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { SqliteApiKeyStore } from './api-key-store.js';
import { openSqlite } from './db.js';

describe('SqliteApiKeyStore', () => {
  const db = openSqlite(':memory:');
  after(() => db.close());
  const store = new SqliteApiKeyStore(db);
  const issuedAt = new Date('2026-01-01T00:00:00.000Z');
  const expiresAt = new Date('2026-02-01T00:00:00.000Z');
  const key = { jti: 'k1', kind: 'api_key' as const, subject: 'acme', role: 'tenant' as const, tenant: 'acme', buildId: null, issuedAt, expiresAt };

  it('records and finds a key', async () => {
    await store.record(key);
    assert.deepEqual(await store.find('k1'), { ...key, revokedAt: null });
  });
  it('finds nothing for an unknown id', async () => assert.equal(await store.find('nope'), null));
  it('refuses a second record under the same id', async () => assert.rejects(store.record(key), /UNIQUE/));
  it('revokes once, then says it already was, and knows unknown ids', async () => {
    const at = new Date('2026-01-15T00:00:00.000Z');
    assert.equal(await store.revoke('k1', at), 'revoked');
    assert.equal(await store.revoke('k1', new Date()), 'already_revoked');
    assert.equal(await store.revoke('nope', at), 'unknown');
    assert.deepEqual((await store.find('k1'))?.revokedAt, at);
  });
  it('keeps build tokens with their build', async () => {
    await store.record({ ...key, jti: 'b1', kind: 'build', subject: 'build:x', role: 'build', buildId: 'x' });
    assert.equal((await store.find('b1'))?.buildId, 'x');
  });
  it('purges only what expired before the cut-off', async () => {
    await store.record({ ...key, jti: 'old', expiresAt: new Date('2025-12-01T00:00:00.000Z') });
    assert.equal(await store.purgeExpired(new Date('2026-01-01T00:00:00.000Z')), 1);
    assert.equal(await store.find('old'), null);
    assert.notEqual(await store.find('k1'), null);
  });
  it('opens an existing table again without losing rows', async () => {
    const again = new SqliteApiKeyStore(db);
    assert.notEqual(await again.find('k1'), null);
  });
});
