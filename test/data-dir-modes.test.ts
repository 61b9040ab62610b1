// The data directory is private to the server's user: directories 0700,
// files 0600 (blobs, uploads, the database and its WAL, the signing key),
// also when the directory was made by an older Kiln with 0755/0644.
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { RegistryClient, randomBlob } from './helpers/registry.js';

let work: string;
let dataDir: string;
let server: TestKiln;

/** Every path under `root` (itself included) whose mode gives group or others any access. */
async function openToOthers(root: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (p: string) => {
    const s = await stat(p);
    if ((s.mode & 0o077) !== 0) found.push(`${path.relative(root, p) || '.'} ${(s.mode & 0o777).toString(8)}`);
    if (s.isDirectory()) for (const name of await readdir(p)) await visit(path.join(p, name));
  };
  await visit(root);
  return found;
}

before(async () => {
  work = await tempDir('kiln-modes-');
  dataDir = path.join(work, 'data');
  // What an older Kiln left: a world-readable directory and database.
  await mkdir(path.join(dataDir, 'blobs'), { recursive: true, mode: 0o755 });
  new Database(path.join(dataDir, 'kiln.db')).close();
  server = await startKiln({ dataDir, env: { KILN_AUTH: 'token' } });
});

after(async () => {
  await server?.close();
  await rm(work, { recursive: true, force: true });
});

describe('data directory modes', () => {
  it('directories are 0700 and files 0600 after pushes, an upload in progress and a key', async () => {
    const admin = (await server.kiln.auth.tokens.createApiKey({ admin: true, ttlSeconds: 600 })).token;
    const headers = { authorization: `Bearer ${admin}` };
    const reg = new RegistryClient(server.url);
    const b = randomBlob(4096);
    const put = await reg.fetch(`/v2/acme/app/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes, headers });
    assert.equal(put.status, 201, await put.text());
    const post = await reg.fetch('/v2/acme/app/blobs/uploads/', { method: 'POST', headers });
    const patch = await fetch(new URL(post.headers.get('location')!, server.url), { method: 'PATCH', body: Buffer.alloc(100), headers });
    assert.equal(patch.status, 202);

    assert.deepEqual(await openToOthers(dataDir), []);
    // The checks above looked at real files.
    const files = await readdir(dataDir);
    for (const name of ['kiln.db', 'kiln.db-wal', 'auth-key.json', 'blobs', 'uploads']) assert.ok(files.includes(name), `no ${name} in ${files.join(', ')}`);
    assert.equal((await readdir(path.join(dataDir, 'uploads'))).length, 1);
  });
});
