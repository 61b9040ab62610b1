// The BuildStore contract against SQLite (test/contracts/build-store.ts), plus
// what only SQLite has: databases made before finished_at was a column.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteBuildStore } from '../src/store/sqlite/build-store.js';
import { openSqlite } from '../src/store/sqlite/db.js';
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
  it('migrates a builds table that kept finishedAt in its JSON, and reads its rows', async () => {
    const dir = await tempDir('kiln-build-store-old-');
    const file = path.join(dir, 'kiln.db');
    const old = new Database(file);
    old.exec('CREATE TABLE builds (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, tenant TEXT, created_at INTEGER NOT NULL, data TEXT NOT NULL)');
    const { id, tenant, baseRefs: _b, secretIds: _s, ...rest } = newBuild('old1', 'acme');
    const insert = old.prepare('INSERT INTO builds (id, status, tenant, created_at, data) VALUES (?, ?, ?, ?, ?)');
    insert.run(id, 'ready', tenant, 1, JSON.stringify({ ...rest, finishedAt: 42, cacheImports: [] }));
    insert.run('old2', 'queued', 'acme', 2, JSON.stringify({ ...rest, finishedAt: null, cacheImports: [] }));
    old.close();
    const db = openSqlite(file);
    try {
      const store = new SqliteBuildStore(db);
      const ended = (await store.get('old1'))!;
      assert.equal(ended.finishedAt, 42);
      assert.deepEqual(ended.baseRefs, []);
      assert.deepEqual(ended.secretIds, []);
      assert.equal(ended.filesRemovedAt, null);
      assert.deepEqual((await store.endedBefore(100, 10)).map((b) => b.id), ['old1'], 'the end time moved into its column');
      assert.deepEqual((await store.list({ tenant: 'acme', limit: 10 })).map((b) => b.id), ['old2', 'old1']);
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
