// Crash safety: kill -9 during parallel pushes, restart on the same data dir,
// and everything that was acknowledged is there, intact; no partial blob is
// visible. Also: SIGTERM drains in-flight requests and exits 0.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { pushUntilKilled } from './helpers/crash.js';
import { spawnKiln, tempDir, type SpawnedKiln } from './helpers/kiln.js';
import { RegistryClient, corruptBlobs, randomBlob, rawRequest, waitFor } from './helpers/registry.js';

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function ownedDir(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function ownedServer(dataDir: string, options: { cwd?: string; env?: Record<string, string> } = {}): Promise<SpawnedKiln> {
  const s = await spawnKiln(dataDir, options.env ?? {}, { cwd: options.cwd });
  cleanups.push(() => s.kill9());
  return s;
}

describe('kill -9 during parallel pushes', () => {
  it('every acknowledged blob, manifest and tag survives; no partial blob is visible', async () => {
    const dataDir = await ownedDir('kiln-crash-');
    const first = await ownedServer(dataDir);
    const c = new RegistryClient(first.url);
    const shared = randomBlob(256 * 1024);

    // A session with one acknowledged chunk, to be resumed after the restart.
    const resumable = randomBlob(100_000);
    const post = await c.fetch('/v2/crash/resume/blobs/uploads/', { method: 'POST' });
    const resumeAt = new URL(post.headers.get('location')!, first.url);
    const firstChunk = await fetch(resumeAt, { method: 'PATCH', body: resumable.bytes.subarray(0, 60_000), headers: { 'content-range': '0-59999' } });
    assert.equal(firstChunk.status, 202);

    const KILL_AFTER = 24;
    const { acked, inFlightAtKill } = await pushUntilKilled(c, first, {
      workers: 6,
      killAfter: KILL_AFTER,
      shared,
      layerSize: (w, i) => 16 * 1024 + ((w * 7919 + i * 104729) % (384 * 1024)),
    });
    assert.ok(acked.manifests.length >= KILL_AFTER);
    assert.ok(inFlightAtKill > 0, 'the kill happened while pushes were in flight');

    // No partial blob at any moment: every file under blobs/ is complete and verified.
    assert.deepEqual(await corruptBlobs(dataDir), []);

    const second = await ownedServer(dataDir);
    const r = new RegistryClient(second.url);
    for (const { repo, blob: b } of acked.blobs) {
      const { res, bytes } = await r.getBlob(repo, b.digest);
      assert.equal(res.status, 200, `${repo} ${b.digest}`);
      assert.ok(bytes.equals(b.bytes), `${repo} ${b.digest} differs`);
    }
    for (const { repo, tag, manifest } of acked.manifests) {
      for (const ref of [tag, manifest.digest]) {
        const { res, bytes } = await r.getManifest(repo, ref);
        assert.equal(res.status, 200, `${repo}:${ref}`);
        assert.equal(res.headers.get('docker-content-digest'), manifest.digest);
        assert.ok(bytes.equals(manifest.bytes));
      }
    }
    const tags = new Map<string, string[]>();
    for (const m of acked.manifests) tags.set(m.repo, [...(tags.get(m.repo) ?? []), m.tag]);
    for (const [repo, want] of tags) {
      const listed = ((await (await r.fetch(`/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags;
      for (const t of want) assert.ok(listed.includes(t), `${repo}:${t} lost`);
    }

    // The session acknowledged before the crash resumes where it was.
    const status = await fetch(new URL(resumeAt.pathname, second.url));
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-59999');
    const rest = await fetch(new URL(resumeAt.pathname, second.url), { method: 'PATCH', body: resumable.bytes.subarray(60_000), headers: { 'content-range': `60000-${resumable.size - 1}` } });
    assert.equal(rest.status, 202);
    const done = new URL(rest.headers.get('location')!, second.url);
    done.searchParams.set('digest', resumable.digest);
    assert.equal((await fetch(done, { method: 'PUT' })).status, 201);
    assert.ok((await r.getBlob('crash/resume', resumable.digest)).bytes.equals(resumable.bytes));

    // And it takes new pushes.
    await r.pushImage('crash/after', 'latest');
    assert.deepEqual(await corruptBlobs(dataDir), []);
    assert.equal(await second.stop(), 0);
  });
});

describe('SIGTERM', () => {
  it('finishes a blob download in flight before exiting 0', async () => {
    const s = await ownedServer(path.join(await ownedDir('kiln-sigterm-get-'), 'data'));
    const c = new RegistryClient(s.url);
    const big = randomBlob(16 * 1024 * 1024);
    assert.equal((await c.pushBlobMonolithic('term/get', big)).status, 201);
    const res = await fetch(new URL(`/v2/term/get/blobs/${big.digest}`, s.url));
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read(); // the body has started; the rest is still on its way
    const exited = s.stop();
    const hash = createHash('sha256').update(first.value!);
    let received = first.value!.length;
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      hash.update(r.value);
      received += r.value.length;
      await new Promise((resolve) => setTimeout(resolve, 1)); // a slow reader keeps the response open across the shutdown
    }
    assert.equal(received, big.size);
    assert.equal(`sha256:${hash.digest('hex')}`, big.digest);
    // Gone promptly once the download is done, not after the 75 s keep-alive timeout of its idle connection.
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(() => resolve('still running after 10 s'), 10_000)))]);
    clearTimeout(timer);
    assert.equal(code, 0);
  });


  it('drains an in-flight upload, refuses new connections, exits 0 and writes only in the data dir', async () => {
    const parent = await ownedDir('kiln-sigterm-');
    const dataDir = path.join(parent, 'data');
    // Working directory, HOME and TMPDIR of the server: nothing may appear there.
    const cwd = path.join(parent, 'cwd');
    const home = path.join(parent, 'home');
    const tmp = path.join(parent, 'tmp');
    for (const d of [cwd, home, tmp]) await mkdir(d);
    const s = await ownedServer(dataDir, { cwd, env: { HOME: home, TMPDIR: tmp } });
    const c = new RegistryClient(s.url);
    await c.pushImage('term/a', 'latest');
    // Bad input of every kind first: none of it may write outside the data dir either.
    const junk = Buffer.from('not what was promised');
    for (const p of ['/v2/../../x/blobs/uploads/', '/v2/%2e%2e/%2e%2e/x/blobs/uploads/', '/v2/term/a/blobs/uploads/..%2f..%2fx', '/v2/Term/A/manifests/latest', '/v2/term/a/manifests/..%2f..%2fx']) {
      for (const method of ['POST', 'PUT', 'PATCH']) await rawRequest(s.url, method, p, { body: junk, headers: { 'content-length': junk.length } });
    }
    await rawRequest(s.url, 'POST', `/v2/term/a/blobs/uploads/?digest=sha256:${'0'.repeat(64)}`, { body: junk, headers: { 'content-length': junk.length } });
    await rawRequest(s.url, 'POST', `/v2/term/a/blobs/uploads/?digest=sha256:${'1'.repeat(64)}`, { body: Buffer.alloc(100_000), headers: { 'content-length': 200_000 }, truncateAt: 50_000 });
    await rawRequest(s.url, 'PUT', '/v2/term/a/manifests/bad', { body: junk, headers: { 'content-length': junk.length, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });

    // More than the store gathers before its first write (1 MiB), so the first part reaches the disk on its own.
    const firstPart = 2 * 1024 * 1024;
    const b = randomBlob(3 * 1024 * 1024);
    const post = await c.fetch('/v2/term/a/blobs/uploads/', { method: 'POST' });
    const uuid = post.headers.get('docker-upload-uuid')!;
    const loc = new URL(post.headers.get('location')!, s.url);
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (ctrl) => void (feed = ctrl) });
    const patch = fetch(loc, { method: 'PATCH', body, duplex: 'half' } as RequestInit);
    feed.enqueue(new Uint8Array(b.bytes.subarray(0, firstPart)));
    // The server has the first bytes on disk: the request is in flight.
    await waitFor(async () => (await stat(path.join(dataDir, 'uploads', uuid))).size > 0, 10_000, 'the first bytes to reach the server');

    const exited = s.stop();
    // New connections are refused once the server is closing.
    await waitFor(
      async () => {
        try {
          // A fresh TCP connection each time (no keep-alive pool).
          const res = await rawRequest(s.url, 'GET', '/v2/');
          return res?.status === 503;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ECONNREFUSED' || code === 'ECONNRESET') return true;
          throw err;
        }
      },
      10_000,
      'the server to stop accepting',
    );
    feed.enqueue(new Uint8Array(b.bytes.subarray(firstPart)));
    feed.close();
    const res = await patch;
    assert.equal(res.status, 202);
    assert.equal(res.headers.get('range'), `0-${b.size - 1}`);
    // Drained means gone promptly, not after the 75 s keep-alive timeout of the client's connection.
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(() => resolve('still running after 10 s'), 10_000)))]);
    clearTimeout(timer);
    assert.equal(code, 0);

    // (tsx, which runs the server when the tests run from source, keeps its compile cache in TMPDIR.)
    for (const d of [cwd, home, tmp]) assert.deepEqual((await readdir(d)).filter((f) => !f.startsWith('tsx-')), [], `${d} was written to`);
    assert.deepEqual(await readdir(parent).then((x) => x.sort()), ['cwd', 'data', 'home', 'tmp']);

    // Restarted, the drained chunk is there and the upload completes.
    const again = await ownedServer(dataDir);
    const status = await fetch(new URL(loc.pathname, again.url));
    assert.equal(status.headers.get('range'), `0-${b.size - 1}`);
    const put = new URL(loc.pathname, again.url);
    put.searchParams.set('digest', b.digest);
    assert.equal((await fetch(put, { method: 'PUT' })).status, 201);
    assert.equal(await again.stop(), 0);
  });
});
