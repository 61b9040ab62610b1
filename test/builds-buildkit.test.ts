// The BuildKit backend against a real BuildKit and a local registry. Runs only
// where BuildKit is: buildctl plus either a daemon at BUILDKIT_HOST (on this
// machine, so it reaches the registry on 127.0.0.1) or buildctl-daemonless.sh
// with buildkitd. Skipped otherwise, saying why.
//
// The Dockerfile starts FROM scratch so a BUILDKIT_HOST daemon needs no
// registry config of its own: the plan's `registry.insecure=true` covers the
// output and the caches, which is what is under test here.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BuildkitBackend } from '../src/builds/buildkit-backend.js';
import { writeDockerConfig } from '../src/builds/credentials.js';
import { planBuild } from '../src/builds/plan.js';
import { captureCommand, isOnPath } from '../src/builds/process.js';
import { resolveDockerfile } from '../src/builds/source.js';
import { fetchManifest, startLocalRegistry, type LocalRegistry } from '../src/builds/testing/local-registry.js';

const host = process.env.BUILDKIT_HOST?.trim() || undefined;

async function whyNot(): Promise<string | null> {
  if (!(await isOnPath('buildctl'))) return 'buildctl is not installed (BuildKit is not packaged for Debian 12)';
  if (!(await isOnPath('docker-registry'))) return 'docker-registry is not installed (apt-get install docker-registry)';
  if (host !== undefined) {
    const answers = await captureCommand('buildctl', ['--addr', host, 'debug', 'workers']).then(() => true, () => false);
    return answers ? null : `no BuildKit daemon answers at BUILDKIT_HOST=${host}`;
  }
  if (!(await isOnPath('buildctl-daemonless.sh')) || !(await isOnPath('buildkitd'))) {
    return 'BUILDKIT_HOST is not set and buildctl-daemonless.sh or buildkitd is missing';
  }
  if (process.getuid?.() !== 0) return 'daemonless BuildKit without rootlesskit needs root';
  return null;
}

const skipReason = await whyNot();
if (skipReason !== null) console.log(`builds-buildkit skipped: ${skipReason}`);

describe('BuildKit backend against a local registry', { skip: skipReason ?? false }, () => {
  let scratch = '';
  let registry: LocalRegistry;
  const backend = new BuildkitBackend(host ? { host } : {});
  const dockerfile = 'FROM scratch\nCOPY data.txt /app/data.txt\nCOPY more.txt /app/more.txt\n';

  async function build(id: string, admin: boolean, tenantScope: string | null) {
    const workDir = path.join(scratch, id);
    const contextDir = path.join(workDir, 'src');
    await mkdir(contextDir, { recursive: true });
    await writeFile(path.join(contextDir, 'data.txt'), 'data\n');
    await writeFile(path.join(contextDir, 'more.txt'), 'more\n');
    const plan = planBuild({ registry: registry.host, insecure: true, buildId: id, tenantScope, globalKey: 'scratch', admin });
    return backend.build({
      contextDir,
      dockerfilePath: await resolveDockerfile({ contextDir, workDir, dockerfileText: dockerfile }),
      plan,
      buildArgs: {},
      dockerConfigDir: await writeDockerConfig(path.join(workDir, 'docker'), registry.host, null),
      workDir,
      signal: new AbortController().signal,
      log: () => {},
    });
  }

  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-buildkit-'));
    registry = await startLocalRegistry(path.join(scratch, 'registry'));
  });

  after(async () => {
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('an admin build pushes the image and an image-manifest cache to cache/global/<key>', async () => {
    const result = await build('bk-admin', true, null);
    const pushed = await fetchManifest(registry.host, 'builds/bk-admin', 'latest');
    assert.ok(pushed);
    assert.equal(pushed.digest, result.digest);
    assert.equal(result.cache.totalSteps, 2);
    const cache = await fetchManifest(registry.host, 'cache/global/scratch', 'latest');
    assert.ok(cache, 'cache/global/scratch:latest exists');
    assert.equal(JSON.parse(cache.body.toString()).config.mediaType, 'application/vnd.buildkit.cacheconfig.v0');
  });

  it('a tenant build with the key is all cached, exports its own cache and leaves the global one alone', async () => {
    const globalBefore = await fetchManifest(registry.host, 'cache/global/scratch', 'latest');
    const result = await build('bk-tenant', false, 'tenant-bk');
    assert.deepEqual(result.cache, { totalSteps: 2, cachedSteps: 2 });
    assert.ok(await fetchManifest(registry.host, 'cache/tenant-bk', 'latest'));
    assert.equal((await fetchManifest(registry.host, 'cache/global/scratch', 'latest'))?.digest, globalBefore?.digest);
  });
});
