// PostgreSQL-only behaviour of the stores: migrations under the advisory lock
// (several processes at once, a newer schema refused), and the cross-process
// GC coordination: pins seen by another process's collector, one collection at
// a time, writers held back while a collector holds the `reach` lock.
import assert from 'node:assert/strict';
import { writeFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { GarbageCollector } from '../src/gc/collector.js';
import { SchemaTooNewError } from '../src/store/errors.js';
import { openStores, type Stores } from '../src/store/open.js';
import { LOCKS, migratePostgres } from '../src/store/postgres/db.js';
import { POSTGRES_MIGRATIONS } from '../src/store/postgres/migrations.js';
import { tempDir } from './helpers/kiln.js';
import { startPostgres, type TestPostgres } from './helpers/postgres.js';
import { blob } from './helpers/registry.js';

const LATEST = POSTGRES_MIGRATIONS.at(-1)!.version;
const GC = { graceMs: 0, intervalMs: 0, cacheMaxAgeMs: null, keepGlobalCache: true, uploadTtlMs: 86_400_000 };

let cluster: TestPostgres;
const cleanup: (() => Promise<void>)[] = [];
before(async () => {
  cluster = await startPostgres();
});
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
  await cluster?.stop();
});

/** Two "processes" (own pools, own in-memory pins) on one database and data directory. */
async function twoProcesses(): Promise<[Stores, Stores, string]> {
  const url = await cluster.database();
  const dataDir = await tempDir('kiln-pg-store-');
  const one = await openStores({ dataDir, databaseUrl: url, durable: false, owner: 'one' });
  const two = await openStores({ dataDir, databaseUrl: url, durable: false, owner: 'two' });
  cleanup.push(async () => {
    await one.close();
    await two.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return [one, two, url];
}

function collector(stores: Stores): GarbageCollector {
  return new GarbageCollector({ dirs: stores.dirs, store: stores.gc, blobs: stores.blobs, pins: stores.pins, config: GC, online: true });
}

describe('PostgreSQL migrations', () => {
  it('migrates once when several processes start at the same moment', async () => {
    const url = await cluster.database();
    const steps = [...POSTGRES_MIGRATIONS, { version: LATEST + 1, name: 'race probe', sql: 'ALTER TABLE repos ADD COLUMN race_probe TEXT' }];
    const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: url, max: 2 }));
    try {
      await Promise.all(pools.map((pool) => migratePostgres(pool, 'test', steps)));
      const { rows } = await pools[0]!.query<{ version: number }>('SELECT version FROM kiln_schema ORDER BY version');
      assert.deepEqual(rows.map((r) => r.version), steps.map((s) => s.version));
      const cols = await pools[0]!.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'repos' AND column_name = 'race_probe'`);
      assert.equal(cols.rowCount, 1);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('refuses a database whose schema is newer than the code', async () => {
    const url = await cluster.database();
    const dataDir = await tempDir('kiln-pg-newer-');
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query('CREATE TABLE kiln_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
    await client.query('INSERT INTO kiln_schema VALUES ($1, $2, $3)', [LATEST + 1, 'from the future', Date.now()]);
    await client.end();
    await assert.rejects(openStores({ dataDir, databaseUrl: url, owner: 'test' }), (err: unknown) => {
      assert.ok(err instanceof SchemaTooNewError);
      assert.match(err.message, new RegExp(`PostgreSQL database postgres://postgres@127\\.0\\.0\\.1:\\d+/\\w+ has schema version ${LATEST + 1}, but this Kiln knows versions up to ${LATEST}`));
      return true;
    });
  });
});

describe('garbage collection across processes on PostgreSQL', () => {
  it("a digest pinned by one process is safe from the other's collector", async () => {
    const [one, two] = await twoProcesses();
    const b = blob('a blob between its rename into blobs/ and its row');
    await mkdir(path.dirname(one.dirs.blobPath(b.digest)), { recursive: true });
    await writeFile(one.dirs.blobPath(b.digest), b.bytes);
    const release = await one.pins.pin(b.digest);
    assert.equal(two.pins.has(b.digest), false, 'the other process has no local pin');
    assert.equal((await collector(two).run({ trigger: 'test' })).deleted.blobs, 0);
    await one.blobs.stat(b.digest).then((s) => assert.equal(s?.size, b.size));
    release();
    // The release is not awaited; the next collection sees it gone soon after.
    for (let i = 0; i < 100 && (await one.blobs.stat(b.digest)); i++) await collector(two).run({ trigger: 'test' });
    assert.equal(await one.blobs.stat(b.digest), null, 'once released the orphan goes');
  });

  it('runs one collection at a time across processes', async () => {
    const [one, two] = await twoProcesses();
    const order: string[] = [];
    let letGo!: () => void;
    const holding = new Promise<void>((r) => (letGo = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = one.gc.runExclusive(async () => {
      order.push('one in');
      entered();
      await holding;
      order.push('one out');
    });
    await inside;
    const second = two.gc.runExclusive(async () => {
      order.push('two in');
    });
    await new Promise((r) => setTimeout(r, 300));
    order.push('released');
    letGo();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['one in', 'released', 'one out', 'two in']);
  });

  it("holds back another process's writes while the collector holds the reach lock, and they land after", async () => {
    const [one, , url] = await twoProcesses();
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    cleanup.push(() => locker.end());
    await locker.query('SELECT pg_advisory_lock($1, $2)', LOCKS.reach);
    let landed = false;
    const write = one.meta.linkBlob('held/back', `sha256:${'1'.repeat(64)}`, 1).then(() => (landed = true));
    const pin = one.pins.pin(`sha256:${'2'.repeat(64)}`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(landed, false, 'the link waits for the collector');
    const reads = await one.meta.repoExists('held/back');
    assert.equal(reads, false, 'reads are not held back, and see nothing half-done');
    await locker.query('SELECT pg_advisory_unlock($1, $2)', LOCKS.reach);
    await write;
    (await pin)();
    assert.equal(await one.meta.repoBlobSize('held/back', `sha256:${'1'.repeat(64)}`), 1);
  });
});
