// Builds on PostgreSQL, two servers on one database and one data directory:
// a build created through server A is known to server B (its record, who owns
// it, the build token's reach), and B's log stream follows the lines A's
// build writes to the shared log file and ends when the database says the
// build ended. A's part is played as the running server plays it: the build
// store and the build's log (BuildLog) of A's process; with BuildKit here, real
// builds too: one followed through B, one cancelled through B, and a queued
// build with secrets that only its submitter may start.
import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import { after, afterEach, before, describe, it } from 'node:test';
import { tenantScope } from '../src/auth/tenant.js';
import { BuildLog } from '../src/builds/build-log.js';
import { newBuildId } from '../src/builds/service.js';
import { newBuild } from './contracts/build-store.js';
import { buildkitEnv, buildkitSkipReason, followLog, pushBaseImage, submitBuild, testKeys, waitForBuild, type Headers } from './helpers/builds.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { TEST_CONFIG, blob, descriptor, manifestBlob, OCI_EMPTY, OCI_MANIFEST, type Blob } from './helpers/registry.js';

const skip = postgresMissing() ?? false;
const noBuildkit = skip || ((await buildkitSkipReason()) ?? false);

describe('builds on PostgreSQL, two servers', { skip }, () => {
  let pg: TestPostgres;
  let dataDir: string;
  let a: TestKiln;
  let b: TestKiln;
  let keys: { admin: Headers; acme: Headers; beta: Headers };

  before(async () => {
    pg = await startPostgres();
    const url = await pg.database();
    dataDir = await tempDir('kiln-pg-builds-');
    const env = { ...buildkitEnv(), KILN_DATABASE_URL: url, KILN_AUTH: 'token', KILN_WORKERS: '1', KILN_GC_INTERVAL: '0', KILN_BUILD_LOG_POLL_SECONDS: '0.05' };
    a = await startKiln({ dataDir, env });
    b = await startKiln({ dataDir, env });
    assert.equal(b.kiln.stores.backend, 'postgres');
    keys = await testKeys(a);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await pg?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const handMade: string[] = [];
  // A hand-made build left running would count against its tenant's running limit (KILN_BUILDS_PER_TENANT) on every server.
  afterEach(async () => {
    for (const id of handMade.splice(0)) await a.kiln.stores.builds.update(id, { status: 'failed', error: 'test over', finishedAt: Date.now() }, ['building', 'pushing']);
  });

  /** A build of `tenant` as server A records it when it starts running (held by A, with a lease that outlasts the test). */
  async function buildOnA(tenant: string): Promise<string> {
    const id = newBuildId();
    handMade.push(id);
    await a.kiln.stores.builds.create(newBuild(id, tenant));
    assert.ok(await a.kiln.stores.builds.claim(id, { runner: a.kiln.builds.runnerId, leaseUntil: Date.now() + 3600_000 }, { status: 'building', startedAt: Date.now() }));
    return id;
  }

  const bearer = (token: string): Headers => ({ authorization: `Bearer ${token}` });

  async function pushArtifact(base: string, repo: string, tag: string, headers: Headers): Promise<number> {
    const empty = blob('{}');
    const put = async (b: Blob) =>
      fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes, headers: { ...headers, 'content-type': 'application/octet-stream' } });
    const res = await put(empty);
    if (res.status !== 201) return res.status;
    const manifest = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(empty, TEST_CONFIG), layers: [descriptor(empty, OCI_EMPTY)] });
    const man = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: manifest.bytes, headers: { ...headers, 'content-type': OCI_MANIFEST } });
    return man.status;
  }

  it('a build token from server A reaches exactly its build and cache through server B; B knows who owns the build', async () => {
    const id = await buildOnA('acme');
    const { token, jti } = await a.kiln.auth.tokens.issueBuildToken({ buildId: id, tenant: 'acme', admin: false, globalKey: null, expiresAt: new Date(Date.now() + 3600_000) });
    const other = await buildOnA('acme');
    // The owner's and a stranger's view of the build through B, which never created it.
    const view = await fetch(`${b.url}/api/v1/builds/${id}`, { headers: keys.acme });
    assert.equal(view.status, 200, await view.clone().text());
    assert.equal(((await view.json()) as { tenant: string }).tenant, 'acme');
    assert.equal((await fetch(`${b.url}/api/v1/builds/${id}`, { headers: keys.beta })).status, 404);

    assert.equal(await pushArtifact(b.url, `builds/${id}`, 'latest', bearer(token)), 201, 'its own build repository');
    assert.equal(await pushArtifact(b.url, `cache/${tenantScope('acme')}`, 'buildcache', bearer(token)), 201, 'its tenant cache');
    assert.equal(await pushArtifact(b.url, `builds/${other}`, 'latest', bearer(token)), 403, 'another build of the same tenant');
    assert.equal(await pushArtifact(b.url, `cache/${tenantScope('beta')}`, 'buildcache', bearer(token)), 403, "another tenant's cache");
    assert.equal(await pushArtifact(b.url, 'acme/app', 'v1', bearer(token)), 403, "the tenant's own repositories");
    assert.equal(await pushArtifact(b.url, 'cache/global/node20', 'v1', bearer(token)), 403, 'the global cache, as a tenant build');

    // Pull rights on builds/<id> follow the owner: through B, for acme yes, for beta no.
    assert.equal((await fetch(`${b.url}/v2/builds/${id}/manifests/latest`, { headers: { ...keys.acme, accept: OCI_MANIFEST } })).status, 200);
    assert.equal((await fetch(`${b.url}/v2/builds/${id}/manifests/latest`, { headers: { ...keys.beta, accept: OCI_MANIFEST } })).status, 403);
    // Revoked through A, the token stops working on B.
    assert.equal(await a.kiln.auth.tokens.revoke(jti), 'revoked');
    assert.equal(await pushArtifact(b.url, `builds/${id}`, 'again', bearer(token)), 401);
  });

  it("lists a tenant's builds/<id> repositories in B's catalog when B never heard of them before", async () => {
    const id = await buildOnA('acme');
    const { token } = await a.kiln.auth.tokens.issueBuildToken({ buildId: id, tenant: 'acme', admin: false, globalKey: null, expiresAt: new Date(Date.now() + 3600_000) });
    assert.equal(await pushArtifact(a.url, `builds/${id}`, 'latest', bearer(token)), 201);
    const catalog = async (headers: Headers) => ((await (await fetch(`${b.url}/v2/_catalog`, { headers })).json()) as { repositories: string[] }).repositories;
    assert.ok((await catalog(keys.beta)).every((r) => !r.startsWith('builds/')), 'a stranger sees no builds');
    assert.ok((await catalog(keys.acme)).includes(`builds/${id}`), 'the owner sees it');
    assert.ok((await catalog(keys.admin)).includes(`builds/${id}`));
  });

  it("B's log stream follows the lines A's build writes and ends when the build ends", async () => {
    const id = await buildOnA('acme');
    const files = a.kiln.stores.buildFiles;
    const log = await BuildLog.open(await files.openLocalLog(id));
    log.note(`==> build ${id} started`);
    log.write('step 1/2');

    const seen: string[] = [];
    const waiters: Array<() => void> = [];
    const onLine = (line: string) => {
      seen.push(line);
      for (const w of waiters.splice(0)) w();
    };
    const lineSeen = async (line: string) => {
      while (!seen.includes(line)) await new Promise<void>((r) => waiters.push(r));
    };
    const followed = followLog(b.url, id, { headers: keys.acme, onLine });
    await lineSeen('step 1/2');
    // B's event loop is free meanwhile: it answers other requests while it follows.
    assert.equal((await fetch(`${b.url}/api/v1/builds/${id}`, { headers: keys.acme })).status, 200);
    log.write('step 2/2');
    await lineSeen('step 2/2');
    // As finish() does it: the status first, then the last line.
    assert.ok(await a.kiln.stores.builds.update(id, { status: 'failed', error: 'exit code 1', finishedAt: Date.now() }, ['building']));
    log.note('==> build failed: exit code 1');
    log.end();
    const result = await followed;
    assert.deepEqual(result.lines, [`==> build ${id} started`, 'step 1/2', 'step 2/2', '==> build failed: exit code 1']);
    assert.deepEqual(result.ids, [0, 1, 2, 3]);
    assert.equal(result.end?.status, 'failed');
    assert.equal(result.end?.error, 'exit code 1');

    // A client resuming through B gets the lines after the one it had.
    const resumed = await fetch(`${b.url}/api/v1/builds/${id}/logs?follow=true`, { headers: { ...keys.acme, 'last-event-id': '1' } });
    const text = await resumed.text();
    assert.match(text, /id: 2\ndata: step 2\/2/);
    assert.doesNotMatch(text, /step 1\/2/);
    assert.match(text, /event: end/);
  });

  it('a real build submitted through A is followed to its end through B; B leaves a queued build whose secrets only its submitter holds', { skip: noBuildkit }, async () => {
    // Queued as if another server, alive on another host, had taken it with a secret (held in that server's memory only).
    const secretBuild = newBuildId();
    await a.kiln.stores.builds.create(newBuild(secretBuild, 'acme', { secretIds: ['npmrc'], lease: { runner: 'elsewhere:1:abcd', leaseUntil: Date.now() + 3600_000 } }));
    const accepted = await submitBuild(a.url, { files: { Dockerfile: 'FROM scratch\nCOPY n.txt /n.txt\n', 'n.txt': 'one\n' }, headers: keys.acme });
    const followed = await followLog(b.url, accepted.id, { headers: keys.acme });
    assert.equal(followed.end?.status, 'ready', JSON.stringify(followed.end));
    assert.match(followed.lines[0]!, new RegExp(`^==> build ${accepted.id} queued`));
    assert.equal(followed.lines.at(-1), '==> build ready');
    assert.deepEqual(followed.ids, followed.lines.map((_, i) => i), 'every line once, in order');
    // B ran a build of its own meanwhile, so its queue was looked at; the secret build is left for its submitter.
    const own = await submitBuild(b.url, { files: { Dockerfile: 'FROM scratch\nCOPY n.txt /n.txt\n', 'n.txt': 'two\n' }, headers: keys.acme });
    assert.equal((await waitForBuild(b.url, own.id, (v) => ['ready', 'failed', 'cancelled'].includes(v.status), keys.acme)).status, 'ready');
    assert.equal((await a.kiln.stores.builds.get(secretBuild))!.status, 'queued');
    await fetch(`${b.url}/api/v1/builds/${secretBuild}`, { method: 'DELETE', headers: keys.acme });
  });

  it('a cancel through B stops the builder A runs', { skip: noBuildkit }, async () => {
    await pushBaseImage(a.url, 'library/base', 'latest', keys.admin);
    const slow = await submitBuild(a.url, { files: { Dockerfile: `FROM ${a.host}/library/base\nRUN sleep 120\n` }, headers: keys.acme });
    await waitForBuild(b.url, slow.id, (v) => v.status === 'building', keys.acme, 60_000);
    const scratch = a.kiln.stores.dirs.scratchRoot;
    const workDirs = async () => (await readdir(scratch).catch(() => [])).filter((n) => n.startsWith(`build-${slow.id}-`));
    for (let i = 0; i < 600 && (await workDirs()).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await workDirs()).length, 1, "A's builder is at work");
    const following = followLog(b.url, slow.id, { headers: keys.acme });
    const res = await fetch(`${b.url}/api/v1/builds/${slow.id}`, { method: 'DELETE', headers: keys.acme });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { status: string }).status, 'cancelled');
    const followed = await following;
    assert.equal(followed.end?.status, 'cancelled');
    assert.ok(followed.lines.includes('==> build cancelled: cancelled by request'), followed.lines.join('\n'));
    // A notices the record and stops its builder well before the 120 s sleep would end (its work dir goes).
    for (let i = 0; i < 1200 && (await workDirs()).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await workDirs(), [], "A's builder stopped");
    assert.equal((await a.kiln.stores.builds.get(slow.id))!.status, 'cancelled');
  });
});
