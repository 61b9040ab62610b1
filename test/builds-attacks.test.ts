// What a hostile tenant tried (issue 11), each as a test, on real BuildKit
// with token auth: a cache mount climbing to the host's root, a source whose
// links chain out of the context, RUN steps reaching Kiln on 127.0.0.1 or a
// host service through the bridge gateway, seeing host processes, hunting the
// build token; a manifest naming another tenant's layer as non-distributable;
// one tenant's long builds starving another's; a log without end. Also what
// cancel and timeout leave behind (nothing), and the log stream's heartbeat
// and resumption.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildView } from '../src/builds/service.js';
import {
  buildkitEnv,
  buildkitSkipReason,
  diskFile,
  ended,
  errorOf,
  followLog,
  getBuild,
  JWT,
  kilnFirewallRules,
  logOf,
  mountsUnder,
  postBuild,
  pushBaseImage,
  submitBuild,
  testKeys,
  verifiedDisk,
  waitForBuild,
  type Headers,
} from './helpers/builds.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';
import { processesMentioning } from './helpers/processes.js';

const skipReason = await buildkitSkipReason();
if (skipReason !== null) console.log(`builds-attacks skipped: ${skipReason}`);

// base64 of "kiln-build:" (the user name of the build token in config.json and Basic headers).
const TOKEN_USER_B64 = Buffer.from('kiln-build:').toString('base64').slice(0, 12);

/** The bridge a build's daemon used, from its log. */
function bridgeOf(log: string): string {
  const m = /RUN steps on bridge (kbk[0-9a-f]{4}) /.exec(log);
  assert.ok(m, 'the log names the build\'s bridge');
  return m[1]!;
}

/** Nothing of a stopped build is left: no process, no mount, no bridge, no firewall rule, no work dir. */
async function assertNothingLeft(kiln: TestKiln, id: string, headers: Headers): Promise<void> {
  const bridge = bridgeOf(await logOf(kiln.url, id, headers));
  assert.deepEqual(await processesMentioning(`build-${id}-`), [], 'no process of the build (buildctl, buildkitd) is left');
  assert.deepEqual((await mountsUnder(kiln.kiln.dirs.scratchRoot)).filter((m) => m.includes(`build-${id}-`)), [], 'nothing of it stays mounted');
  assert.equal(existsSync(`/sys/class/net/${bridge}`), false, `the bridge ${bridge} is gone`);
  assert.deepEqual((await kilnFirewallRules()).filter((r) => r.includes(bridge)), [], 'its firewall rule is gone');
  assert.deepEqual((await readdir(kiln.kiln.dirs.scratchRoot)).filter((n) => n.includes(id)), [], 'its work dir is removed');
}

describe('hostile builds cannot reach the host', { skip: skipReason ?? false }, () => {
  let kiln: TestKiln;
  let scratch = '';
  let hostService: Server;
  let hostPort = 0;
  let k: Awaited<ReturnType<typeof testKeys>>;
  const canary = `canary-${randomBytes(8).toString('hex')}`;
  const pwned = `/tmp/kiln-pwned-${randomBytes(6).toString('hex')}`;

  before(async () => {
    scratch = await tempDir('kiln-builds-attacks-');
    kiln = await startKiln({ env: { ...buildkitEnv(), KILN_AUTH: 'token' } });
    k = await testKeys(kiln);
    await pushBaseImage(kiln.url, 'library/base', 'latest', k.admin);
    await writeFile(path.join(kiln.dataDir, 'host-canary.txt'), canary);
    // A service on all interfaces of the host, as a careless operator might run one.
    hostService = createServer((socket) => socket.end('HOST-SERVICE-ANSWERED\n'));
    await new Promise<void>((resolve) => hostService.listen(0, '0.0.0.0', resolve));
    hostPort = (hostService.address() as { port: number }).port;
  });

  after(async () => {
    hostService?.close();
    await kiln?.close();
    await rm(scratch, { recursive: true, force: true });
    await rm(pwned, { force: true });
  });

  it('a RUN step sees no host path, no host service, no host process and no build token', async () => {
    const kilnPort = new URL(kiln.url).port;
    const canaryPath = path.join(kiln.dataDir, 'host-canary.txt');
    const keyPath = kiln.kiln.dirs.authKeyFile;
    const probe = [
      'set +e',
      'case "$1" in',
      // The CVE-2024-9675 mount: with buildah it was the host's / read-write.
      `cache) ls /host > /out/cache-ls.txt 2>&1; cat "/host${canaryPath}" "/host${keyPath}" > /out/cache-read.txt 2>&1; echo pwned > "/host${pwned}" 2>/dev/null; echo done >> /out/cache-read.txt ;;`,
      `net) printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 ${kilnPort} > /out/loopback.txt 2>&1;`,
      `    gw=$(ip route | awk '/default/ {print $3}'); echo "gateway $gw" > /out/gateway.txt; echo hi | nc -w 3 "$gw" ${hostPort} >> /out/gateway.txt 2>&1 ;;`,
      `procs) ls /proc | grep -c '^[0-9][0-9]*$' > /out/pids.txt; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' ' ' > /out/cmdlines.txt ;;`,
      // Everywhere a step can look, and through the cache mount the old builder turned into the host's /.
      `token) find / "/host${kiln.kiln.dirs.scratchRoot}" -name config.json -not -path "/proc/*" -not -path "/sys/*" 2>/dev/null > /out/configs.txt;`,
      '    for f in $(cat /out/configs.txt); do cat "$f"; done > /out/found.txt 2>&1;',
      '    cat /proc/[0-9]*/environ 2>/dev/null | tr "\\000" "\\n" >> /out/found.txt;',
      '    grep -rl -e kiln-build -e "eyJ" /etc /root /tmp /run /out 2>/dev/null >> /out/found.txt;',
      '    cat /out/found.txt ;;',
      'esac',
      'true',
    ].join('\n');
    const accepted = await submitBuild(kiln.url, {
      files: {
        'probe.sh': probe,
        Dockerfile: [
          `FROM ${kiln.host}/library/base`,
          'COPY probe.sh /probe.sh',
          'RUN mkdir -p /out',
          'RUN --mount=type=cache,id=../../../../../../../../../../../../,target=/host sh /probe.sh cache',
          'RUN sh /probe.sh net',
          'RUN sh /probe.sh procs',
          'RUN --mount=type=cache,id=../../../../../../../../../../../../,target=/host sh /probe.sh token',
        ].join('\n'),
      },
      headers: k.acme,
    });
    const build = await waitForBuild(kiln.url, accepted.id, ended, k.acme);
    assert.equal(build.status, 'ready', build.error ?? '');
    const disk = await verifiedDisk(kiln.url, build.image.digest!, path.join(scratch, 'probe.ext4'), k.acme);
    const out = (name: string) => diskFile(disk, `/out/${name}`);

    const cacheRead = await out('cache-read.txt');
    assert.ok(!cacheRead.includes(canary), `the cache mount is not the host's / (${cacheRead})`);
    assert.doesNotMatch(cacheRead, /"kty"|"crv"/, 'the signing key stays unread');
    assert.equal(existsSync(pwned), false, 'nothing was written on the host');

    const loopback = await out('loopback.txt');
    assert.doesNotMatch(loopback, /HTTP\/1\.[01]/, `Kiln on 127.0.0.1 did not answer the RUN step: ${loopback}`);
    const gateway = await out('gateway.txt');
    assert.match(gateway, /^gateway 10\.\d+\.\d+\.1$/m, 'the step has a network of its own, behind a bridge');
    assert.doesNotMatch(gateway, /HOST-SERVICE-ANSWERED/, `a host service on all interfaces is closed to the bridge: ${gateway}`);

    assert.ok(Number((await out('pids.txt')).trim()) < 10, 'the step sees its own processes only');
    assert.doesNotMatch(await out('cmdlines.txt'), /node|buildkitd|kiln/);

    const found = await out('found.txt');
    assert.doesNotMatch(found, JWT, 'no token in any file or environment a RUN step can read');
    assert.ok(!found.includes(TOKEN_USER_B64), 'nor its base64 form');
    const log = await logOf(kiln.url, build.id, k.acme);
    assert.doesNotMatch(log, JWT);
    assert.ok(!log.includes(TOKEN_USER_B64));
  });

  // (--security=insecure needs the labs Dockerfile frontend, an image from outside; the daemon grants neither entitlement.)
  it('a Dockerfile cannot get host networking', async () => {
    const accepted = await submitBuild(kiln.url, {
      files: { Dockerfile: `FROM ${kiln.host}/library/base\nRUN --network=host true\n` },
      headers: k.acme,
    });
    const build = await waitForBuild(kiln.url, accepted.id, ended, k.acme);
    assert.equal(build.status, 'failed');
    assert.match(await logOf(kiln.url, build.id, k.acme), /network\.host is not allowed/);
  });

  it('a source whose links chain out of the context is refused', async () => {
    const res = await postBuild(kiln.url, {
      files: {
        Dockerfile: `FROM ${kiln.host}/library/base\nRUN --mount=type=bind,source=esc,target=/esc cat /esc${kiln.kiln.dirs.authKeyFile}\n`,
        'a/b/c/d/': { type: 'directory' },
        'a/b/c/d/s': { symlink: '../../../..' },
        esc: { symlink: 'a/b/c/d/s/../../..' },
      },
      headers: k.acme,
    });
    const error = await errorOf(res);
    assert.equal(error.status, 400);
    assert.match(error.message, /symlink "esc" → "a\/b\/c\/d\/s\/\.\.\/\.\.\/\.\." points outside the source tree/);
  });

  it('a manifest naming another tenant\'s layer as non-distributable is refused, and the layer stays unreadable', async () => {
    // beta's private image, whose layer acme learned the digest and size of.
    const secretLayer = Buffer.from(`beta's secret ${randomBytes(8).toString('hex')}`);
    const digest = `sha256:${createHash('sha256').update(secretLayer).digest('hex')}`;
    const up = await fetch(`${kiln.url}/v2/beta/private/blobs/uploads/?digest=${digest}`, { method: 'POST', body: secretLayer, headers: { ...k.beta, 'content-type': 'application/octet-stream' } });
    assert.equal(up.status, 201);
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
    assert.equal((await fetch(`${kiln.url}/v2/acme/evil/blobs/uploads/?digest=${configDigest}`, { method: 'POST', body: config, headers: { ...k.acme, 'content-type': 'application/octet-stream' } })).status, 201);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', digest, size: secretLayer.length }],
    });
    const put = await fetch(`${kiln.url}/v2/acme/evil/manifests/v1`, { method: 'PUT', body: manifest, headers: { ...k.acme, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
    const body = (await put.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(put.status, 400);
    assert.equal(body.errors[0]!.code, 'MANIFEST_BLOB_UNKNOWN');
    assert.equal((await fetch(`${kiln.url}/v2/acme/evil/blobs/${digest}`, { headers: k.acme })).status, 404);
  });
});

describe('fair and bounded builds', { skip: skipReason ?? false }, () => {
  let kiln: TestKiln;
  let k: Awaited<ReturnType<typeof testKeys>>;
  const logCap = 48 * 1024;

  before(async () => {
    kiln = await startKiln({
      env: {
        ...buildkitEnv(),
        KILN_AUTH: 'token',
        KILN_MAX_CONCURRENT_BUILDS: '2',
        KILN_BUILD_QUEUE_PER_TENANT: '1',
        KILN_BUILD_LOG_MAX_BYTES: String(logCap),
        KILN_BUILD_SSE_HEARTBEAT_SECONDS: '0.3',
      },
    });
    k = await testKeys(kiln);
    await pushBaseImage(kiln.url, 'library/base', 'latest', k.admin);
  });

  after(async () => {
    await kiln?.close();
  });

  it('one tenant\'s long builds do not hold back another\'s; a queued build\'s stream has heartbeats; cancel and timeout leave nothing', async () => {
    const sleeper = (seconds: number) => ({ files: { Dockerfile: `FROM ${kiln.host}/library/base\nRUN sleep ${seconds}\n` } });
    const a1 = await submitBuild(kiln.url, { ...sleeper(300), headers: k.acme });
    await waitForBuild(kiln.url, a1.id, (b) => b.status === 'building', k.acme);
    const a2 = await submitBuild(kiln.url, { ...sleeper(300), fields: { timeout_seconds: '15' }, headers: k.acme });
    // Two slots, one per tenant: acme's second build waits although a slot is free.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await getBuild(kiln.url, a2.id, k.acme)).status, 'queued', 'a tenant runs one build at a time (KILN_BUILDS_PER_TENANT)');
    const a3 = await postBuild(kiln.url, { ...sleeper(1), headers: k.acme });
    const limited = await errorOf(a3);
    assert.equal(limited.status, 429);
    assert.match(limited.message, /KILN_BUILD_QUEUE_PER_TENANT=1/);

    // While it waits, its log stream carries heartbeats.
    const stopFollowing = new AbortController();
    const comments: string[] = [];
    const following = fetch(`${kiln.url}/api/v1/builds/${a2.id}/logs?follow=true`, { headers: k.acme, signal: stopFollowing.signal }).then(async (res) => {
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) {
        for (const line of decoder.decode(chunk as Uint8Array).split('\n')) if (line.startsWith(':')) comments.push(line);
        if (comments.filter((c) => c === ': heartbeat').length >= 2) stopFollowing.abort();
      }
    });
    await following.catch((err: Error) => assert.equal(err.name, 'AbortError'));
    assert.ok(comments.filter((c) => c === ': heartbeat').length >= 2, comments.join('|'));

    // beta's build, submitted last, runs now and ends, its huge output cut at the cap.
    const b1 = await submitBuild(kiln.url, {
      files: { Dockerfile: `FROM ${kiln.host}/library/base\nRUN i=0; while [ $i -lt 4000 ]; do echo "line $i of a log that would never end xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); done\n` },
      headers: k.beta,
    });
    assert.equal(b1.queue_position, 1, 'beta goes before acme\'s waiting build');
    const b1Done = await waitForBuild(kiln.url, b1.id, ended, k.beta, 120_000);
    assert.equal(b1Done.status, 'ready', b1Done.error ?? '');
    assert.equal((await getBuild(kiln.url, a1.id, k.acme)).status, 'building');
    assert.equal((await getBuild(kiln.url, a2.id, k.acme)).status, 'queued');

    const log = await logOf(kiln.url, b1.id, k.beta);
    assert.match(log, new RegExp(`^==> the log is cut here at \\d+ bytes \\(KILN_BUILD_LOG_MAX_BYTES=${logCap}\\)`, 'm'));
    assert.ok(Buffer.byteLength(log) < logCap + 4096, `${Buffer.byteLength(log)} bytes`);
    assert.match(log, /==> build ready\n$/, 'the end is still said');
    assert.ok((await stat(path.join(kiln.kiln.dirs.buildDir(b1.id), 'build.log'))).size < logCap + 4096);

    // Resuming the stream after line 3 gives the lines after it.
    const lines = log.trimEnd().split('\n');
    const resumed = await followLog(kiln.url, b1.id, { headers: { ...k.beta, 'last-event-id': '3' } });
    assert.equal(resumed.ids[0], 4);
    assert.deepEqual(resumed.lines, lines.slice(4));

    // Cancel acme's running build: its daemon goes, nothing stays mounted; then its queued one starts and times out.
    const cancelled = await fetch(`${kiln.url}/api/v1/builds/${a1.id}`, { method: 'DELETE', headers: k.acme });
    assert.equal(((await cancelled.json()) as BuildView).status, 'cancelled');
    await assertNothingLeft(kiln, a1.id, k.acme);
    const timedOut = await waitForBuild(kiln.url, a2.id, ended, k.acme, 120_000);
    assert.equal(timedOut.status, 'failed');
    assert.equal(timedOut.error, 'timed out after 15 s');
    await assertNothingLeft(kiln, a2.id, k.acme);
  });

  it('reclaims ended builds\' files after KILN_BUILD_RETENTION when the collector runs', async () => {
    const [build] = await kiln.kiln.builds.list({ tenant: 'beta', limit: 1 });
    assert.ok(build);
    const dry = await kiln.kiln.builds.reclaim({ dryRun: true, now: Date.now() + 8 * 86_400_000 });
    assert.ok(dry.builds.includes(build.id));
    assert.ok(existsSync(kiln.kiln.dirs.buildDir(build.id)), 'a dry run removes nothing');
    const report = await kiln.kiln.gc.run({ dryRun: false, graceMs: 3_600_000 });
    assert.equal(report.deleted.buildFiles, 0, 'nothing is past the default retention of 7 days yet');
    const taken = await kiln.kiln.builds.reclaim({ dryRun: false, now: Date.now() + 8 * 86_400_000 });
    assert.ok(taken.builds.includes(build.id));
    assert.ok(taken.bytes > 0);
    assert.equal(existsSync(kiln.kiln.dirs.buildDir(build.id)), false);
    const view = await getBuild(kiln.url, build.id, k.beta);
    assert.equal(view.files_kept, false);
    assert.equal(view.status, 'ready', 'the record stays');
    const gone = await fetch(`${kiln.url}/api/v1/builds/${build.id}/logs`, { headers: k.beta });
    assert.equal(gone.status, 404);
    assert.match((await errorOf(gone)).message, /KILN_BUILD_RETENTION/);
  });
});
