// Builds through Kiln's own server, with the buildah backend: POST a source
// tree, the build runs FROM an image pushed to Kiln, pushes into Kiln, the
// disk bakes and verifies. Also the queue (FIFO, positions, restart), cancel,
// timeout, logs over SSE, the CLI, and with token auth the two cache tiers,
// tenant isolation and what a build token may push.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import tarStream from 'tar-stream';
import { tenantScope } from '../src/auth/tenant.js';
import type { BuildView } from '../src/builds/service.js';
import { isOnPath } from '../src/builds/process.js';
import { parseEvent } from '../src/cli/build-command.js';
import { runKilnCli } from './helpers/cli.js';
import { buildkitFixtures, startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { processesMentioning } from './helpers/processes.js';

const run = promisify(execFile);

async function whyNot(): Promise<string | null> {
  if (process.platform !== 'linux') return 'buildah runs on Linux only';
  if (process.getuid?.() !== 0) return 'buildah with chroot isolation and vfs needs root here';
  for (const tool of ['buildah', 'e2fsck', 'debugfs', 'mkfs.ext4']) {
    if (!(await isOnPath(tool, `${process.env.PATH}:/usr/sbin:/sbin`))) return `${tool} is not installed`;
  }
  return null;
}

const skipReason = await whyNot();
if (skipReason !== null) console.log(`builds-service skipped: ${skipReason}`);

// ---- helpers -------------------------------------------------------------------

type Headers = Record<string, string>;

/** A gzipped tar of `files` (path → content). */
async function tarGz(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mode: 0o644 }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

interface Submit {
  files: Record<string, string | Buffer>;
  fields?: Record<string, string>;
  headers?: Headers;
}

async function postBuild(url: string, submit: Submit): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(submit.fields ?? {})) form.set(name, value);
  form.set('source', new Blob([await tarGz(submit.files)]), 'source.tar.gz');
  return fetch(`${url}/api/v1/builds`, { method: 'POST', body: form, headers: submit.headers });
}

async function submitBuild(url: string, submit: Submit): Promise<{ id: string; status: string; queue_position: number }> {
  const res = await postBuild(url, submit);
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text) as { id: string; status: string; queue_position: number };
}

async function getBuild(url: string, id: string, headers: Headers = {}): Promise<BuildView> {
  const res = await fetch(`${url}/api/v1/builds/${id}`, { headers });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as BuildView;
}

async function waitForBuild(url: string, id: string, until: (b: BuildView) => boolean, headers: Headers = {}, timeoutMs = 60_000): Promise<BuildView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const build = await getBuild(url, id, headers);
    if (until(build)) return build;
    if (Date.now() > deadline) assert.fail(`build ${id} is ${build.status} (${build.error}) after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ended = (b: BuildView) => ['ready', 'failed', 'cancelled'].includes(b.status);

interface FollowedLog {
  lines: string[];
  ids: number[];
  end: BuildView | null;
}

/** Follows the log over SSE until the `end` event (or `stopWhen` says so). */
async function followLog(url: string, id: string, options: { headers?: Headers; onLine?: (line: string) => void } = {}): Promise<FollowedLog> {
  const res = await fetch(`${url}/api/v1/builds/${id}/logs?follow=true`, { headers: options.headers });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const out: FollowedLog = { lines: [], ids: [], end: null };
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body!) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let split: number;
    while ((split = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, split);
      buffer = buffer.slice(split + 2);
      const event = parseEvent(block);
      if (event.type === 'end') {
        out.end = JSON.parse(event.data) as BuildView;
      } else if (event.hasData) {
        out.lines.push(event.data);
        const idLine = /^id: (\d+)$/m.exec(block);
        if (idLine) out.ids.push(Number(idLine[1]));
        options.onLine?.(event.data);
      }
    }
  }
  return out;
}

/** Pushes the fixture busybox base image (one layer) as `repo:tag`; returns its digest. */
async function pushBaseImage(url: string, repo: string, tag: string, headers: Headers = {}): Promise<string> {
  const manifest = await readFile(path.join(buildkitFixtures, 'base-image.manifest.json'));
  const parsed = JSON.parse(manifest.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const digest of [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]) {
    const body = await readFile(path.join(buildkitFixtures, 'blobs', 'sha256', digest.slice('sha256:'.length)));
    const res = await fetch(`${url}/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', body, headers: { ...headers, 'content-type': 'application/octet-stream' } });
    assert.equal(res.status, 201, `blob to ${repo}: ${await res.text()}`);
  }
  const put = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: { ...headers, 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(put.status, 201, await put.text());
  return put.headers.get('docker-content-digest')!;
}

async function tagsOf(url: string, repo: string, headers: Headers = {}): Promise<string[]> {
  const res = await fetch(`${url}/v2/${repo}/tags/list`, { headers });
  const text = await res.text();
  if (res.status === 404) return [];
  assert.equal(res.status, 200, text);
  return [...((JSON.parse(text) as { tags: string[] | null }).tags ?? [])].sort();
}

/** Nothing of the build's private work dir (buildah storage, the Docker config with its token) is left. */
async function assertWorkDirGone(kiln: TestKiln, id: string): Promise<void> {
  const left = (await readdir(kiln.kiln.dirs.scratchRoot).catch(() => [] as string[])).filter((n) => n.includes(id));
  assert.deepEqual(left, [], 'the build work dir is removed');
}

const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\./;

// A Dockerfile FROM a Kiln image with RUN and COPY. No ARG after FROM: buildah 1.28
// cannot take such a step from a remote cache (see buildah-backend.ts).
const dockerfileFrom = (base: string, extra = '') =>
  [
    `FROM ${base}`,
    'RUN mkdir -p /app && echo hello > /app/greeting.txt',
    'COPY data.txt /app/data.txt',
    'RUN cat /app/data.txt /app/greeting.txt > /app/combined.txt',
    extra,
  ].join('\n');

// ---- auth off ------------------------------------------------------------------------

describe('builds on Kiln, auth off', { skip: skipReason ?? false }, () => {
  let kiln: TestKiln;
  let baseDigest = '';
  let scratch = '';

  before(async () => {
    scratch = await tempDir('kiln-builds-test-');
    kiln = await startKiln({ env: { KILN_BUILD_MAX_SOURCE_BYTES: String(1024 * 1024) } });
    baseDigest = await pushBaseImage(kiln.url, 'library/base', 'latest');
  });

  after(async () => {
    await kiln?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('builds FROM a Kiln image with RUN and COPY, streams the log, and ends ready with a disk that verifies', async () => {
    const files = {
      Dockerfile: dockerfileFrom(`${kiln.host}/library/base`),
      'data.txt': 'data from the source\n',
      'package-lock.json': '{"lockfileVersion":3}\n',
    };
    const archive = await tarGz(files);
    const accepted = await submitBuild(kiln.url, { files });
    assert.equal(accepted.status, 'queued');
    assert.equal(accepted.queue_position, 1);
    assert.match(accepted.id, /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/);

    const followed = await followLog(kiln.url, accepted.id);
    assert.ok(followed.end, 'the stream ends with an end event');
    assert.equal(followed.end.status, 'ready');
    assert.ok(followed.lines.some((l) => l.startsWith('STEP 2/4: RUN mkdir -p /app')), followed.lines.join('\n'));
    assert.ok(followed.lines.some((l) => l.startsWith(`==> FROM ${kiln.host}/library/base: library/base@${baseDigest}`)));
    assert.equal(followed.lines.at(-1), '==> build ready');
    assert.deepEqual(followed.ids, followed.lines.map((_, i) => i), 'every line once, in order');

    const build = await getBuild(kiln.url, accepted.id);
    assert.equal(build.status, 'ready');
    assert.equal(build.error, null);
    assert.equal(build.admin, true, 'with auth off every build is an admin build');
    assert.equal(build.tenant, null);
    assert.match(build.image.digest ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal(build.image.name, `${kiln.host}/builds/${accepted.id}`);
    assert.equal(build.image.disk.status, 'ready');
    assert.ok((build.image.disk.size_bytes ?? 0) > 0);
    assert.deepEqual(build.cache, { imported: [], exported: null, use: { total_steps: 3, cached_steps: 0 } });
    for (const key of ['queued_s', 'building_s', 'pushing_s', 'baking_s', 'total_s'] as const) {
      assert.equal(typeof build.durations[key], 'number', key);
    }
    const provenance = build.provenance as {
      source: { sha256: string };
      lockfiles: Array<{ path: string; sha256: string }>;
      baseImages: Array<{ ref: string; digest: string | null }>;
      builder: { name: string; version: string };
      cache: { imported: string[]; exported: string | null };
    };
    assert.equal(provenance.source.sha256, `sha256:${createHash('sha256').update(archive).digest('hex')}`);
    assert.deepEqual(provenance.lockfiles, [
      { path: 'package-lock.json', sha256: `sha256:${createHash('sha256').update(files['package-lock.json']).digest('hex')}` },
    ]);
    assert.deepEqual(provenance.baseImages, [{ ref: `${kiln.host}/library/base`, digest: baseDigest }]);
    assert.equal(provenance.builder.name, 'buildah');
    assert.match(provenance.builder.version, /^\d+\.\d+/);

    // The stored log is what the stream carried.
    const plain = await fetch(`${kiln.url}/api/v1/builds/${accepted.id}/logs`);
    assert.equal(plain.status, 200);
    assert.equal(await plain.text(), followed.lines.map((l) => `${l}\n`).join(''));
    // Following an ended build replays it and ends at once.
    const again = await followLog(kiln.url, accepted.id);
    assert.deepEqual(again.lines, followed.lines);
    assert.equal(again.end?.status, 'ready');

    // The disk: a clean ext4 holding what RUN and COPY made.
    const disk = await fetch(`${kiln.url}/api/v1/images/${build.image.digest}/disk`);
    assert.equal(disk.status, 200);
    const diskFile = path.join(scratch, 'disk.ext4');
    await writeFile(diskFile, Buffer.from(await disk.arrayBuffer()));
    await run('e2fsck', ['-fn', diskFile]);
    const { stdout } = await run('debugfs', ['-R', 'cat /app/combined.txt', diskFile]);
    assert.equal(stdout, 'data from the source\nhello\n');
    const copied = await run('debugfs', ['-R', 'cat /app/data.txt', diskFile]);
    assert.equal(copied.stdout, 'data from the source\n');
    await assertWorkDirGone(kiln, accepted.id);
    assert.ok(JSON.parse(await readFile(path.join(kiln.dataDir, 'builds', accepted.id, 'result.json'), 'utf8')).status === 'ready');
  });

  it('refuses requests it cannot build, saying why', async () => {
    const noDockerfile = await postBuild(kiln.url, { files: { 'data.txt': 'x' } });
    assert.equal(noDockerfile.status, 400);
    assert.match(((await noDockerfile.json()) as { error: { message: string } }).error.message, /no Dockerfile/);

    const badArgs = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n' }, fields: { build_args: '["x"]' } });
    assert.equal(badArgs.status, 400);
    const badKey = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n' }, fields: { global_cache_key: 'No Way!' } });
    assert.equal(badKey.status, 400);
    assert.match(((await badKey.json()) as { error: { message: string } }).error.message, /global cache key/);
    const badTimeout = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n' }, fields: { timeout_seconds: '-3' } });
    assert.equal(badTimeout.status, 400);

    const json = await fetch(`${kiln.url}/api/v1/builds`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(json.status, 400);
    assert.match(((await json.json()) as { error: { message: string } }).error.message, /multipart/);

    const missingBase = await postBuild(kiln.url, { files: { Dockerfile: `FROM ${kiln.host}/library/nothing:1\nRUN true\n` } });
    assert.equal(missingBase.status, 202, 'the base image is looked up when the build runs');
    const failed = await waitForBuild(kiln.url, ((await missingBase.json()) as { id: string }).id, ended);
    assert.equal(failed.status, 'failed');
    assert.match(failed.error ?? '', /library\/nothing:1 is not in this registry/);

    const big = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n', 'big.bin': randomBytes(2 * 1024 * 1024) } });
    assert.equal(big.status, 413);

    assert.equal((await fetch(`${kiln.url}/api/v1/builds/no-such-build`)).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/no-such-build`, { method: 'DELETE' })).status, 404);
    // Nothing of the refused requests stays behind.
    const kept = await readdir(path.join(kiln.dataDir, 'builds'));
    const known = new Set(((await (await fetch(`${kiln.url}/api/v1/builds`)).json()) as { builds: BuildView[] }).builds.map((b) => b.id));
    assert.deepEqual(kept.filter((id) => !known.has(id)), []);
  });

  it('cancelling kills the builder and ends the build cancelled', async () => {
    const accepted = await submitBuild(kiln.url, { files: { Dockerfile: `FROM ${kiln.host}/library/base\nRUN sleep 120\n` } });
    let cancelledAt = 0;
    const followed = await followLog(kiln.url, accepted.id, {
      onLine: (line) => {
        if (line.startsWith('STEP 2/2: RUN sleep 120')) {
          cancelledAt = Date.now();
          void fetch(`${kiln.url}/api/v1/builds/${accepted.id}`, { method: 'DELETE' }).then(async (res) => {
            assert.equal(res.status, 200, await res.text());
          });
        }
      },
    });
    assert.ok(cancelledAt > 0, 'the RUN step started');
    assert.equal(followed.end?.status, 'cancelled');
    assert.ok(Date.now() - cancelledAt < 15_000, 'the builder stopped promptly');
    const build = await getBuild(kiln.url, accepted.id);
    assert.equal(build.status, 'cancelled');
    assert.equal(build.error, 'cancelled by request');
    assert.deepEqual(await processesMentioning(`build-${accepted.id}-`), [], 'no process of the build is left');
    await assertWorkDirGone(kiln, accepted.id);
    const again = await fetch(`${kiln.url}/api/v1/builds/${accepted.id}`, { method: 'DELETE' });
    assert.equal(again.status, 409, 'an ended build cannot be cancelled');
  });

  it('a build that runs past its timeout is killed and fails saying so', async () => {
    const started = Date.now();
    const accepted = await submitBuild(kiln.url, {
      files: { Dockerfile: `FROM ${kiln.host}/library/base\nRUN sleep 120\n` },
      fields: { timeout_seconds: '3' },
    });
    const build = await waitForBuild(kiln.url, accepted.id, ended);
    assert.equal(build.status, 'failed');
    assert.equal(build.error, 'timed out after 3 s');
    assert.ok(Date.now() - started < 20_000);
    assert.deepEqual(await processesMentioning(`build-${accepted.id}-`), []);
  });

  it('kiln build tars a directory, follows the log and prints the image and its disk; a failing build exits non-zero', async () => {
    const dir = path.join(scratch, 'cli-context');
    await mkdir(path.join(dir, 'sub'), { recursive: true });
    await writeFile(path.join(dir, 'sub', 'data.txt'), 'from the cli\n');
    await writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\n');
    const custom = path.join(scratch, 'Custom.Dockerfile');
    await writeFile(custom, `ARG GREETING=unset\nFROM ${kiln.host}/library/base\nARG GREETING\nCOPY sub/data.txt /data.txt\nRUN echo "$GREETING" > /greeting.txt\n`);
    const ok = await runKilnCli(['build', dir, '-f', custom, '--build-arg', 'GREETING=hi there', '--follow', '--url', kiln.url]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /STEP 4\/4: RUN echo/);
    const ref = new RegExp(`^${kiln.host.replace(/\./g, '\\.')}/builds/[a-z0-9-]+@sha256:[0-9a-f]{64}$`, 'm');
    assert.match(ok.stdout, ref);
    assert.match(ok.stdout, /^disk ready \(/m);
    const digest = /@(sha256:[0-9a-f]{64})$/.exec(ref.exec(ok.stdout)![0])![1]!;
    const disk = path.join(scratch, 'cli.ext4');
    await writeFile(disk, Buffer.from(await (await fetch(`${kiln.url}/api/v1/images/${digest}/disk`)).arrayBuffer()));
    assert.equal((await run('debugfs', ['-R', 'cat /greeting.txt', disk])).stdout, 'hi there\n');
    assert.equal((await run('debugfs', ['-R', 'cat /data.txt', disk])).stdout, 'from the cli\n');

    await writeFile(path.join(dir, 'Dockerfile'), `FROM ${kiln.host}/library/base\nRUN echo about to fail && exit 3\n`);
    const bad = await runKilnCli(['build', dir, '--url', kiln.url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /build \S+ failed: buildah bud failed \(exit code \d+\)/);
  });
});

// ---- queue and restart ----------------------------------------------------------------

describe('the build queue', { skip: skipReason ?? false }, () => {
  let dataDir = '';
  let kiln: TestKiln | null = null;
  const env = { KILN_MAX_CONCURRENT_BUILDS: '1' };

  before(async () => {
    dataDir = await tempDir('kiln-builds-queue-');
  });

  after(async () => {
    await kiln?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs builds one at a time in order, shows queue positions, and after a restart fails the running one and resumes the queued ones', async () => {
    const server = await startKiln({ env, dataDir });
    kiln = server;
    await pushBaseImage(server.url, 'library/base', 'latest');
    const slow = await submitBuild(server.url, { files: { Dockerfile: `FROM ${server.host}/library/base\nRUN sleep 120\n` } });
    await waitForBuild(server.url, slow.id, (b) => b.status === 'building');
    // FROM scratch: the restarted server listens on another port, which a FROM naming this one would miss.
    const quick = (n: number) => ({ files: { Dockerfile: 'FROM scratch\nCOPY n.txt /n.txt\n', 'n.txt': `${n}\n` } });
    const first = await submitBuild(server.url, quick(1));
    const second = await submitBuild(server.url, quick(2));
    const third = await submitBuild(server.url, quick(3));
    assert.deepEqual([first.queue_position, second.queue_position, third.queue_position], [1, 2, 3]);

    const cancelled = await fetch(`${server.url}/api/v1/builds/${second.id}`, { method: 'DELETE' });
    assert.equal(cancelled.status, 200);
    assert.equal(((await cancelled.json()) as BuildView).status, 'cancelled');
    assert.equal((await getBuild(server.url, first.id)).queue_position, 1);
    assert.equal((await getBuild(server.url, third.id)).queue_position, 2, 'positions close up');
    assert.equal((await getBuild(server.url, slow.id)).status, 'building', 'one build at a time');

    // A follower of the running build does not hold the shutdown open, and is not told the build ended.
    const follower = followLog(server.url, slow.id);
    await new Promise((r) => setTimeout(r, 200));
    const closing = Date.now();
    await server.close();
    kiln = null;
    assert.ok(Date.now() - closing < 15_000, 'the server closed promptly');
    assert.equal((await follower).end, null);
    assert.deepEqual(await processesMentioning(`build-${slow.id}-`), [], 'the builder was stopped');
    // An upload the stopped process never turned into a build.
    await mkdir(path.join(dataDir, 'builds', 'orphan-upload'), { recursive: true });
    await writeFile(path.join(dataDir, 'builds', 'orphan-upload', 'source.upload'), 'half');
    const restarted = await startKiln({ env, dataDir });
    kiln = restarted;
    assert.deepEqual((await readdir(path.join(dataDir, 'builds'))).includes('orphan-upload'), false, 'stray uploads are removed at start');
    const interrupted = await getBuild(restarted.url, slow.id);
    assert.equal(interrupted.status, 'failed');
    assert.equal(interrupted.error, 'interrupted by restart');
    const a = await waitForBuild(restarted.url, first.id, ended);
    const b = await waitForBuild(restarted.url, third.id, ended);
    assert.equal(a.status, 'ready', a.error ?? '');
    assert.equal(b.status, 'ready', b.error ?? '');
    assert.ok(a.image.name?.startsWith(`${restarted.host}/`), 'the plan uses the address of the new process');
    assert.ok(Date.parse(b.started_at!) >= Date.parse(a.started_at!), 'FIFO');
    // One slot: the second did not start building before the first had pushed.
    assert.ok(Date.parse(b.started_at!) >= Date.parse(a.created_at) + (a.durations.queued_s! + a.durations.building_s! + a.durations.pushing_s!) * 1000 - 5);
    assert.equal((await getBuild(restarted.url, second.id)).status, 'cancelled');
  });
});

// ---- token auth: tenants, the two cache tiers, build tokens ----------------------------

describe('builds with token auth', { skip: skipReason ?? false }, () => {
  let kiln: TestKiln;
  let admin: Headers;
  let acme: Headers;
  let beta: Headers;
  let adminBuild: BuildView;
  let betaBuild: BuildView;
  const files = { 'data.txt': 'data from the source\n' };

  before(async () => {
    kiln = await startKiln({ env: { KILN_AUTH: 'token' } });
    const key = async (request: { tenant?: string; admin?: boolean }) => ({
      authorization: `Bearer ${(await kiln.kiln.auth.tokens.createApiKey({ ...request, ttlSeconds: 3600 })).token}`,
    });
    admin = await key({ admin: true });
    acme = await key({ tenant: 'acme' });
    beta = await key({ tenant: 'beta' });
    await pushBaseImage(kiln.url, 'acme/base', '1', acme);
    await pushBaseImage(kiln.url, 'beta/base', '1', beta);
  });

  after(async () => {
    await kiln?.close();
  });

  it('an admin build with a global key fills cache/global/<key>', async () => {
    const accepted = await submitBuild(kiln.url, {
      files: { ...files, Dockerfile: dockerfileFrom(`${kiln.host}/acme/base:1`) },
      fields: { admin: 'true', global_cache_key: 'Node20' },
      headers: admin,
    });
    adminBuild = await waitForBuild(kiln.url, accepted.id, ended, admin);
    assert.equal(adminBuild.status, 'ready', adminBuild.error ?? '');
    assert.equal(adminBuild.global_cache_key, 'node20', 'keys are normalized');
    assert.deepEqual(adminBuild.cache.imported, [`${kiln.host}/cache/global/node20`]);
    assert.equal(adminBuild.cache.exported, `${kiln.host}/cache/global/node20`);
    assert.equal((await tagsOf(kiln.url, 'cache/global/node20', admin)).length, 3, 'one cache image per step');
    // The FROM repo checked at submission is kept with the build and granted (pull) to its token.
    const log = await (await fetch(`${kiln.url}/api/v1/builds/${adminBuild.id}/logs`, { headers: admin })).text();
    assert.match(log, /==> the build token may pull acme\/base \(FROM images\)/);
    assert.deepEqual(JSON.parse(await readFile(path.join(kiln.kiln.dirs.buildDir(adminBuild.id), 'pull-repos.json'), 'utf8')), ['acme/base']);
  });

  it('another tenant\'s first build with the key hits the global cache and writes only its own', async () => {
    const globalBefore = await tagsOf(kiln.url, 'cache/global/node20', admin);
    const accepted = await submitBuild(kiln.url, {
      files: { ...files, Dockerfile: dockerfileFrom(`${kiln.host}/beta/base:1`, 'RUN echo beta > /app/tenant.txt') },
      fields: { global_cache_key: 'node20' },
      headers: beta,
    });
    betaBuild = await waitForBuild(kiln.url, accepted.id, ended, beta);
    assert.equal(betaBuild.status, 'ready', betaBuild.error ?? '');
    assert.equal(betaBuild.tenant, 'beta');
    assert.equal(betaBuild.admin, false);
    const scope = tenantScope('beta');
    assert.deepEqual(betaBuild.cache.imported, [`${kiln.host}/cache/global/node20`, `${kiln.host}/cache/${scope}`]);
    assert.equal(betaBuild.cache.exported, `${kiln.host}/cache/${scope}`);
    assert.deepEqual(betaBuild.cache.use, { total_steps: 4, cached_steps: 3 }, 'the steps the admin build ran come from the global cache');
    assert.deepEqual(await tagsOf(kiln.url, 'cache/global/node20', admin), globalBefore, 'a tenant build never writes the global cache');
    assert.equal((await tagsOf(kiln.url, `cache/${scope}`, beta)).length, 1, 'only the step it ran goes to its own cache');

    // The token the build used appears nowhere a caller can see.
    const log = await (await fetch(`${kiln.url}/api/v1/builds/${betaBuild.id}/logs`, { headers: beta })).text();
    assert.ok(log.includes('==> build ready'));
    assert.doesNotMatch(log, JWT);
    assert.doesNotMatch(JSON.stringify(betaBuild), JWT);
    await assertWorkDirGone(kiln, betaBuild.id);
  });

  it('tenants see and cancel only their own builds; the image belongs to the build\'s tenant', async () => {
    const list = async (headers: Headers) =>
      ((await (await fetch(`${kiln.url}/api/v1/builds`, { headers })).json()) as { builds: BuildView[] }).builds.map((b) => b.id);
    assert.deepEqual(await list(beta), [betaBuild.id]);
    assert.deepEqual(await list(acme), []);
    assert.deepEqual((await list(admin)).sort(), [adminBuild.id, betaBuild.id].sort());
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${betaBuild.id}`, { headers: acme })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${betaBuild.id}/logs`, { headers: acme })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${adminBuild.id}`, { headers: beta })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${betaBuild.id}`, { method: 'DELETE', headers: acme })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds`)).status, 401, 'anonymous callers are refused');
    // beta may pull its build's image (builds/<id> is owned by the build's tenant), acme may not.
    const manifest = (headers: Headers) => fetch(`${kiln.url}/v2/builds/${betaBuild.id}/manifests/latest`, { headers: { ...headers, accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal((await manifest(beta)).status, 200);
    assert.equal((await manifest(acme)).status, 403);
  });

  it('refuses what a tenant may not ask for', async () => {
    const asAdmin = await postBuild(kiln.url, { files: { ...files, Dockerfile: dockerfileFrom(`${kiln.host}/beta/base:1`) }, fields: { admin: 'true' }, headers: beta });
    assert.equal(asAdmin.status, 403);
    assert.match(((await asAdmin.json()) as { error: { message: string } }).error.message, /only admin callers/);
    const othersBase = await postBuild(kiln.url, { files: { ...files, Dockerfile: dockerfileFrom(`${kiln.host}/acme/base:1`) }, headers: beta });
    assert.equal(othersBase.status, 403);
    assert.match(((await othersBase.json()) as { error: { message: string } }).error.message, /may not pull acme\/base/);
    const anonymous = await postBuild(kiln.url, { files: { ...files, Dockerfile: dockerfileFrom(`${kiln.host}/beta/base:1`) } });
    assert.equal(anonymous.status, 401);
  });

  it('a build token cannot push outside its build and cache repos', async () => {
    const token = await kiln.kiln.auth.tokens.issueBuildToken({
      buildId: betaBuild.id,
      tenant: 'beta',
      admin: false,
      globalKey: 'node20',
      expiresAt: new Date(Date.now() + 3600_000),
    });
    const headers = { authorization: `Basic ${Buffer.from(`kiln-build:${token.token}`).toString('base64')}` };
    const startUpload = (repo: string) => fetch(`${kiln.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
    for (const repo of ['beta/app', 'acme/base', 'cache/global/node20', `cache/${tenantScope('acme')}`, `builds/${adminBuild.id}`, 'library/base']) {
      const res = await startUpload(repo);
      assert.equal(res.status, 403, `push to ${repo}: ${await res.text()}`);
    }
    for (const repo of [`builds/${betaBuild.id}`, `cache/${tenantScope('beta')}`]) {
      const res = await startUpload(repo);
      assert.equal(res.status, 202, `push to ${repo}: ${await res.text()}`);
    }
    // Nor use the management API.
    assert.equal((await fetch(`${kiln.url}/api/v1/builds`, { headers })).status, 403);
    // Without a pullRepos grant it cannot read the tenant's images either.
    const pull = await fetch(`${kiln.url}/v2/beta/base/manifests/1`, { headers });
    assert.equal(pull.status, 403);
  });

  it('a build token minted with pullRepos can pull that FROM repo and cannot push to it', async () => {
    const token = await kiln.kiln.auth.tokens.issueBuildToken({
      buildId: adminBuild.id,
      tenant: null,
      admin: true,
      globalKey: 'node20',
      pullRepos: ['acme/base'],
      expiresAt: new Date(Date.now() + 3600_000),
    });
    const headers = { authorization: `Basic ${Buffer.from(`kiln-build:${token.token}`).toString('base64')}` };
    const manifest = (repo: string, h: Headers) => fetch(`${kiln.url}/v2/${repo}/manifests/1`, { headers: { ...h, accept: 'application/vnd.oci.image.manifest.v1+json' } });
    const pull = await manifest('acme/base', headers);
    assert.equal(pull.status, 200, await pull.clone().text());
    await pull.arrayBuffer();
    assert.equal((await manifest('beta/base', headers)).status, 403, 'only the listed repo');
    const push = await fetch(`${kiln.url}/v2/acme/base/blobs/uploads/`, { method: 'POST', headers });
    assert.equal(push.status, 403, `push to acme/base: ${await push.text()}`);
    const del = await fetch(`${kiln.url}/v2/acme/base/manifests/1`, { method: 'DELETE', headers });
    assert.equal(del.status, 403);
    // The same build without the grant cannot pull it.
    const without = await kiln.kiln.auth.tokens.issueBuildToken({
      buildId: adminBuild.id,
      tenant: null,
      admin: true,
      globalKey: 'node20',
      expiresAt: new Date(Date.now() + 3600_000),
    });
    assert.equal((await manifest('acme/base', { authorization: `Basic ${Buffer.from(`kiln-build:${without.token}`).toString('base64')}` })).status, 403);
  });
});
