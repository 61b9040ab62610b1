// SQLite schema versioning: a data directory written by the last release
// without versions (commit f171b3f, checked in as an SQL dump plus its blob
// and upload files) opens, upgrades and serves everything it held; a schema
// newer than the code is refused; processes starting together migrate once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SchemaTooNewError } from '../src/store/errors.js';
import { openStores } from '../src/store/open.js';
import { migrateSqlite, openSqlite, sqliteSchemaVersion } from '../src/store/sqlite/db.js';
import { SQLITE_MIGRATIONS } from '../src/store/sqlite/migrations.js';
import { repoRoot, startKiln, tempDir } from './helpers/kiln.js';
import { digestOf } from './helpers/registry.js';

const FIXTURE = path.join(repoRoot, 'test', 'fixtures', 'datadir-f171b3f');
const MANIFEST = 'sha256:1dfd7ca64eb36a7384e66548913e6487f81afb0c548fab255dfcdeea32b33584';
const SIGNATURE = 'sha256:c96d2ee93f9af54877eb0a4e0de633446a68a9ebd87731ee84491670c4b27652';
const LAYER = 'sha256:d58275d3a9b48435d04be116cff6c339353298d3008c3c3bc049bdb6148b3ed8';
const UPLOAD = '4b6b5bc7-822a-49a8-9806-c4d165e12ef4';
const LATEST = SQLITE_MIGRATIONS.at(-1)!.version;

const cleanup: string[] = [];
after(async () => {
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
});

/** A data directory as Kiln f171b3f left it. */
async function oldDataDir(): Promise<string> {
  const dir = await tempDir('kiln-f171b3f-');
  cleanup.push(dir);
  await cp(path.join(FIXTURE, 'blobs'), path.join(dir, 'blobs'), { recursive: true });
  await cp(path.join(FIXTURE, 'uploads'), path.join(dir, 'uploads'), { recursive: true });
  const db = new Database(path.join(dir, 'kiln.db'));
  db.exec(await readFile(path.join(FIXTURE, 'kiln.sql'), 'utf8'));
  db.close();
  return dir;
}

function tablesOf(db: Database.Database): Map<string, unknown[]> {
  const names = db.prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all();
  return new Map(names.map(({ name }) => [name, db.prepare(`SELECT * FROM "${name}" ORDER BY 1, 2`).all()]));
}

/** `row` cut down to the columns `like` has (all of them when there is no example). */
function pick(row: unknown, like: unknown): unknown {
  if (like === undefined) return row;
  const keys = Object.keys(like as object);
  return Object.fromEntries(Object.entries(row as object).filter(([k]) => keys.includes(k)));
}

function schemaOf(db: Database.Database): string[] {
  return db
    .prepare<[], { type: string; name: string }>(`SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`)
    .all()
    .map((r) => `${r.type} ${r.name}`);
}

describe('SQLite schema migrations', () => {
  it('upgrades a data directory written by f171b3f without losing a row, then serves what it held', async () => {
    const dir = await oldDataDir();
    const raw = new Database(path.join(dir, 'kiln.db'));
    assert.equal(sqliteSchemaVersion(raw), 0, 'the fixture predates schema versions');
    const before = tablesOf(raw);
    raw.close();
    assert.ok((before.get('manifests') ?? []).length === 2 && (before.get('api_keys') ?? []).length === 1, 'the fixture holds rows');

    const stores = await openStores({ dataDir: dir, owner: 'migration test' });
    try {
      const key = await stores.apiKeys.find('fixture-key');
      assert.equal(key?.tenant, 'acme');
      assert.equal((await stores.builds.get('b-fixture'))?.error, 'fixture');
      assert.deepEqual((await stores.images.get(MANIFEST))?.names.map((n) => `${n.repo}:${n.tag}`), ['acme/app:v1']);
      assert.equal((await stores.images.get(MANIFEST))?.diskSize, 4194304);
      assert.equal((await stores.gc.read()).tags.length, 2);
    } finally {
      await stores.close();
    }
    const upgraded = new Database(path.join(dir, 'kiln.db'), { readonly: true });
    assert.equal(sqliteSchemaVersion(upgraded), LATEST);
    const after = tablesOf(upgraded);
    // Later steps may add columns (with defaults): compare the columns the old rows had.
    const asBefore = new Map([...after].map(([table, rows]) => [table, rows.map((row) => pick(row, (before.get(table) ?? [])[0]))]));
    assert.deepEqual(asBefore, before, 'every row of every table is still there');
    // Step 2: the open upload from before counts as started and belongs to no tenant's quota.
    assert.deepEqual(after.get('uploads')!.map((row) => pick(row, { owner: 0, started: 0 })), [{ owner: '', started: 1 }]);
    // Step 4: the name keeps its image's platform (and no index: the image was pushed by tag).
    assert.deepEqual(after.get('image_names')!.map((row) => pick(row, { index_digest: 0, platform: 0 })), [{ index_digest: '', platform: 'linux/amd64' }]);
    // Step 3: a build's end time comes from its row.
    const build = (after.get('builds') as Array<Record<string, unknown>>)[0]!;
    assert.equal(build.finished_at, JSON.parse(build.data as string).finishedAt);
    const fresh = openSqlite(':memory:');
    assert.deepEqual(schemaOf(upgraded), schemaOf(fresh), 'the upgraded schema is the current one');
    fresh.close();
    upgraded.close();

    const server = await startKiln({ dataDir: dir, env: { KILN_GC_INTERVAL: '0' } });
    try {
      const get = (p: string, headers: Record<string, string> = {}) => fetch(`${server.url}${p}`, { headers });
      const manifest = await get(`/v2/acme/app/manifests/v1`, { accept: 'application/vnd.oci.image.manifest.v1+json' });
      assert.equal(manifest.status, 200);
      const bytes = Buffer.from(await manifest.arrayBuffer());
      assert.equal(digestOf(bytes), MANIFEST);
      assert.equal(JSON.parse(bytes.toString()).annotations['org.example.note'], 'héllo ☃ 𝄞');
      assert.deepEqual(await (await get('/v2/acme/app/tags/list')).json(), { name: 'acme/app', tags: ['latest', 'v1'] });
      assert.deepEqual(await (await get('/v2/_catalog')).json(), { repositories: ['acme/app', 'cache/acme'] });
      const layer = await get(`/v2/cache/acme/blobs/${LAYER}`);
      assert.equal(digestOf(Buffer.from(await layer.arrayBuffer())), LAYER);
      const referrers = (await (await get(`/v2/acme/app/referrers/${MANIFEST}`)).json()) as { manifests: { digest: string; artifactType: string }[] };
      assert.deepEqual(referrers.manifests.map((m) => [m.digest, m.artifactType]), [[SIGNATURE, 'application/vnd.example.sig']]);
      const upload = await get(`/v2/acme/app/blobs/uploads/${UPLOAD}`);
      assert.equal(upload.status, 204, 'the open upload session survived');
    } finally {
      await server.close();
    }
  });

  it('step 4 moves index and platform from the image to each name, and drops digest names beside tag names', async () => {
    const dir = await tempDir('kiln-step4-');
    cleanup.push(dir);
    const file = path.join(dir, 'kiln.db');
    const old = new Database(file);
    migrateSqlite(old, file, SQLITE_MIGRATIONS.filter((m) => m.version <= 3));
    const [image, index, lone] = ['1', '2', '3'].map((c) => `sha256:${c.repeat(64)}`);
    // As step 3 kept them: one record per digest, index and platform of the first push.
    old.prepare('INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)').run(image, index, 'linux/arm64', 8192, 1000, 2000);
    old.prepare('INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)').run(lone, null, null, null, 1000, 1000);
    const name = old.prepare('INSERT INTO image_names VALUES (?, ?, ?, ?)');
    name.run(image, 'acme/tiny', 'v1', 1500);
    name.run(image, 'acme/tiny', '', 1400);
    name.run(image, 'other/tiny', 'v4', 1600);
    name.run(lone, 'acme/lone', '', 1700);
    old.close();

    const stores = await openStores({ dataDir: dir, owner: 'migration test' });
    try {
      const record = (await stores.images.get(image))!;
      assert.equal(record.diskSize, 8192);
      const names = record.names.map((n) => [n.repo, n.tag, n.indexDigest, n.platform, n.createdAt].join(' '));
      assert.deepEqual(names, [`other/tiny v4 ${index} linux/arm64 1600`, `acme/tiny v1 ${index} linux/arm64 1500`], 'the digest name beside acme/tiny:v1 went');
      assert.deepEqual((await stores.images.namesOfDigest('acme/lone', lone)).map((n) => `${n.repo} ${n.tag} ${n.indexDigest}`), ['acme/lone null null']);
      assert.deepEqual((await stores.images.namesAnywhere(index)).map((n) => n.repo).sort(), ['acme/tiny', 'other/tiny']);
      // The names are the listing's order.
      const listed = (await stores.images.listNames({ limit: 10 }, { all: true })).map((n) => `${n.repo}:${n.tag ?? ''}`);
      assert.deepEqual(listed, ['acme/lone:', 'acme/tiny:v1', 'other/tiny:v4']);
      const scoped = (await stores.images.listNames({ limit: 10 }, { all: false, prefixes: ['other/'], names: ['acme/lone'] })).map((n) => n.repo);
      assert.deepEqual(scoped, ['acme/lone', 'other/tiny']);
    } finally {
      await stores.close();
    }
  });

  it('refuses a database whose schema is newer than the code, and says what to do', async () => {
    const dir = await tempDir('kiln-newer-schema-');
    cleanup.push(dir);
    const db = new Database(path.join(dir, 'kiln.db'));
    db.pragma(`user_version = ${LATEST + 1}`);
    db.close();
    await assert.rejects(openStores({ dataDir: dir, owner: 'test' }), (err: unknown) => {
      assert.ok(err instanceof SchemaTooNewError);
      assert.match(err.message, new RegExp(`schema version ${LATEST + 1}, but this Kiln knows versions up to ${LATEST}`));
      assert.match(err.message, /newer Kiln/);
      return true;
    });
    // The refusal released the data directory and left the file as it was.
    await assert.rejects(startKiln({ dataDir: dir }), SchemaTooNewError);
    const again = new Database(path.join(dir, 'kiln.db'), { readonly: true });
    assert.equal(sqliteSchemaVersion(again), LATEST + 1);
    assert.deepEqual(schemaOf(again), []);
    again.close();
  });

  it('migrates once when several processes open a database at the same moment', async () => {
    const dir = await tempDir('kiln-migrate-race-');
    cleanup.push(dir);
    const file = path.join(dir, 'kiln.db');
    const fromSource = import.meta.url.endsWith('.ts');
    const child = new URL(`./helpers/sqlite-migrate-child.${fromSource ? 'ts' : 'js'}`, import.meta.url).pathname;
    const startAt = String(Date.now() + 1500);
    const runs = Array.from({ length: 4 }, () =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const proc = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), child, file, startAt], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
        proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
        proc.once('exit', (code) => resolve({ code, out, err }));
      }),
    );
    for (const r of await Promise.all(runs)) {
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out.trim(), String(LATEST + 1));
    }
    const db = new Database(file, { readonly: true });
    const columns = db.prepare<[], { name: string }>('PRAGMA table_info(repos)').all().map((c) => c.name);
    assert.deepEqual(columns.filter((c) => c === 'race_probe'), ['race_probe']);
    db.close();
  });
});
