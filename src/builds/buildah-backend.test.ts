import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildahBudArguments,
  buildahLayout,
  buildahLoadArguments,
  buildahPushArguments,
  buildahTagArguments,
  cacheMirrorsConf,
  parseBuildahVersion,
} from './buildah-backend.js';
import { BuildahStepTracker } from './buildah-output.js';
import { planBuild, type PlanInput } from './plan.js';

const R = '127.0.0.1:5000';
const plan = (over: Partial<PlanInput>) =>
  planBuild({ registry: R, insecure: true, buildId: 'b7', tenantScope: 'tenant-abc', globalKey: 'node20', admin: false, ...over });
const layout = buildahLayout('/w');
const storage = ['--storage-driver', 'vfs', '--root', '/w/buildah/root', '--runroot', '/w/buildah/runroot'];

describe('buildahBudArguments', () => {
  it('tenant build with a key over HTTP: first import as --cache-from, tenant cache as --cache-to', () => {
    const args = buildahBudArguments({
      contextDir: '/w/src',
      dockerfilePath: '/w/Dockerfile',
      plan: plan({}),
      buildArgs: { A: '1', B: 'x y' },
      platform: 'linux/arm64',
      layout,
    });
    assert.deepEqual(args, [
      ...storage,
      'bud', '--isolation', 'chroot', '--tls-verify=false', '--format', 'oci',
      '--file', '/w/Dockerfile', '--tag', `${R}/builds/b7`, '--layers=true',
      '--cache-from', `${R}/cache/global/node20`,
      '--cache-to', `${R}/cache/tenant-abc`,
      '--platform', 'linux/arm64',
      '--build-arg', 'A=1', '--build-arg', 'B=x y',
      '/w/src',
    ]);
  });

  const table: Array<{ name: string; over: Partial<PlanInput>; from: string | null; to: string | null; layers: boolean; tls: boolean }> = [
    { name: 'tenant, no key, https', over: { globalKey: null, insecure: false }, from: `${R}/cache/tenant-abc`, to: `${R}/cache/tenant-abc`, layers: true, tls: true },
    { name: 'admin, key', over: { admin: true }, from: `${R}/cache/global/node20`, to: `${R}/cache/global/node20`, layers: true, tls: false },
    { name: 'admin, no key', over: { admin: true, globalKey: null }, from: null, to: null, layers: false, tls: false },
  ];
  for (const row of table) {
    it(row.name, () => {
      const args = buildahBudArguments({ contextDir: '/c', dockerfilePath: '/c/Dockerfile', plan: plan(row.over), buildArgs: {}, layout });
      const valueOf = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : null);
      assert.equal(valueOf('--cache-from'), row.from);
      assert.equal(valueOf('--cache-to'), row.to);
      assert.ok(args.includes(`--layers=${row.layers}`));
      assert.equal(args.includes('--tls-verify=false'), !row.tls);
      assert.equal(args.at(-1), '/c');
    });
  }
});

describe('base images from the service\'s layout', () => {
  it('bud pulls only missing images when base images were loaded beforehand', () => {
    const args = (preloaded?: boolean) =>
      buildahBudArguments({ contextDir: '/c', dockerfilePath: '/c/Dockerfile', plan: plan({}), buildArgs: {}, layout, preloadedBaseImages: preloaded });
    assert.ok(args(true).includes('--pull=false'));
    assert.ok(!args(false).some((a) => a.startsWith('--pull')));
    assert.ok(!args(undefined).some((a) => a.startsWith('--pull')));
  });

  it('loads from the layout by its relative name and tags the image with the FROM ref', () => {
    const image = { ref: `${R}/acme/base:1`, layoutDir: '/Data Dir/Tmp/build-x/base-images', layoutName: 'base0' };
    assert.deepEqual(buildahLoadArguments(image, layout), [...storage, 'pull', '--quiet', 'oci:base-images:base0']);
    assert.deepEqual(buildahTagArguments('f2f2a57b8d19', image.ref, layout), [...storage, 'tag', 'f2f2a57b8d19', `${R}/acme/base:1`]);
  });
});

describe('buildahPushArguments', () => {
  it('pushes the built name as latest, OCI, and writes the digest file', () => {
    assert.deepEqual(buildahPushArguments(plan({}), layout), [
      ...storage, 'push', '--tls-verify=false', '--format', 'oci', '--digestfile', '/w/image-digest',
      `${R}/builds/b7`, `docker://${R}/builds/b7:latest`,
    ]);
    assert.ok(!buildahPushArguments(plan({ insecure: false }), layout).includes('--tls-verify=false'));
  });
});

describe('cacheMirrorsConf', () => {
  it('makes the tenant cache a mirror of the global one, insecure over HTTP', () => {
    assert.equal(
      cacheMirrorsConf(plan({})),
      [
        '# Build b7: buildah reads one --cache-from; the other cache imports are its mirrors.',
        '[[registry]]',
        `prefix = "${R}/cache/global/node20"`,
        `location = "${R}/cache/global/node20"`,
        'insecure = true\n',
        '[[registry.mirror]]',
        `location = "${R}/cache/tenant-abc"`,
        'insecure = true\n',
      ].join('\n'),
    );
  });

  it('is not needed with one import or none', () => {
    assert.equal(cacheMirrorsConf(plan({ globalKey: null })), null);
    assert.equal(cacheMirrorsConf(plan({ admin: true })), null);
    assert.equal(cacheMirrorsConf(plan({ admin: true, globalKey: null })), null);
  });

  it('says nothing about TLS over HTTPS', () => {
    assert.ok(!cacheMirrorsConf(plan({ insecure: false }))!.includes('insecure'));
  });
});

// Output of buildah 1.28.2 (Debian 12) captured on this machine.
const firstBuild = [
  'STEP 1/4: FROM 127.0.0.1:5055/library/base',
  'Trying to pull 127.0.0.1:5055/library/base:latest...',
  'STEP 2/4: RUN mkdir -p /app && echo hello > /app/hello.txt',
  '--> Pushing cache 127.0.0.1:5055/cache/global/node:5f46881e082c1d75e34f857249ca977a859697e3c3fc5537f122faefb023c335',
  '--> 452f76f8a99',
  'STEP 3/4: COPY data.txt /app/data.txt',
  '--> Pushing cache 127.0.0.1:5055/cache/global/node:b8bb333d66cae03ffd6b86cc51d445ba96518b86afdcc03972e9bf72a41de778',
  '--> f3af161f9de',
  'STEP 4/4: RUN cat /app/data.txt /app/hello.txt > /app/combined.txt',
  'COMMIT 127.0.0.1:5055/builds/b1',
  '--> 6353458cfa6',
];
const remoteHits = [
  'STEP 1/4: FROM 127.0.0.1:5055/library/base',
  'STEP 2/4: RUN mkdir -p /app && echo hello > /app/hello.txt',
  '--> Cache pulled from remote 127.0.0.1:5055/cache/global/node:5f46881e082c1d75e34f857249ca977a859697e3c3fc5537f122faefb023c335',
  '--> Using cache 452f76f8a99110305e521e424ec7b78e402d1fc64c0eb72df1b4d818863d83ec',
  '--> 452f76f8a99',
  'STEP 3/4: COPY data.txt /app/data.txt',
  '--> Cache pulled from remote 127.0.0.1:5055/cache/global/node:b8bb333d66cae03ffd6b86cc51d445ba96518b86afdcc03972e9bf72a41de778',
  '--> Using cache f3af161f9de37c8254c6855fe8813aea9066ac7d2d8150281b608e4ca47a476d',
  '--> f3af161f9de',
  'STEP 4/4: RUN cat /app/data.txt /app/hello.txt > /app/combined.txt',
  'COMMIT 127.0.0.1:5055/builds/b2',
  '--> 6353458cfa6',
];
// ARG and ENV are steps to buildah, but not to BuildKit: not counted.
const configSteps = [
  'STEP 1/5: FROM 127.0.0.1:5055/library/base',
  'STEP 2/5: ARG GREETING=hello',
  '--> Using cache af28f902576d376286341ea8dfc2c73bc69d58edc7005ed53453434053bbcfff',
  '--> af28f902576',
  'STEP 3/5: RUN echo "$GREETING" > /g',
  '--> Using cache 2d39d10722fffe85fb942ebb5b7ec417159e3dc49d8a54b7b494087ecd69f7c8',
  '--> 2d39d10722f',
  'STEP 4/5: ENV X=1',
  '--> Using cache d17da9059d05617c134cd58646fb761154bcd73e3046e9cb2185c42e9ba9eff8',
  '--> d17da9059d0',
  'STEP 5/5: RUN echo 2 > /h',
  '--> aac4a85a0fd',
];
const multiStageHits = [
  '[1/2] STEP 1/2: FROM 127.0.0.1:5055/library/base AS b',
  '[1/2] STEP 2/2: RUN echo hi > /x',
  '--> Using cache acb73884cff66f6d69f73263a720d1ac4af9c300631d46967523575ccac96117',
  '--> acb73884cff',
  '[2/2] STEP 1/2: FROM 127.0.0.1:5055/library/base',
  '[2/2] STEP 2/2: COPY --from=b /x /y',
  '[2/2] COMMIT',
  '--> e497123cce1',
];

describe('BuildahStepTracker', () => {
  const table: Array<{ name: string; lines: string[]; totalSteps: number; cachedSteps: number }> = [
    { name: 'first build: nothing cached', lines: firstBuild, totalSteps: 3, cachedSteps: 0 },
    { name: 'hits pulled from --cache-from', lines: remoteHits, totalSteps: 3, cachedSteps: 2 },
    { name: 'multi-stage: steps of both stages', lines: multiStageHits, totalSteps: 2, cachedSteps: 1 },
    { name: 'ARG and ENV are not counted', lines: configSteps, totalSteps: 2, cachedSteps: 1 },
    { name: 'no output', lines: [], totalSteps: 0, cachedSteps: 0 },
  ];
  for (const row of table) {
    it(row.name, () => {
      const tracker = new BuildahStepTracker();
      row.lines.forEach((l) => tracker.feed(l));
      assert.deepEqual(tracker.summary(), { totalSteps: row.totalSteps, cachedSteps: row.cachedSteps });
    });
  }
});

describe('parseBuildahVersion', () => {
  it('takes the release from buildah --version', () => {
    assert.equal(parseBuildahVersion('buildah version 1.28.2 (image-spec 1.1.0-rc2, runtime-spec 1.0.2-dev)\n'), '1.28.2');
  });
});
