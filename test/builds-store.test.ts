// The BuildStore contract against SQLite and PostgreSQL (test/contracts/build-store.ts),
// plus what only SQLite has (databases made before finished_at was a column)
// and what only PostgreSQL has (several processes on one database: claims,
// owners known to the process that did not create the build).
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openPostgres, type PgPool } from '../src/store/postgres/db.js';
import { PostgresBuildStore } from '../src/store/postgres/build-store.js';
import { SqliteBuildStore } from '../src/store/sqlite/build-store.js';
import { openSqlite } from '../src/store/sqlite/db.js';
import { buildStoreContract, newBuild } from './contracts/build-store.js';
import { tempDir } from './helpers/kiln.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';

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

let cluster: Promise<TestPostgres> | null = null;
after(async () => (await cluster)?.stop());
const freshDatabase = async () => (await (cluster ??= startPostgres())).database();

/** Pools on one database, as separate processes would have; all ended by `end()`. */
async function pools(url: string) {
  const opened: PgPool[] = [];
  return {
    async open(): Promise<PgPool> {
      const pool = await openPostgres(url, { poolSize: 4 });
      opened.push(pool);
      return pool;
    },
    async end() {
      for (const pool of opened) await pool.end();
    },
  };
}

const skip = postgresMissing() ?? false;

if (!skip) {
  buildStoreContract('PostgreSQL', async () => {
    const db = await pools(await freshDatabase());
    return {
      store: new PostgresBuildStore(await db.open()),
      reopen: async () => new PostgresBuildStore(await db.open()),
      close: () => db.end(),
    };
  });
}

describe('PostgresBuildStore across processes', { skip }, () => {
  it('lets exactly one of several processes claim a queued build', async () => {
    const db = await pools(await freshDatabase());
    try {
      const stores: PostgresBuildStore[] = [];
      for (let i = 0; i < 4; i++) stores.push(new PostgresBuildStore(await db.open()));
      for (let n = 0; n < 5; n++) await stores[0]!.create(newBuild(`claim${n}`, 'acme'));
      for (let n = 0; n < 5; n++) {
        const claims = await Promise.all(stores.map((s, i) => s.update(`claim${n}`, { status: 'building', startedAt: i }, ['queued'])));
        assert.equal(claims.filter((c) => c !== null).length, 1, `claim${n}`);
        const winner = claims.findIndex((c) => c !== null);
        assert.equal((await stores[3]!.get(`claim${n}`))!.startedAt, winner);
      }
    } finally {
      await db.end();
    }
  });

  it('answers owners at once only once they are loaded, and never guesses one', async () => {
    const db = await pools(await freshDatabase());
    try {
      const a = new PostgresBuildStore(await db.open());
      const b = new PostgresBuildStore(await db.open());
      await a.create(newBuild('own1', 'acme'));
      await a.create(newBuild('own2', null));
      assert.equal(a.ownerOfNow('own1'), 'acme', 'the creating process knows at once');
      assert.equal(b.ownerOfNow('own1'), null, 'another process has not loaded it: no owner, so no tenant is granted anything');
      await b.loadOwners(['own1', 'own2', 'missing']);
      assert.equal(b.ownerOfNow('own1'), 'acme');
      assert.equal(b.ownerOfNow('own2'), null);
      assert.equal(b.ownerOfNow('missing'), null);
      // An unknown id is not remembered as unknown: once the build exists, loading finds it.
      await a.create(newBuild('missing', 'beta'));
      await b.loadOwners(['missing']);
      assert.equal(b.ownerOfNow('missing'), 'beta');
      assert.equal(await b.ownerOf('own1'), 'acme');
    } finally {
      await db.end();
    }
  });

  it('keeps build args and errors with odd characters as given', async () => {
    const db = await pools(await freshDatabase());
    try {
      const store = new PostgresBuildStore(await db.open());
      const odd = 'nul\u0000 tab\t emoji \u{1F600} rtl \u202E lone \uD800 end';
      await store.create(newBuild('odd', 'acme', { buildArgs: { ODD: odd } }));
      await store.update('odd', { status: 'failed', error: odd, finishedAt: 1 });
      const got = (await store.get('odd'))!;
      assert.equal(got.buildArgs.ODD, odd);
      assert.equal(got.error, odd);
    } finally {
      await db.end();
    }
  });
});
