// Build leases on PostgreSQL: several servers on one database and one data
// directory, with a short KILN_JOB_LEASE. A server that starts leaves alone
// the builds other live servers run (and the queued build whose secrets one
// of them holds, and a source upload another is receiving); a server killed
// with -9 has its build failed as interrupted by the others, without any
// restart.
//
// Server A runs in this process (its builds use an ephemeral BuildKit
// daemon); the servers that start beside it or get killed are child
// processes, so that their pids differ from A's. The killed server builds on
// a BuildKit daemon this test starts (BUILDKIT_HOST), so nothing of its build
// outlives the test.
import assert from 'node:assert/strict';
import { readdir, rm, utimes, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildkitdToml } from '../src/builds/buildkit/daemon-config.js';
import { startEphemeralDaemon, type RunningDaemon } from '../src/builds/buildkit/daemon.js';
import { locateBuildkit } from '../src/builds/buildkit/locate.js';
import { INTERRUPTED } from '../src/builds/leases.js';
import { buildkitEnv, buildkitSkipReason, ended, getBuild, logOf, pushBaseImage, submitBuild, tarGz, testKeys, waitForBuild, type Headers } from './helpers/builds.js';
import { spawnKiln, startKiln, tempDir, type SpawnedKiln, type TestKiln } from './helpers/kiln.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { processesMentioning } from './helpers/processes.js';

const skip = postgresMissing() ?? (await buildkitSkipReason()) ?? false;

describe('build leases on PostgreSQL, several servers', { skip }, () => {
  let pg: TestPostgres;
  let dataDir: string;
  let env: Record<string, string>;
  let a: TestKiln;
  let keys: { admin: Headers; acme: Headers; beta: Headers };
  const children: SpawnedKiln[] = [];
  const daemons: RunningDaemon[] = [];
  let daemonDir = '';

  before(async () => {
    pg = await startPostgres();
    dataDir = await tempDir('kiln-pg-leases-');
    daemonDir = await tempDir('kiln-pg-leases-bk-');
    env = {
      ...buildkitEnv(),
      KILN_DATABASE_URL: await pg.database(),
      KILN_AUTH: 'token',
      KILN_GC_INTERVAL: '0',
      KILN_JOB_LEASE: '2',
      KILN_BUILD_LOG_POLL_SECONDS: '0.05',
    };
    // One build at a time on A, so a second one waits in its queue.
    a = await startKiln({ dataDir, env: { ...env, KILN_WORKERS: '1', KILN_MAX_CONCURRENT_BUILDS: '1' } });
    keys = await testKeys(a);
    await pushBaseImage(a.url, 'library/base', 'latest', keys.admin);
  });
  after(async () => {
    for (const child of children) if (child.proc.exitCode === null && child.proc.signalCode === null) await child.stop();
    await a?.close();
    for (const daemon of daemons) await daemon.stop();
    await pg?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (daemonDir) await rm(daemonDir, { recursive: true, force: true });
  });

  /** Another `kiln serve` on the same database and data directory (no bake workers: A bakes). */
  async function another(extra: Record<string, string> = {}): Promise<SpawnedKiln> {
    const child = await spawnKiln(dataDir, { ...env, KILN_WORKERS: '0', ...extra });
    children.push(child);
    return child;
  }

  const workDirsOf = async (id: string) => (await readdir(a.kiln.stores.dirs.scratchRoot).catch(() => [])).filter((n) => n.startsWith(`build-${id}-`));

  it("a server that starts leaves alone the build A runs and the queued build whose secrets A holds; both end ready on A", async () => {
    const slow = await submitBuild(a.url, { files: { Dockerfile: `FROM ${a.host}/library/base\nRUN sleep 15\n` }, headers: keys.acme });
    await waitForBuild(a.url, slow.id, (v) => v.status === 'building', keys.acme, 60_000);
    for (let i = 0; i < 600 && (await workDirsOf(slow.id)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await workDirsOf(slow.id)).length, 1, "A's builder is at work");
    const secret = await submitBuild(a.url, {
      files: { Dockerfile: 'FROM scratch\nCOPY n.txt /n.txt\n', 'n.txt': 'secret\n' },
      fields: { secrets: JSON.stringify({ token: 'not-shown' }) },
      headers: keys.acme,
    });
    assert.equal(secret.status, 'queued', 'A runs one build at a time');

    const b = await another();
    // B has recovered (it listens) and swept at least once: A's builds are as A left them.
    const seen = await getBuild(b.url, slow.id, keys.acme);
    assert.notEqual(seen.status, 'failed', seen.error ?? '');
    assert.equal((await getBuild(b.url, secret.id, keys.acme)).status, 'queued');
    const record = (await a.kiln.stores.builds.get(slow.id))!;
    assert.equal(record.runner, a.kiln.builds.runnerId, 'held by A');

    const done = await waitForBuild(b.url, slow.id, ended, keys.acme);
    assert.equal(done.status, 'ready', done.error ?? '');
    assert.doesNotMatch(await logOf(b.url, slow.id, keys.acme), /interrupted/);
    const secretDone = await waitForBuild(b.url, secret.id, ended, keys.acme);
    assert.equal(secretDone.status, 'ready', secretDone.error ?? '');
    assert.equal((await a.kiln.stores.builds.get(secret.id))!.runner, a.kiln.builds.runnerId, 'only A, which holds the secret, ran it');
    assert.equal(await b.stop(), 0);
  });

  it('a server killed with -9 while it builds: another fails the build as interrupted, with no restart', async () => {
    const located = await locateBuildkit({ dir: buildkitEnv().KILN_BUILDKIT_DIR, usesPool: false });
    assert.ok('tools' in located);
    const socket = path.join(daemonDir, 'buildkitd.sock');
    const k = await another({ BUILDKIT_HOST: `unix://${socket}` });
    const config = buildkitdToml({ registry: k.host, insecure: true, bridge: { name: 'kbkleases', subnet: '10.213.247.0/24' }, cniBinDir: located.cniBinDir });
    const daemon = await startEphemeralDaemon({ tools: located.tools, dir: daemonDir, config, startTimeoutMs: 60_000, signal: new AbortController().signal });
    daemons.push(daemon);

    const doomed = await submitBuild(k.url, { files: { Dockerfile: `FROM ${k.host}/library/base\nRUN sleep 300\n` }, headers: keys.acme });
    await waitForBuild(a.url, doomed.id, (v) => v.status === 'building', keys.acme, 60_000);
    // K's builder is at work once it has said which daemon it took and buildctl talks to it.
    for (let i = 0; i < 1200 && !/BuildKit daemon from the pool/.test(await logOf(a.url, doomed.id, keys.acme)); i++) await new Promise((r) => setTimeout(r, 50));
    const builders = async () => (await processesMentioning(socket)).filter((p) => !p.startsWith(`${daemon.pid}:`) && /buildctl/.test(p));
    for (let i = 0; i < 1200 && (await builders()).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok((await builders()).length > 0, "K's buildctl runs");
    const held = (await a.kiln.stores.builds.get(doomed.id))!;
    assert.match(held.runner ?? '', new RegExp(`:${k.proc.pid}:`), 'K holds it');

    await k.kill9();
    // K's buildctl outlived it (it is not in K's process group); it is this test's to stop.
    for (const line of await builders()) {
      try {
        process.kill(Number(line.split(':')[0]), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    const failed = await waitForBuild(a.url, doomed.id, ended, keys.acme, 60_000);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error, INTERRUPTED);
    assert.doesNotMatch(failed.error ?? '', new RegExp(`${k.proc.pid}`), 'no pid in what the tenant reads');
    assert.match(await logOf(a.url, doomed.id, keys.acme), /==> build failed: interrupted: the server running it stopped/);
    const jti = (await a.kiln.stores.builds.get(doomed.id))!.tokenJti;
    assert.ok(jti, 'K recorded its build token');
    assert.equal(await a.kiln.auth.tokens.revoke(jti), 'already_revoked', 'the server that ended the build revoked its token');
  });

  it('a build A runs that another server ended (it judged A gone) is stopped on A, and its record is left as that server wrote it', async () => {
    const slow = await submitBuild(a.url, { files: { Dockerfile: `FROM ${a.host}/library/base\nRUN sleep 120\n` }, headers: keys.acme });
    await waitForBuild(a.url, slow.id, (v) => v.status === 'building', keys.acme, 60_000);
    for (let i = 0; i < 600 && (await workDirsOf(slow.id)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await workDirsOf(slow.id)).length, 1, "A's builder is at work");
    // As another server's sweep does it: conditional on the lease it read.
    const store = a.kiln.stores.builds;
    let taken = null;
    for (let i = 0; i < 20 && taken === null; i++) {
      const now = (await store.get(slow.id))!;
      taken = await store.takeOver(slow.id, { runner: now.runner, leaseUntil: now.leaseUntil }, { status: 'failed', error: INTERRUPTED, finishedAt: Date.now() }, ['building', 'pushing']);
    }
    assert.ok(taken, 'the take-over won over the renewals');
    for (let i = 0; i < 1200 && (await workDirsOf(slow.id)).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await workDirsOf(slow.id), [], "A's builder stopped");
    const after = (await store.get(slow.id))!;
    assert.equal(after.status, 'failed');
    assert.equal(after.error, INTERRUPTED);
  });

  it('a source upload A is receiving survives the start of another server, and the build then runs; an abandoned one goes', async () => {
    // Build files nothing wrote to for two hours and no record: a submission that died between its source and its row.
    const abandoned = path.join(dataDir, 'builds', 'abandoned-upload');
    await mkdir(abandoned, { recursive: true });
    await writeFile(path.join(abandoned, 'source.tar.gz'), 'half');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(path.join(abandoned, 'source.tar.gz'), old, old);

    const archive = await tarGz({ Dockerfile: 'FROM scratch\nCOPY n.txt /n.txt\n', 'n.txt': 'slow upload\n' });
    const boundary = 'kiln-leases-boundary';
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="source"; filename="source.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const half = Math.floor(archive.length / 2);
    let sendRest!: () => void;
    const rest = new Promise<void>((r) => (sendRest = r));
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(Buffer.concat([head, archive.subarray(0, half)]));
        await rest;
        controller.enqueue(Buffer.concat([archive.subarray(half), tail]));
        controller.close();
      },
    });
    const scratch = a.kiln.stores.dirs.scratchRoot;
    const before = new Set(await readdir(scratch).catch(() => [] as string[]));
    const posted = fetch(`${a.url}/api/v1/builds`, {
      method: 'POST',
      body,
      duplex: 'half',
      headers: { ...keys.acme, 'content-type': `multipart/form-data; boundary=${boundary}` },
    } as RequestInit);
    // The upload has reached A's scratch space (build-source-<id>), and there is no record yet.
    let pending: string | undefined;
    for (let i = 0; i < 1200 && pending === undefined; i++) {
      for (const name of await readdir(scratch).catch(() => [] as string[])) {
        if (!before.has(name) && name.startsWith('build-source-')) pending = name.slice('build-source-'.length);
      }
      if (pending === undefined) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(pending, 'the upload is on disk');
    assert.equal(await a.kiln.stores.builds.get(pending), null);

    const b = await another();
    assert.ok((await readdir(scratch)).includes(`build-source-${pending}`), 'the upload in flight is left alone');
    assert.ok(!(await readdir(path.join(dataDir, 'builds'))).includes('abandoned-upload'), 'the abandoned one is removed');

    sendRest();
    const res = await posted;
    const text = await res.text();
    assert.equal(res.status, 202, text);
    const { id } = JSON.parse(text) as { id: string };
    assert.equal(id, pending);
    const done = await waitForBuild(b.url, id, ended, keys.acme);
    assert.equal(done.status, 'ready', done.error ?? '');
    assert.equal(await b.stop(), 0);
  });
});
