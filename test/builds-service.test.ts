// Builds through Kiln's own server on real BuildKit (an ephemeral daemon per
// build), auth off: POST a source tree, the build runs FROM an image pushed to
// Kiln, pushes into Kiln, the disk bakes and verifies; the log streams over
// SSE; requests it cannot build are refused; the CLI; the queue across a restart.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildkitdToml } from '../src/builds/buildkit/daemon-config.js';
import { startEphemeralDaemon, type RunningDaemon } from '../src/builds/buildkit/daemon.js';
import { locateBuildkit } from '../src/builds/buildkit/locate.js';
import type { BuildView } from '../src/builds/service.js';
import { runKilnCli } from './helpers/cli.js';
import {
  buildkitEnv,
  buildkitSkipReason,
  diskFile,
  ended,
  errorOf,
  followLog,
  getBuild,
  logOf,
  postBuild,
  pushBaseImage,
  submitBuild,
  tarGz,
  verifiedDisk,
  waitForBuild,
} from './helpers/builds.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { processesMentioning } from './helpers/processes.js';

const skipReason = await buildkitSkipReason();
if (skipReason !== null) console.log(`builds-service skipped: ${skipReason}`);

/** Nothing of the build's private work dir (daemon root, the Docker config with its token) is left. */
async function assertWorkDirGone(kiln: TestKiln, id: string): Promise<void> {
  const left = (await readdir(kiln.kiln.dirs.scratchRoot).catch(() => [] as string[])).filter((n) => n.includes(id));
  assert.deepEqual(left, [], 'the build work dir is removed');
}

const dockerfileFrom = (base: string, extra = '') =>
  [
    `FROM ${base}`,
    'RUN mkdir -p /app && echo hello > /app/greeting.txt',
    'COPY data.txt /app/data.txt',
    'RUN cat /app/data.txt /app/greeting.txt > /app/combined.txt',
    extra,
  ].join('\n');

describe('builds on Kiln, auth off', { skip: skipReason ?? false }, () => {
  let kiln: TestKiln;
  let baseDigest = '';
  let scratch = '';

  before(async () => {
    scratch = await tempDir('kiln-builds-test-');
    kiln = await startKiln({ env: { ...buildkitEnv(), KILN_BUILD_MAX_SOURCE_BYTES: String(1024 * 1024) } });
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
    assert.equal(followed.end.status, 'ready', followed.lines.join('\n'));
    assert.ok(followed.lines.some((l) => /^#\d+ \[2\/4\] RUN mkdir -p \/app/.test(l)), followed.lines.join('\n'));
    assert.ok(followed.lines.some((l) => l.startsWith(`==> FROM ${kiln.host}/library/base: library/base@${baseDigest}`)));
    assert.ok(followed.lines.some((l) => /^==> BuildKit: a new daemon for this build, ready in [\d.]+ s; RUN steps on bridge kbk[0-9a-f]{4} /.test(l)));
    assert.equal(followed.lines.at(-1), '==> build ready');
    assert.deepEqual(followed.ids, followed.lines.map((_, i) => i), 'every line once, in order');

    const build = await getBuild(kiln.url, accepted.id);
    assert.equal(build.status, 'ready');
    assert.equal(build.error, null);
    assert.equal(build.admin, true, 'with auth off every build is an admin build');
    assert.equal(build.tenant, null);
    assert.match(build.builder ?? '', /^buildkit v0\.\d+/);
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
    };
    assert.equal(provenance.source.sha256, `sha256:${createHash('sha256').update(archive).digest('hex')}`);
    assert.deepEqual(provenance.lockfiles, [
      { path: 'package-lock.json', sha256: `sha256:${createHash('sha256').update(files['package-lock.json']).digest('hex')}` },
    ]);
    assert.deepEqual(provenance.baseImages, [{ ref: `${kiln.host}/library/base`, digest: baseDigest }]);
    assert.equal(provenance.builder.name, 'buildkit');

    // The stored log is what the stream carried; following an ended build replays it.
    assert.equal(await logOf(kiln.url, accepted.id), followed.lines.map((l) => `${l}\n`).join(''));
    const again = await followLog(kiln.url, accepted.id);
    assert.deepEqual(again.lines, followed.lines);
    assert.equal(again.end?.status, 'ready');

    const disk = await verifiedDisk(kiln.url, build.image.digest!, path.join(scratch, 'disk.ext4'));
    assert.equal(await diskFile(disk, '/app/combined.txt'), 'data from the source\nhello\n');
    assert.equal(await diskFile(disk, '/app/data.txt'), 'data from the source\n');
    await assertWorkDirGone(kiln, accepted.id);
    assert.deepEqual(await processesMentioning(`build-${accepted.id}-`), [], 'the daemon is gone');
    assert.equal(JSON.parse(await readFile(path.join(kiln.dataDir, 'builds', accepted.id, 'result.json'), 'utf8')).status, 'ready');
  });

  it('refuses requests it cannot build, saying why', async () => {
    const noDockerfile = await postBuild(kiln.url, { files: { 'data.txt': 'x' } });
    assert.equal(noDockerfile.status, 400);
    assert.match((await errorOf(noDockerfile)).message, /no Dockerfile/);
    const badArgs = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n' }, fields: { build_args: '["x"]' } });
    assert.equal(badArgs.status, 400);
    const badKey = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n' }, fields: { global_cache_key: 'No Way!' } });
    assert.match((await errorOf(badKey)).message, /global cache key/);
    const badTimeout = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n' }, fields: { timeout_seconds: '-3' } });
    assert.equal(badTimeout.status, 400);
    const badSecrets = await postBuild(kiln.url, { files: { Dockerfile: 'FROM scratch\n' }, fields: { secrets: '{"a,b":"hunter2-hunter2"}' } });
    const secretError = await errorOf(badSecrets);
    assert.equal(secretError.status, 400);
    assert.match(secretError.message, /secret id "a,b"/);
    assert.doesNotMatch(secretError.message, /hunter2/);
    const json = await fetch(`${kiln.url}/api/v1/builds`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.match((await errorOf(json)).message, /multipart/);

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

  it('kiln build tars a directory, follows the log and prints the image and its disk; a failing build exits non-zero', async () => {
    const dir = path.join(scratch, 'cli-context');
    await mkdir(path.join(dir, 'sub'), { recursive: true });
    await writeFile(path.join(dir, 'sub', 'data.txt'), 'from the cli\n');
    await writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\n');
    const custom = path.join(scratch, 'Custom.Dockerfile');
    await writeFile(
      custom,
      `ARG GREETING=unset\nFROM ${kiln.host}/library/base\nARG GREETING\nCOPY sub/data.txt /data.txt\nRUN echo "$GREETING" > /greeting.txt\n` +
        'RUN --mount=type=secret,id=from_env --mount=type=secret,id=from_file cat /run/secrets/from_env /run/secrets/from_file | wc -c > /secret-bytes.txt\n',
    );
    await writeFile(path.join(scratch, 'secret-file'), 'file-secret-value');
    const ok = await runKilnCli(
      ['build', dir, '-f', custom, '--build-arg', 'GREETING=hi there', '--secret', 'id=from_env,env=KILN_TEST_SECRET', '--secret', `id=from_file,src=${path.join(scratch, 'secret-file')}`, '--follow', '--url', kiln.url],
      { KILN_TEST_SECRET: 'env-secret-value' },
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /3\/4\] RUN echo "hi there" > \/greeting\.txt/);
    const ref = new RegExp(`^${kiln.host.replace(/\./g, '\\.')}/builds/[a-z0-9-]+@sha256:[0-9a-f]{64}$`, 'm');
    assert.match(ok.stdout, ref);
    assert.match(ok.stdout, /^disk ready \(/m);
    const digest = /@(sha256:[0-9a-f]{64})$/.exec(ref.exec(ok.stdout)![0])![1]!;
    const disk = await verifiedDisk(kiln.url, digest, path.join(scratch, 'cli.ext4'));
    assert.equal(await diskFile(disk, '/greeting.txt'), 'hi there\n');
    assert.equal(await diskFile(disk, '/data.txt'), 'from the cli\n');
    assert.equal((await diskFile(disk, '/secret-bytes.txt')).trim(), String('env-secret-value'.length + 'file-secret-value'.length), 'both secrets reached the step');

    await writeFile(path.join(dir, 'Dockerfile'), `FROM ${kiln.host}/library/base\nRUN echo about to fail && exit 3\n`);
    const bad = await runKilnCli(['build', dir, '--url', kiln.url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /build \S+ failed: buildctl build failed \(exit code \d+\)/);
  });
});

describe('the build queue across a restart', { skip: skipReason ?? false }, () => {
  let dataDir = '';
  let kiln: TestKiln | null = null;
  const env = { ...buildkitEnv(), KILN_MAX_CONCURRENT_BUILDS: '1' };

  before(async () => {
    dataDir = await tempDir('kiln-builds-queue-');
  });

  after(async () => {
    await kiln?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs one build at a time, shows queue positions, and after a restart fails the running one and resumes the queued ones', async () => {
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
    assert.equal((await getBuild(server.url, third.id)).queue_position, 2, 'positions close up');
    assert.equal((await getBuild(server.url, slow.id)).status, 'building', 'one build at a time');

    // A follower of the running build does not hold the shutdown open, and is not told the build ended.
    const follower = followLog(server.url, slow.id);
    await new Promise((r) => setTimeout(r, 200));
    await server.close();
    kiln = null;
    assert.equal((await follower).end, null);
    assert.deepEqual(await processesMentioning(`build-${slow.id}-`), [], 'the builder and its daemon were stopped');
    // Sources published by a process that stopped before it created their builds' records: an old one
    // goes at start, a young one stays (another server sharing the store may be between the two steps).
    for (const [id, ageMs] of [['orphan-old', 2 * 3600_000], ['orphan-young', 0]] as const) {
      const file = path.join(dataDir, 'builds', id, 'source.tar.gz');
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, 'half');
      const at = new Date(Date.now() - ageMs);
      await utimes(file, at, at);
    }
    const restarted = await startKiln({ env, dataDir });
    kiln = restarted;
    const left = await readdir(path.join(dataDir, 'builds'));
    assert.equal(left.includes('orphan-old'), false, 'an old orphan is removed at start');
    assert.equal(left.includes('orphan-young'), true, 'a young orphan is kept');
    const interrupted = await getBuild(restarted.url, slow.id);
    assert.equal(interrupted.status, 'failed');
    assert.equal(interrupted.error, 'interrupted: the server running it stopped');
    const a = await waitForBuild(restarted.url, first.id, ended);
    const b = await waitForBuild(restarted.url, third.id, ended);
    assert.equal(a.status, 'ready', a.error ?? '');
    assert.equal(b.status, 'ready', b.error ?? '');
    assert.ok(a.image.name?.startsWith(`${restarted.host}/`), 'the plan uses the address of the new process');
    assert.ok(Date.parse(b.started_at!) >= Date.parse(a.started_at!), 'in order');
    assert.equal((await getBuild(restarted.url, second.id)).status, 'cancelled');
  });
});

describe('a pool of long-running daemons (BUILDKIT_HOST)', { skip: skipReason ?? false }, () => {
  let scratch = '';
  let kiln: TestKiln;
  const daemons: RunningDaemon[] = [];

  before(async () => {
    scratch = await tempDir('kiln-builds-pool-');
  });

  after(async () => {
    await kiln?.close();
    for (const daemon of daemons) await daemon.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('builds on the operator\'s daemon, and refuses one that runs RUN steps on the host network', async () => {
    const located = await locateBuildkit({ dir: buildkitEnv().KILN_BUILDKIT_DIR, usesPool: false });
    assert.ok('tools' in located);
    const bridgedDir = path.join(scratch, 'bridged');
    const hostDir = path.join(scratch, 'host');
    kiln = await startKiln({ env: { ...buildkitEnv(), BUILDKIT_HOST: `unix://${bridgedDir}/buildkitd.sock,unix://${hostDir}/buildkitd.sock` } });
    await pushBaseImage(kiln.url, 'library/base', 'latest');
    const config = buildkitdToml({ registry: kiln.host, insecure: true, bridge: { name: 'kbkpool', subnet: '10.213.250.0/24' }, cniBinDir: located.cniBinDir });
    const start = (dir: string, text: string) =>
      startEphemeralDaemon({ tools: located.tools, dir, config: text, startTimeoutMs: 60_000, signal: new AbortController().signal }).then((d) => (daemons.push(d), d));
    await start(bridgedDir, config);
    await start(hostDir, config.replace('networkMode = "bridge"', 'networkMode = "host"'));

    // Builds take the pool's daemons in turn: the first gets the bridged one, the second the host-network one.
    const files = { Dockerfile: `FROM ${kiln.host}/library/base\nRUN echo pooled > /pooled.txt\n` };
    const first = await waitForBuild(kiln.url, (await submitBuild(kiln.url, { files })).id, ended);
    assert.equal(first.status, 'ready', first.error ?? '');
    assert.match(await logOf(kiln.url, first.id), new RegExp(`==> BuildKit daemon from the pool \\(BUILDKIT_HOST\\): unix://${bridgedDir}/buildkitd.sock`));
    const disk = await verifiedDisk(kiln.url, first.image.digest!, path.join(scratch, 'pooled.ext4'));
    assert.equal(await diskFile(disk, '/pooled.txt'), 'pooled\n');
    const second = await waitForBuild(kiln.url, (await submitBuild(kiln.url, { files })).id, ended);
    assert.equal(second.status, 'failed');
    assert.match(second.error ?? '', /runs RUN steps on the host network; start it with --oci-worker-net=bridge/);
  });
});
