import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildctlBuildArguments, parseBuildctlVersion } from './buildctl.js';
import { BuildkitProgressTracker, imageDigestFromMetadata } from './progress.js';
import { BuildError } from '../errors.js';
import { planBuild } from '../plan.js';
import { buildkitFixturesDir } from '../testing/fixtures.js';

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
      secretIds: ['npmrc', 'aws'],
    });
    assert.deepEqual(args, [
      'build', '--progress=plain', '--frontend', 'dockerfile.v0',
      '--local', 'context=/w/src',
      '--local', 'dockerfile=/w/dockerfile',
      '--opt', 'filename=Dockerfile.custom',
      '--opt', 'platform=linux/arm64',
      '--opt', 'build-arg:NODE_ENV=production',
      '--secret', 'id=npmrc,env=KILN_BUILD_SECRET_0',
      '--secret', 'id=aws,env=KILN_BUILD_SECRET_1',
      '--output', 'type=image,name=127.0.0.1:5000/builds/job1,push=true,oci-mediatypes=true,registry.insecure=true',
      '--import-cache', 'type=registry,ref=127.0.0.1:5000/cache/global/node,registry.insecure=true',
      '--import-cache', 'type=registry,ref=127.0.0.1:5000/cache/tenant-abc,registry.insecure=true',
      '--export-cache', 'type=registry,ref=127.0.0.1:5000/cache/tenant-abc,mode=max,image-manifest=true,oci-mediatypes=true,registry.insecure=true',
      '--metadata-file', '/w/meta.json',
    ]);
  });

  it('an admin build without a key imports and exports nothing', () => {
    const plan = planBuild({ registry: 'kiln.example', insecure: false, buildId: 'b2', tenantScope: null, globalKey: null, admin: true });
    const args = buildctlBuildArguments({ contextDir: '/c', dockerfilePath: '/c/Dockerfile', plan, buildArgs: {}, metadataFile: '/m', secretIds: [] });
    assert.ok(!args.includes('--import-cache'));
    assert.ok(!args.includes('--export-cache'));
    assert.ok(!args.some((a) => a.startsWith('platform=')));
    assert.ok(!args.includes('--secret'));
    assert.ok(!args.includes('--allow'), 'no entitlement is ever asked for');
    assert.deepEqual(args.slice(-4), ['--output', 'type=image,name=kiln.example/builds/b2,push=true,oci-mediatypes=true', '--metadata-file', '/m']);
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

