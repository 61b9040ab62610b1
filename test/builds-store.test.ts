// The builds table: FIFO order, status changes that only apply from the
// expected state, owners for the auth policy, and survival across a reopen.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NewBuild } from '../src/store/build-store.js';
import { SqliteBuildStore } from '../src/store/sqlite/build-store.js';
import { openSqlite, type SqliteDatabase } from '../src/store/sqlite/db.js';
import { tempDir } from './helpers/kiln.js';

const build = (id: string, tenant: string | null): NewBuild => ({
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
});

describe('SqliteBuildStore', () => {
  let dir = '';
  let db: SqliteDatabase;
  before(async () => {
    dir = await tempDir('kiln-build-store-');
    db = openSqlite(path.join(dir, 'kiln.db'));
  });
  after(async () => {
    db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps builds in submission order and applies changes only from the expected status', () => {
    const store = new SqliteBuildStore(db);
    for (const [id, tenant] of [['b1', 'acme'], ['b2', null], ['b3', 'beta']] as const) store.create(build(id, tenant));
    assert.deepEqual(store.withStatus(['queued']).map((b) => b.id), ['b1', 'b2', 'b3']);
    assert.deepEqual(store.list().map((b) => b.id), ['b3', 'b2', 'b1']);
    const fresh = store.get('b1')!;
    assert.equal(fresh.status, 'queued');
    assert.deepEqual(fresh.buildArgs, { A: '1' });
    assert.deepEqual(fresh.cacheImports, []);
    assert.equal(fresh.finishedAt, null);

    assert.equal(store.update('b1', { status: 'building', startedAt: 1 }, ['queued'])?.status, 'building');
    assert.equal(store.update('b1', { status: 'building' }, ['queued']), null, 'a second claim fails');
    assert.deepEqual(store.withStatus(['queued']).map((b) => b.id), ['b2', 'b3']);
    store.update('b1', { cacheUse: { totalSteps: 3, cachedSteps: 2 }, provenance: { source: { sha256: 'x' } } });
    const after = store.get('b1')!;
    assert.equal(after.status, 'building');
    assert.equal(after.startedAt, 1);
    assert.deepEqual(after.cacheUse, { totalSteps: 3, cachedSteps: 2 });
    assert.deepEqual(after.provenance, { source: { sha256: 'x' } });
    assert.equal(store.update('nope', { status: 'failed' }), null);
  });

  it('answers who owns a build', () => {
    const store = new SqliteBuildStore(db);
    assert.equal(store.ownerOf('b1'), 'acme');
    assert.equal(store.ownerOf('b2'), null, 'an admin build without a tenant belongs to no tenant');
    assert.equal(store.ownerOf('missing'), null);
  });

  it('survives a reopen of the database', () => {
    db.close();
    db = openSqlite(path.join(dir, 'kiln.db'));
    const store = new SqliteBuildStore(db);
    assert.deepEqual(store.withStatus(['queued', 'building']).map((b) => [b.id, b.status]), [
      ['b1', 'building'],
      ['b2', 'queued'],
      ['b3', 'queued'],
    ]);
    store.create(build('b4', 'acme'));
    assert.ok(store.get('b4')!.seq > store.get('b3')!.seq);
  });
});
