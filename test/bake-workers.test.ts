// Bakes run in worker processes (issue 10): a worker killed with kill -9
// mid-bake loses its lease and the bake runs again while the registry keeps
// answering, and its replacement removes the scratch and cgroups it left; a
// job that keeps killing its worker is failed after KILN_JOB_MAX_ATTEMPTS;
// `kiln serve --workers 0` bakes nothing until a separate `kiln worker` runs
// on its data directory; deleting an image cancels its running bake; bakes
// give way to blob transfers for at most KILN_BAKE_YIELD, and never to
// requests the registry refused.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readdir, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { compress, imageFromBlobs, layerTar, makeImage, sha256, type LayerEntry, type TestImage } from '../src/convert/testing.js';
import { OCI_LAYER_GZIP, OCI_MANIFEST } from '../src/oci/media-types.js';
import { parseWorkerId } from '../src/jobs/worker-id.js';
import { scratchOwner } from '../src/jobs/scratch-sweep.js';
import { bakeCgroupOwner, ownCgroupPath } from '../src/jobs/sandbox/cgroup.js';
import { debugfsCat, fsck } from './bake-helpers.js';
import { basic } from './helpers/auth.js';
import { runKilnCli } from './helpers/cli.js';
import { pushBlob } from './helpers/fixtures.js';
import { repoRoot, spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';

/** Where bakes' memory cgroups are made when Kiln runs as root (the sandbox settings' default). */
const MEMORY_CGROUPS = '/sys/fs/cgroup/memory';

interface ImageView {
  digest: string;
  status: string;
  error: string | null;
  attempts: number;
  progress: { bytesDone: number; bytesTotal: number };
}

async function view(base: string, ref: string, headers: Record<string, string> = {}): Promise<ImageView> {
  const res = await fetch(`${base}/api/v1/images/${ref}`, { headers });
  assert.equal(res.status, 200);
  return (await res.json()) as ImageView;
}

async function until(base: string, ref: string, done: (v: ImageView) => boolean, timeoutMs = 120_000, headers: Record<string, string> = {}): Promise<ImageView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await view(base, ref, headers);
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting on ${ref}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function pushImage(base: string, repo: string, tag: string, image: TestImage): Promise<string> {
  for (const [digest, bytes] of image.blobs) assert.equal((await pushBlob(base, repo, digest, bytes)).status, 201);
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: image.manifestBytes, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(res.status, 201, await res.text());
  return res.headers.get('docker-content-digest')!;
}

/** Layers of incompressible data, so a bake takes long enough to be interrupted. */
async function bigImage(layers: number, mib: number): Promise<TestImage> {
  const specs = [];
  for (let i = 0; i < layers; i++) specs.push({ tar: await layerTar([{ name: `data/blob${i}.bin`, content: randomBytes(mib << 20) }]), compression: 'gzip' as const });
  return makeImage(specs);
}

/** The pid of the worker holding a bake, read from the job's lease. */
function leaseHolderPid(dataDir: string, digest: string): number | null {
  const db = new Database(path.join(dataDir, 'kiln.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare<[string], { lease_owner: string | null }>(`SELECT lease_owner FROM jobs WHERE key = ? AND status = 'running'`).get(`bake:${digest}`);
    return row?.lease_owner ? (parseWorkerId(row.lease_owner)?.pid ?? null) : null;
  } finally {
    db.close();
  }
}

/** Polls `/v2/` until stopped; resolves with every failure seen. */
function pollRegistry(base: string): { stop(): Promise<string[]> } {
  let running = true;
  const failures: string[] = [];
  let count = 0;
  const loop = (async () => {
    while (running) {
      try {
        const res = await fetch(`${base}/v2/`, { signal: AbortSignal.timeout(10_000) });
        if (res.status !== 200) failures.push(`status ${res.status}`);
        await res.arrayBuffer();
        count++;
      } catch (err) {
        failures.push(String(err));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      assert.ok(count > 0, 'the registry was polled');
      return failures;
    },
  };
}

async function withServer(env: Record<string, string>, body: (server: SpawnedKiln, dataDir: string) => Promise<void>): Promise<void> {
  const dataDir = await tempDir();
  const server = await spawnKiln(dataDir, env);
  try {
    await body(server, dataDir);
  } finally {
    assert.equal(await server.stop(), 0);
    await rm(dataDir, { recursive: true, force: true });
  }
}

/**
 * What the scratch root holds besides the bake process the worker keeps
 * started for its next job (src/jobs/sandbox/warm.ts): that one's directory
 * holds a single empty disk file, never anything of a bake.
 */
async function bakeScratch(scratch: string): Promise<string[]> {
  const left: string[] = [];
  for (const name of await readdir(scratch)) {
    if (name.startsWith('warm-')) {
      // Empty for a moment while it is made or handed to a job.
      const inside = await readdir(path.join(scratch, name)).catch(() => []);
      assert.ok(inside.length === 0 || (inside.length === 1 && inside[0] === 'disk'), `a spare's directory holds its disk file only: ${inside.join(', ')}`);
      const size = inside.length === 0 ? 0 : await stat(path.join(scratch, name, 'disk')).then((s) => s.size, () => 0);
      assert.equal(size, 0, 'and the spare has written nothing');
      continue;
    }
    left.push(name);
  }
  return left;
}

describe('bake worker processes', () => {
  it('runs a bake again when its worker is killed with kill -9, while the registry keeps answering', async () => {
    await withServer({ KILN_WORKERS: '1' }, async (server, dataDir) => {
      const scratch = await tempDir();
      try {
        const digest = await pushImage(server.url, 'acme/crash', 'v1', await bigImage(3, 24));
        const poll = pollRegistry(server.url);
        await until(server.url, digest, (v) => v.status === 'baking' && v.progress.bytesDone > 0);
        const pid = leaseHolderPid(dataDir, digest);
        assert.ok(pid, 'the running bake has a worker');
        assert.notEqual(pid, server.proc.pid, 'the bake does not run in the API process');
        process.kill(pid, 'SIGKILL');
        const done = await until(server.url, digest, (v) => v.status === 'ready' || v.status === 'failed');
        assert.equal(done.status, 'ready', done.error ?? '');
        assert.equal(done.attempts, 2, 'the killed attempt counts, the second one finished');
        assert.deepEqual(await poll.stop(), [], 'no client saw an error');
        // The worker started in its place removed what the killed one left: its bake's work directory (a partial disk) and its cgroups.
        const ofKilled = (names: string[]) => names.filter((name) => (scratchOwner(name) ?? bakeCgroupOwner(name))?.pid === pid);
        assert.deepEqual(ofKilled(await readdir(path.join(dataDir, 'tmp'))), [], 'no scratch of the killed worker');
        const own = ownCgroupPath(readFileSync('/proc/self/cgroup', 'utf8'), 'memory');
        if (own !== null && existsSync(path.join(MEMORY_CGROUPS, own))) assert.deepEqual(ofKilled(await readdir(path.join(MEMORY_CGROUPS, own))), [], 'no cgroup of the killed worker');
        const res = await fetch(`${server.url}/api/v1/images/${digest}/disk`);
        const disk = path.join(scratch, 'crash.ext4');
        await writeFile(disk, Buffer.from(await res.arrayBuffer()));
        const check = fsck(disk);
        assert.ok(check.clean, check.output);
        assert.equal(debugfsCat(disk, '/data/blob2.bin').length, 24 << 20);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });
  });

  it('fails a job that keeps killing its worker after KILN_JOB_MAX_ATTEMPTS, and the server stays up', async () => {
    await withServer({ KILN_WORKERS: '1', KILN_JOB_MAX_ATTEMPTS: '2' }, async (server, dataDir) => {
      const digest = await pushImage(server.url, 'acme/poison', 'v1', await bigImage(2, 24));
      const killed = new Set<number>();
      for (;;) {
        const v = await view(server.url, digest);
        if (v.status === 'failed' || v.status === 'ready') break;
        const pid = v.status === 'baking' ? leaseHolderPid(dataDir, digest) : null;
        // A poison job: whoever holds it dies.
        if (pid && !killed.has(pid)) {
          process.kill(pid, 'SIGKILL');
          killed.add(pid);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      const v = await view(server.url, digest);
      assert.equal(v.status, 'failed');
      assert.equal(killed.size, 2);
      assert.match(v.error ?? '', /KILN_JOB_MAX_ATTEMPTS=2/);
      assert.doesNotMatch(v.error ?? '', new RegExp(`${dataDir}|pid`));
      assert.equal((await fetch(`${server.url}/v2/`)).status, 200);
      // The pool started a fresh worker, which bakes the next image.
      const small = makeImage([{ tar: await layerTar([{ name: 'ok.txt', content: 'ok\n' }]), compression: 'gzip' }]);
      const next = await pushImage(server.url, 'acme/after', 'v1', small);
      assert.equal((await until(server.url, next, (x) => x.status === 'ready' || x.status === 'failed')).status, 'ready');
    });
  });

  it('bakes nothing with --workers 0 until a kiln worker runs on the data directory', async () => {
    await withServer({ KILN_WORKERS: '0' }, async (server, dataDir) => {
      const image = makeImage([{ tar: await layerTar([{ name: 'w.txt', content: 'worker\n' }]), compression: 'gzip' }]);
      const digest = await pushImage(server.url, 'acme/split', 'v1', image);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await view(server.url, digest)).status, 'pending', 'no worker, no bake');
      const worker = spawn(process.execPath, [path.join(repoRoot, 'bin', 'kiln.js'), 'worker', '--data-dir', dataDir, '--log-level', 'warn'], { stdio: 'inherit' });
      const exited = new Promise((resolve) => worker.once('exit', (code) => resolve(code)));
      try {
        const v = await until(server.url, digest, (x) => x.status === 'ready' || x.status === 'failed');
        assert.equal(v.status, 'ready', v.error ?? '');
      } finally {
        worker.kill('SIGTERM');
        assert.equal(await exited, 0);
      }
    });
  });

  it('refuses to run kiln worker on a directory that is not a Kiln data directory', async () => {
    const dir = await tempDir();
    try {
      const worker = spawn(process.execPath, [path.join(repoRoot, 'bin', 'kiln.js'), 'worker', '--data-dir', path.join(dir, 'nothing-here')], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      worker.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise((resolve) => worker.once('exit', resolve));
      assert.equal(code, 1);
      assert.match(stderr, /not a Kiln data directory/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cancels a running bake when its image is deleted, and leaves no scratch or disk', async () => {
    await withServer({ KILN_WORKERS: '1' }, async (server, dataDir) => {
      const digest = await pushImage(server.url, 'acme/cancel', 'v1', await bigImage(3, 24));
      await until(server.url, digest, (v) => v.status === 'baking' && v.progress.bytesDone > 0);
      const res = await fetch(`${server.url}/api/v1/images/${digest}`, { method: 'DELETE' });
      assert.equal(res.status, 204, await res.text());
      assert.equal((await fetch(`${server.url}/api/v1/images/${digest}`)).status, 404);
      assert.deepEqual(await readdir(path.join(dataDir, 'images')), []);
      assert.deepEqual(await bakeScratch(path.join(dataDir, 'tmp')), [], 'the bake scratch is gone');
      assert.equal(leaseHolderPid(dataDir, digest), null);
    });
  });

  it('keeps answering while a worker grinds through a symlink-hop layer, which fails naming its limit', async () => {
    await withServer({ KILN_WORKERS: '1' }, async (server) => {
      const symlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'symlink', linkname });
      const wide = [{ name: 'd/', type: 'directory' as const }, symlink('w', `${'./'.repeat(2000)}d`), symlink('d/w', `../${'./'.repeat(2000)}d`)];
      const deep = `w/${'w/'.repeat(38)}`;
      const entries = Array.from({ length: 300 }, (_, i): LayerEntry => ({ name: `${deep}f${i}`, content: 'x' }));
      const image = makeImage([{ tar: await layerTar([...wide, ...entries]), compression: 'gzip' }]);
      const poll = pollRegistry(server.url);
      const digest = await pushImage(server.url, 'acme/hops', 'v1', image);
      const v = await until(server.url, digest, (x) => x.status === 'ready' || x.status === 'failed');
      assert.deepEqual(await poll.stop(), []);
      assert.equal(v.status, 'failed');
      assert.match(v.error ?? '', /KILN_BAKE_MAX_RESOLVE_STEPS/);
    });
  });

  it('fails a manifest that lists one layer 20,000 times, naming KILN_BAKE_MAX_LAYERS', async () => {
    await withServer({ KILN_WORKERS: '1' }, async (server) => {
      const tar = await layerTar([{ name: 'x', content: 'x' }]);
      const layer = { blob: compress(tar, 'gzip'), mediaType: OCI_LAYER_GZIP, diffId: sha256(tar) };
      const image = imageFromBlobs(Array.from({ length: 20_000 }, () => layer));
      const digest = await pushImage(server.url, 'acme/repeat', 'v1', image);
      const v = await until(server.url, digest, (x) => x.status === 'ready' || x.status === 'failed');
      assert.equal(v.status, 'failed');
      assert.match(v.error ?? '', /KILN_BAKE_MAX_LAYERS/);
    });
  });
});

/** Stopped (SIGSTOP) bake processes below `root`: other servers on the machine (parallel test files) pause bakes of their own. */
function stoppedBakeProcesses(root: number): number[] {
  const parents = new Map<number, number>();
  const stopped: number[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const fields = readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ');
      parents.set(Number(name), Number(fields[1]));
      if (fields[0] === 'T' && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('bake-entry.js')) stopped.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  const below = (pid: number) => {
    for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) if (p === root) return true;
    return false;
  };
  return stopped.filter(below);
}

/** A blob download that reads one chunk and then stalls, holding the transfer open until `end`. */
async function stalledDownload(url: string): Promise<{ end(): void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      assert.equal(res.statusCode, 200);
      res.once('data', () => {
        res.pause();
        resolve({ end: () => req.destroy() });
      });
    });
    req.once('error', reject);
  });
}

describe('bakes give way to blob transfers (KILN_BAKE_YIELD)', () => {
  const BIG = randomBytes(64 << 20);

  it('a bake is paused while a download runs and finishes once it ends', async () => {
    await withServer({ KILN_WORKERS: '1', KILN_BAKE_YIELD: '10m' }, async (server) => {
      assert.equal((await pushBlob(server.url, 'acme/big', sha256(BIG), BIG)).status, 201);
      const download = await stalledDownload(`${server.url}/v2/acme/big/blobs/${sha256(BIG)}`);
      let ended = false;
      try {
        const digest = await pushImage(server.url, 'acme/app', 'v1', await makeImage([{ tar: await layerTar([{ name: 'etc/hello', content: 'hi\n' }]), compression: 'gzip' }]));
        await until(server.url, digest, (v) => v.status === 'baking');
        // Held: the bake's processes are stopped, and it stays unfinished however long the download lasts.
        const deadline = Date.now() + 30_000;
        while (stoppedBakeProcesses(server.proc.pid!).length === 0) {
          assert.ok(Date.now() < deadline, 'the bake processes were stopped');
          await new Promise((r) => setTimeout(r, 50));
        }
        await new Promise((r) => setTimeout(r, 3000));
        assert.equal((await view(server.url, digest)).status, 'baking', 'no progress while the registry moves a blob');
        // Small requests still answer at once.
        assert.equal((await fetch(`${server.url}/v2/acme/app/manifests/v1`, { method: 'HEAD' })).status, 200);
        download.end();
        ended = true;
        const done = await until(server.url, digest, (v) => v.status !== 'baking' && v.status !== 'pending');
        assert.equal(done.status, 'ready', done.error ?? '');
        assert.deepEqual(stoppedBakeProcesses(server.proc.pid!), [], 'nothing left stopped');
      } finally {
        if (!ended) download.end();
      }
    });
  });

  it('gives way for KILN_BAKE_YIELD at most, and paused time does not count against KILN_BAKE_TIMEOUT', async () => {
    await withServer({ KILN_WORKERS: '1', KILN_BAKE_YIELD: '4s', KILN_BAKE_TIMEOUT: '3s' }, async (server) => {
      assert.equal((await pushBlob(server.url, 'acme/big', sha256(BIG), BIG)).status, 201);
      const download = await stalledDownload(`${server.url}/v2/acme/big/blobs/${sha256(BIG)}`);
      try {
        const pushedAt = Date.now();
        const digest = await pushImage(server.url, 'acme/app', 'v1', await makeImage([{ tar: await layerTar([{ name: 'etc/hello', content: 'hi\n' }]), compression: 'gzip' }]));
        // The download never ends: the bake runs once its 4 s are spent, past its 3 s timeout in wall time.
        const done = await until(server.url, digest, (v) => v.status !== 'baking' && v.status !== 'pending');
        assert.equal(done.status, 'ready', done.error ?? '');
        assert.ok(Date.now() - pushedAt >= 4000, `it waited its budget (${Date.now() - pushedAt} ms)`);
      } finally {
        download.end();
      }
    });
  });

  it('a refused request holds no bake: anonymous clients asking a token-auth registry for blobs', async () => {
    const dataDir = await tempDir();
    const created = await runKilnCli(['token', 'create', '--admin', '--data-dir', dataDir, '--init']);
    assert.equal(created.code, 0, created.stderr);
    const auth = { authorization: basic('admin', created.stdout.trim()) };
    const server = await spawnKiln(dataDir, { KILN_WORKERS: '1', KILN_AUTH: 'token', KILN_BAKE_YIELD: '10m' });
    try {
      const image = await makeImage([{ tar: await layerTar([{ name: 'etc/hello', content: 'hi\n' }]), compression: 'gzip' }]);
      const blobUrl = `${server.url}/v2/acme/app/blobs/${image.manifest.layers[0]!.digest}`;
      // Four clients without credentials, one request after another, for as long as the bake takes.
      let hammering = true;
      const refusals: number[] = [];
      const clients = Array.from({ length: 4 }, async () => {
        while (hammering) {
          const res = await fetch(blobUrl);
          await res.arrayBuffer();
          refusals.push(res.status);
        }
      });
      let stoppedSeen = false;
      const watch = setInterval(() => (stoppedSeen ||= stoppedBakeProcesses(server.proc.pid!).length > 0), 20);
      try {
        for (const [digest, bytes] of image.blobs) assert.equal((await pushBlob(server.url, 'acme/app', digest, bytes, auth)).status, 201);
        // The admin's own uploads are transfers: the registry turns quiet 250 ms after the last (src/registry/transfer-activity.ts).
        await new Promise((r) => setTimeout(r, 1000));
        const put = await fetch(`${server.url}/v2/acme/app/manifests/v1`, { method: 'PUT', body: image.manifestBytes, headers: { ...auth, 'content-type': OCI_MANIFEST } });
        assert.equal(put.status, 201, await put.text());
        const digest = put.headers.get('docker-content-digest')!;
        const done = await until(server.url, digest, (v) => v.status !== 'baking' && v.status !== 'pending', 60_000, auth);
        assert.equal(done.status, 'ready', done.error ?? '');
      } finally {
        clearInterval(watch);
        hammering = false;
        await Promise.all(clients);
      }
      assert.ok(refusals.length > 0 && refusals.every((status) => status === 401), `every anonymous request was refused (${[...new Set(refusals)].join(', ')})`);
      assert.equal(stoppedSeen, false, 'no bake process was stopped for a refused request');
    } finally {
      assert.equal(await server.stop(), 0);
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
