import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BuildkitBackend, buildctlBuildArguments, daemonlessBuildkitdConfig, parseBuildctlVersion } from './buildkit-backend.js';
import { BuildkitProgressTracker, imageDigestFromMetadata } from './buildkit-output.js';
import { BuildError } from './errors.js';
import { planBuild } from './plan.js';
import { buildkitFixturesDir } from './testing/fixtures.js';

const fixtures = buildkitFixturesDir();
const progress = (name: string) => readFileSync(path.join(fixtures, 'progress', name), 'utf8');

describe('buildctlBuildArguments', () => {
  it('passes the plan verbatim, imports in order, then the metadata file', () => {
    const plan = planBuild({ registry: '127.0.0.1:5000', insecure: true, buildId: 'job1', tenantScope: 'tenant-abc', globalKey: 'node', admin: false });
    const args = buildctlBuildArguments({
      contextDir: '/w/src',
      dockerfilePath: '/w/dockerfile/Dockerfile.custom',
      plan,
      buildArgs: { NODE_ENV: 'production' },
      platform: 'linux/arm64',
      metadataFile: '/w/meta.json',
    });
    assert.deepEqual(args, [
      'build', '--progress=plain', '--frontend', 'dockerfile.v0',
      '--local', 'context=/w/src',
      '--local', 'dockerfile=/w/dockerfile',
      '--opt', 'filename=Dockerfile.custom',
      '--opt', 'platform=linux/arm64',
      '--opt', 'build-arg:NODE_ENV=production',
      '--output', 'type=image,name=127.0.0.1:5000/builds/job1,push=true,oci-mediatypes=true,registry.insecure=true',
      '--import-cache', 'type=registry,ref=127.0.0.1:5000/cache/global/node,registry.insecure=true',
      '--import-cache', 'type=registry,ref=127.0.0.1:5000/cache/tenant-abc,registry.insecure=true',
      '--export-cache', 'type=registry,ref=127.0.0.1:5000/cache/tenant-abc,mode=max,image-manifest=true,oci-mediatypes=true,registry.insecure=true',
      '--metadata-file', '/w/meta.json',
    ]);
  });

  it('an admin build without a key imports and exports nothing', () => {
    const plan = planBuild({ registry: 'kiln.example', insecure: false, buildId: 'b2', tenantScope: null, globalKey: null, admin: true });
    const args = buildctlBuildArguments({ contextDir: '/c', dockerfilePath: '/c/Dockerfile', plan, buildArgs: {}, metadataFile: '/m' });
    assert.ok(!args.includes('--import-cache'));
    assert.ok(!args.includes('--export-cache'));
    assert.ok(!args.some((a) => a.startsWith('platform=')));
    assert.deepEqual(args.slice(-4), ['--output', 'type=image,name=kiln.example/builds/b2,push=true,oci-mediatypes=true', '--metadata-file', '/m']);
  });
});

describe('daemonlessBuildkitdConfig', () => {
  it('marks a plain-HTTP registry http and insecure, and nothing for HTTPS', () => {
    const http = planBuild({ registry: '127.0.0.1:5000', insecure: true, buildId: 'b', tenantScope: 'tenant-abc', admin: false });
    assert.equal(daemonlessBuildkitdConfig(http), '[registry."127.0.0.1:5000"]\n  http = true\n  insecure = true\n');
    assert.equal(daemonlessBuildkitdConfig({ ...http, insecure: false }), '');
  });
});

describe('BuildkitProgressTracker (fixture progress of BuildKit v0.20.2)', () => {
  const table: Array<{ file: string; totalSteps: number; cachedSteps: number }> = [
    { file: 'export-image-manifest.progress.txt', totalSteps: 4, cachedSteps: 0 },
    { file: 'export-index.progress.txt', totalSteps: 4, cachedSteps: 4 },
    { file: 'ephemeral-import-image-manifest.progress.txt', totalSteps: 4, cachedSteps: 4 },
    { file: 'ephemeral-import-index.progress.txt', totalSteps: 4, cachedSteps: 4 },
  ];
  for (const row of table) {
    it(`${row.file}: ${row.cachedSteps}/${row.totalSteps} steps cached`, () => {
      const tracker = new BuildkitProgressTracker();
      for (const line of progress(row.file).split('\n')) tracker.feed(line);
      assert.deepEqual(tracker.summary(), { totalSteps: row.totalSteps, cachedSteps: row.cachedSteps });
    });
  }

  it('counts multi-stage and multi-platform step names, and not FROM or internal vertices', () => {
    const tracker = new BuildkitProgressTracker();
    const lines = [
      '#1 [internal] load build definition from Dockerfile',
      '#1 CACHED',
      '#4 [builder 1/3] FROM docker.io/library/golang:1.22@sha256:abc',
      '#4 CACHED',
      '#5 [builder 2/3] RUN go build ./...',
      '#5 0.512 [1/2] this is RUN output, not a step',
      '#5 CACHED',
      '#6 [linux/arm64 stage-1 2/2] COPY --from=builder /out /app',
      '#6 DONE 0.1s',
    ];
    lines.forEach((l) => tracker.feed(l));
    assert.deepEqual(tracker.summary(), { totalSteps: 2, cachedSteps: 1 });
  });

  it('spots the start of the image export', () => {
    assert.equal(BuildkitProgressTracker.isExportLine('#10 exporting to image'), true);
    assert.equal(BuildkitProgressTracker.isExportLine('#10 exporting layers done'), false);
    assert.equal(BuildkitProgressTracker.isExportLine('#11 exporting cache to registry'), false);
  });
});

describe('imageDigestFromMetadata (fixture metadata files)', () => {
  for (const file of ['export-image-manifest.metadata.json', 'export-index.metadata.json']) {
    it(file, () => {
      assert.equal(
        imageDigestFromMetadata(progress(file)),
        'sha256:863bc7054de3638a726458d062bb63d8e761a3e868ddcbe1ac8b03aae467c8e2',
      );
    });
  }
  const bad: Array<[string, RegExp]> = [
    ['not json', /not JSON/],
    ['{}', /no valid containerimage.digest/],
    ['{"containerimage.digest":"sha256:short"}', /no valid containerimage.digest/],
    ['null', /no valid containerimage.digest/],
  ];
  for (const [text, message] of bad) {
    it(`rejects ${text}`, () => {
      assert.throws(() => imageDigestFromMetadata(text), (err: unknown) => err instanceof BuildError && message.test(err.message));
    });
  }
});

describe('parseBuildctlVersion', () => {
  it('takes the release from buildctl --version', () => {
    assert.equal(parseBuildctlVersion('buildctl github.com/moby/buildkit v0.20.2 97437fdd7e32f29bb80288d800cd4ffcb34e1c15\n'), 'v0.20.2');
  });
});

// The backend's process wiring, with a stand-in `buildctl` that records what it
// was given and replays the fixture output. (A real BuildKit run is in test/builds-buildkit.test.ts.)
describe('BuildkitBackend with a recording stand-in for buildctl', () => {
  const fakeBuildctl = [
    '#!/bin/sh',
    'printf "%s\\n" "$@" > "$FAKE_OUT/args"',
    'printf "%s\\n" "$DOCKER_CONFIG" > "$FAKE_OUT/docker-config"',
    'printf "%s\\n" "${BUILDKITD_FLAGS:-none}" > "$FAKE_OUT/buildkitd-flags"',
    'cat "$FAKE_PROGRESS" >&2',
    'while [ $# -gt 0 ]; do [ "$1" = --metadata-file ] && cp "$FAKE_METADATA" "$2"; shift; done',
    'exit "${FAKE_EXIT:-0}"',
  ].join('\n');

  async function setUp() {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-fake-buildctl-'));
    const script = path.join(dir, 'buildctl');
    await writeFile(script, fakeBuildctl, { mode: 0o755 });
    await mkdir(path.join(dir, 'work'));
    process.env.FAKE_OUT = dir;
    process.env.FAKE_PROGRESS = path.join(fixtures, 'progress', 'ephemeral-import-image-manifest.progress.txt');
    process.env.FAKE_METADATA = path.join(fixtures, 'progress', 'export-image-manifest.metadata.json');
    const plan = planBuild({ registry: '127.0.0.1:5000', insecure: true, buildId: 'job2', tenantScope: 'tenant-abc', globalKey: 'node', admin: false });
    const phases: string[] = [];
    const lines: string[] = [];
    const request = {
      contextDir: '/src',
      dockerfilePath: '/src/Dockerfile',
      plan,
      buildArgs: {},
      dockerConfigDir: path.join(dir, 'docker'),
      workDir: path.join(dir, 'work'),
      signal: new AbortController().signal,
      log: (l: string) => lines.push(l),
      onPhase: (p: string) => phases.push(p),
    };
    const read = (name: string) => readFile(path.join(dir, name), 'utf8');
    return { dir, script, request, phases, lines, read };
  }

  it('against BUILDKIT_HOST: --addr first, credentials via DOCKER_CONFIG, digest and cache use from the output', async () => {
    const { dir, script, request, phases, lines, read } = await setUp();
    try {
      const result = await new BuildkitBackend({ host: 'tcp://127.0.0.1:1234', buildctl: script }).build(request);
      assert.deepEqual(result, {
        imageName: '127.0.0.1:5000/builds/job2',
        digest: 'sha256:863bc7054de3638a726458d062bb63d8e761a3e868ddcbe1ac8b03aae467c8e2',
        cache: { totalSteps: 4, cachedSteps: 4 },
      });
      const args = (await read('args')).trimEnd().split('\n');
      assert.deepEqual(args.slice(0, 3), ['--addr', 'tcp://127.0.0.1:1234', 'build']);
      assert.deepEqual(args.slice(2), buildctlBuildArguments({ ...request, metadataFile: path.join(request.workDir, 'buildkit-metadata.json') }));
      assert.equal((await read('docker-config')).trim(), request.dockerConfigDir);
      assert.equal((await read('buildkitd-flags')).trim(), 'none');
      assert.deepEqual(phases, ['building', 'pushing']);
      assert.ok(lines.includes('#8 CACHED'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('without a host: the daemonless script, with a private daemon root and an HTTP registry config', async () => {
    const { dir, script, request, read } = await setUp();
    try {
      await new BuildkitBackend({ daemonlessScript: script }).build(request);
      assert.equal((await read('args')).split('\n')[0], 'build');
      const work = request.workDir;
      assert.equal((await read('buildkitd-flags')).trim(), `--root=${work}/buildkitd --config=${work}/buildkitd.toml`);
      assert.equal(await readFile(path.join(work, 'buildkitd.toml'), 'utf8'), daemonlessBuildkitdConfig(request.plan));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a failing buildctl fails the build with its last words', async () => {
    const { dir, script, request } = await setUp();
    process.env.FAKE_EXIT = '1';
    try {
      await assert.rejects(
        new BuildkitBackend({ host: 'tcp://x:1', buildctl: script }).build(request),
        (err: unknown) => err instanceof BuildError && err.kind === 'build-failed' && /^buildctl build failed \(exit code 1\)/.test(err.message),
      );
    } finally {
      delete process.env.FAKE_EXIT;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
