// The buildah backend on this machine, against a real registry: Debian's
// docker-registry stands in for Kiln's server here. Proves the plan's refs
// work with buildah: the image is pushed, an admin build with a global key
// fills cache/global/<key>, a new tenant's first build with that key reports
// cache use without writing the global cache, and its next build reads both
// tiers. Also: cancellation kills the build.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildResult } from '../src/builds/backend.js';
import { BuildahBackend } from '../src/builds/buildah-backend.js';
import { writeDockerConfig } from '../src/builds/credentials.js';
import { BuildError } from '../src/builds/errors.js';
import { planBuild } from '../src/builds/plan.js';
import { isOnPath } from '../src/builds/process.js';
import { resolveDockerfile } from '../src/builds/source.js';
import {
  fetchManifest,
  listTags,
  pushFixtureBaseImage,
  readFileFromImage,
  startLocalRegistry,
  type LocalRegistry,
} from '../src/builds/testing/local-registry.js';
import { processesMentioning } from './helpers/processes.js';

async function whyNot(): Promise<string | null> {
  if (process.platform !== 'linux') return 'buildah runs on Linux only';
  if (process.getuid?.() !== 0) return 'buildah with chroot isolation and vfs needs root here';
  if (!(await isOnPath('buildah'))) return 'buildah is not installed (apt-get install buildah)';
  if (!(await isOnPath('docker-registry'))) return 'docker-registry is not installed (apt-get install docker-registry)';
  return null;
}

const skipReason = await whyNot();
if (skipReason !== null) console.log(`builds-buildah skipped: ${skipReason}`);

describe('buildah backend against a local registry', { skip: skipReason ?? false }, () => {
  let scratch = '';
  let registry: LocalRegistry;
  const backend = new BuildahBackend();
  // The build arg picks the base tag (the default does not exist). No ARG after
  // FROM: buildah 1.28 cannot take such a step from a remote cache (see buildah-backend.ts).
  const dockerfileOf = (host: string, extra = '') =>
    [
      'ARG BASE_TAG=no-such-tag',
      `FROM ${host}/library/base:\${BASE_TAG}`,
      'RUN mkdir -p /app && echo hello > /app/greeting.txt',
      'COPY data.txt /app/data.txt',
      'RUN cat /app/data.txt /app/greeting.txt > /app/combined.txt',
      extra,
    ].join('\n');

  interface Run {
    id: string;
    admin: boolean;
    tenantScope: string | null;
    globalKey: string | null;
    dockerfile: string;
    signal?: AbortSignal;
    onLine?: (line: string) => void;
  }

  /** One build the way the service will run it: fresh work dir, context, Dockerfile text, auth file. */
  async function build(run: Run): Promise<{ result: BuildResult; log: string[]; workDir: string }> {
    const workDir = path.join(scratch, run.id);
    const contextDir = path.join(workDir, 'src');
    await mkdir(contextDir, { recursive: true });
    await writeFile(path.join(contextDir, 'data.txt'), 'data from the source\n');
    const dockerfilePath = await resolveDockerfile({ contextDir, workDir, dockerfileText: run.dockerfile });
    const plan = planBuild({ registry: registry.host, insecure: true, buildId: run.id, tenantScope: run.tenantScope, globalKey: run.globalKey, admin: run.admin });
    const dockerConfigDir = await writeDockerConfig(path.join(workDir, 'docker'), registry.host, null);
    const log: string[] = [];
    const result = await backend.build({
      contextDir,
      dockerfilePath,
      plan,
      buildArgs: { BASE_TAG: 'latest' },
      dockerConfigDir,
      workDir,
      signal: run.signal ?? new AbortController().signal,
      log: (line) => {
        log.push(line);
        run.onLine?.(line);
      },
    });
    return { result, log, workDir };
  }

  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-buildah-'));
    registry = await startLocalRegistry(path.join(scratch, 'registry'));
    await pushFixtureBaseImage(registry.host);
  });

  after(async () => {
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('reports its version', async () => {
    assert.match(await backend.version(), /^\d+\.\d+\.\d+/);
  });

  it('an admin build with a global key pushes the image and fills cache/global/<key>', async () => {
    const { result, workDir } = await build({ id: 'admin1', admin: true, tenantScope: null, globalKey: 'busybox', dockerfile: dockerfileOf(registry.host) });
    assert.equal(result.imageName, `${registry.host}/builds/admin1`);
    const pushed = await fetchManifest(registry.host, 'builds/admin1', 'latest');
    assert.ok(pushed, 'builds/admin1:latest exists');
    assert.equal(pushed.digest, result.digest);
    assert.equal(JSON.parse(pushed.body.toString()).mediaType, 'application/vnd.oci.image.manifest.v1+json');
    // RUN and COPY both ran.
    assert.equal(await readFileFromImage(registry.host, 'builds/admin1', 'latest', 'app/combined.txt'), 'data from the source\nhello\n');
    assert.deepEqual(result.cache, { totalSteps: 3, cachedSteps: 0 });
    assert.equal((await listTags(registry.host, 'cache/global/busybox')).length, 3, 'one cache image per step');
    assert.deepEqual(await readdir(workDir).then((names) => names.includes('buildah')), false, 'private storage removed');
  });

  it('a new tenant\'s first build with the key hits the global cache and never writes it', async () => {
    const globalBefore = await listTags(registry.host, 'cache/global/busybox');
    const { result, log } = await build({
      id: 'tenant1',
      admin: false,
      tenantScope: 'tenant-aaa',
      globalKey: 'busybox',
      dockerfile: dockerfileOf(registry.host, 'RUN echo tenant > /app/tenant.txt'),
    });
    assert.deepEqual(result.cache, { totalSteps: 4, cachedSteps: 3 });
    assert.ok(log.some((l) => l.startsWith(`--> Cache pulled from remote ${registry.host}/cache/global/busybox:`)));
    assert.deepEqual(await listTags(registry.host, 'cache/global/busybox'), globalBefore, 'global cache unchanged');
    assert.equal((await listTags(registry.host, 'cache/tenant-aaa')).length, 1, 'only the step it ran goes to its own cache');
    assert.ok(await fetchManifest(registry.host, 'builds/tenant1', 'latest'));
  });

  it('the tenant\'s next build reads both tiers (its own cache through the mirror)', async () => {
    const { result } = await build({
      id: 'tenant2',
      admin: false,
      tenantScope: 'tenant-aaa',
      globalKey: 'busybox',
      dockerfile: dockerfileOf(registry.host, 'RUN echo tenant > /app/tenant.txt'),
    });
    assert.deepEqual(result.cache, { totalSteps: 4, cachedSteps: 4 });
    assert.equal(await readFileFromImage(registry.host, 'builds/tenant2', 'latest', 'app/tenant.txt'), 'tenant\n');
  });

  it('another tenant does not read the first tenant\'s cache', async () => {
    const { result } = await build({
      id: 'other1',
      admin: false,
      tenantScope: 'tenant-bbb',
      globalKey: null,
      dockerfile: dockerfileOf(registry.host, 'RUN echo tenant > /app/tenant.txt'),
    });
    assert.deepEqual(result.cache, { totalSteps: 4, cachedSteps: 0 });
  });

  it('cancelling kills the builder and everything it started', async () => {
    const controller = new AbortController();
    const started = Date.now();
    let workDir = '';
    await assert.rejects(
      build({
        id: 'cancel1',
        admin: false,
        tenantScope: 'tenant-aaa',
        globalKey: null,
        dockerfile: `FROM ${registry.host}/library/base\nRUN sleep 120\n`,
        signal: controller.signal,
        onLine: (line) => {
          if (line.startsWith('STEP 2/2: RUN sleep 120')) setTimeout(() => controller.abort(new Error('cancelled by the test')), 300);
        },
      }).then((r) => (workDir = r.workDir)),
      (err: unknown) => err instanceof BuildError && err.kind === 'cancelled' && /cancelled by the test/.test(err.message),
    );
    assert.equal(workDir, '', 'the build did not finish');
    assert.ok(Date.now() - started < 30_000);
    const survivors = await processesMentioning(path.join(scratch, 'cancel1'));
    assert.deepEqual(survivors, [], 'no process of the build is left');
  });
});
