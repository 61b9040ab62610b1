// The BuildStore contract against SQLite (test/contracts/build-store.ts), plus
// what only SQLite has: databases made before finished_at was a column.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { openSqlite } from '../src/store/sqlite-db.js';
import { SqliteBuildStore } from '../src/store/sqlite-build-store.js';
import { buildStoreContract, newBuild } from './contracts/build-store.js';
import { tempDir } from './helpers/kiln.js';

buildStoreContract('SQLite', async () => {
  const dir = await tempDir('kiln-build-store-');
  const file = path.join(dir, 'kiln.db');
  let db = openSqlite(file);
  return {
    store: new SqliteBuildStore(db),
    async reopen() {
      db.close();
      db = openSqlite(file);
      return new SqliteBuildStore(db);
    },
    async close() {
      db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('SqliteBuildStore on an older database', () => {
  it('adds the new columns and reads rows that kept finishedAt in their JSON', async () => {
    const dir = await tempDir('kiln-build-store-old-');
    const db = openSqlite(path.join(dir, 'kiln.db'));
    try {
      db.exec('CREATE TABLE builds (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, tenant TEXT, created_at INTEGER NOT NULL, data TEXT NOT NULL)');
      const { id, tenant, baseRefs: _b, secretIds: _s, ...rest } = newBuild('old1', 'acme');
      db.prepare('INSERT INTO builds (id, status, tenant, created_at, data) VALUES (?, ?, ?, ?, ?)').run(id, 'ready', tenant, 1, JSON.stringify({ ...rest, finishedAt: 42, cacheImports: [] }));
      const store = new SqliteBuildStore(db);
      const old = (await store.get('old1'))!;
      assert.equal(old.finishedAt, 42);
      assert.deepEqual(old.baseRefs, []);
      assert.deepEqual(old.secretIds, []);
      assert.equal(old.filesRemovedAt, null);
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
