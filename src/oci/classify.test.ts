import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  classify,
  isCacheLocation,
  isNotRunnable,
  noPlatformMessage,
  notRunnableMessage,
  parsePlatformSpec,
  type Classification,
} from './classify.js';
import { parseManifest } from './manifest.js';
import { buildkitFixtures } from '../../test/helpers/paths.js';

const FIXTURES = buildkitFixtures;
const CACHE = 'application/vnd.buildkit.cacheconfig.v0';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;
const DIGEST_C = `sha256:${'c'.repeat(64)}`;
const DIGEST_D = `sha256:${'d'.repeat(64)}`;

function fixture(file: string, contentType?: string) {
  return parseManifest(readFileSync(path.join(FIXTURES, file)), contentType);
}
function json(doc: unknown, contentType?: string) {
  return parseManifest(Buffer.from(JSON.stringify(doc)), contentType);
}

const ociImage = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: OCI_CONFIG, digest: DIGEST_A, size: 10 },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: DIGEST_B, size: 20 }],
});
const dockerImage = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
  config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: DIGEST_A, size: 10 },
  layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: DIGEST_B, size: 20 }],
});
const child = (digest: string, platform: object, extra: object = {}) => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest,
  size: 500,
  platform,
  ...extra,
});
const attestation = child(DIGEST_D, { os: 'unknown', architecture: 'unknown' }, {
  annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': DIGEST_B },
});
const multiIndex = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [
    child(DIGEST_A, { os: 'linux', architecture: 'arm64' }),
    child(DIGEST_B, { os: 'linux', architecture: 'amd64' }),
    attestation,
  ],
});
const dockerList = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
  manifests: [
    { ...child(DIGEST_A, { os: 'linux', architecture: 'arm', variant: 'v7' }), mediaType: 'application/vnd.docker.distribution.manifest.v2+json' },
    { ...child(DIGEST_B, { os: 'linux', architecture: 'amd64' }), mediaType: 'application/vnd.docker.distribution.manifest.v2+json' },
  ],
});
// An attestation that only has the placeholder platform, no annotation.
const onlyAttestations = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [child(DIGEST_C, { os: 'unknown', architecture: 'unknown' }), attestation],
});
const signature = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: DIGEST_A, size: 2 },
  layers: [{ mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json', digest: DIGEST_B, size: 20 }],
  subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: DIGEST_C, size: 500 },
});
const helmChart = json({
  schemaVersion: 2,
  config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: DIGEST_A, size: 10 },
  layers: [{ mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', digest: DIGEST_B, size: 20 }],
}, 'application/vnd.oci.image.manifest.v1+json');
const sbomIndex = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  artifactType: 'application/spdx+json',
  manifests: [child(DIGEST_A, { os: 'linux', architecture: 'amd64' })],
});

const runnable = (configMediaType = OCI_CONFIG): Classification => ({ kind: 'runnable-image', configMediaType });

describe('classify', () => {
  const table: Array<[string, ReturnType<typeof parseManifest>, string, Classification]> = [
    // BuildKit v0.20.2 fixtures, under the repos they were pushed to and elsewhere.
    ['fixture base image (no mediaType field)', fixture('base-image.manifest.json', 'application/vnd.oci.image.manifest.v1+json'), 'library/base', runnable()],
    ['fixture built image', fixture('built-image.manifest.json'), 'builds/job1', runnable()],
    ['fixture built image pushed under cache/', fixture('built-image.manifest.json'), 'cache/job1', { kind: 'build-cache-location', repo: 'cache/job1', mediaType: OCI_CONFIG, typeOf: 'config' }],
    ['fixture image-manifest cache', fixture('cache-image-manifest.manifest.json'), 'cache/global/node', { kind: 'build-cache', form: 'image-manifest', mediaType: CACHE }],
    ['fixture image-manifest cache outside cache/', fixture('cache-image-manifest.manifest.json'), 'acme/app', { kind: 'build-cache', form: 'image-manifest', mediaType: CACHE }],
    ['fixture re-exported cache', fixture('cache-image-manifest-reexport.manifest.json'), 'cache/proxy/tenant', { kind: 'build-cache', form: 'image-manifest', mediaType: CACHE }],
    ['fixture legacy index cache', fixture('cache-index.index.json'), 'cache/tenant-abc/legacy', { kind: 'build-cache', form: 'index', mediaType: CACHE }],
    ['fixture legacy index cache outside cache/', fixture('cache-index.index.json'), 'team/legacy', { kind: 'build-cache', form: 'index', mediaType: CACHE }],
    // Hand-made manifests.
    ['OCI image', ociImage, 'acme/app', runnable()],
    ['Docker v2 image', dockerImage, 'acme/app', runnable('application/vnd.docker.container.image.v1+json')],
    ['image in acme/cache/app is ordinary', ociImage, 'acme/cache/app', runnable()],
    ['image behind a registry host under cache/', ociImage, '10.0.0.1:8083/cache/global/node', { kind: 'build-cache-location', repo: '10.0.0.1:8083/cache/global/node', mediaType: OCI_CONFIG, typeOf: 'config' }],
    ['signature artifact', signature, 'acme/app', { kind: 'artifact', mediaType: 'application/vnd.oci.empty.v1+json', typeOf: 'config', artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json' }],
    ['helm chart (other config type)', helmChart, 'acme/chart', { kind: 'artifact', mediaType: 'application/vnd.cncf.helm.config.v1+json', typeOf: 'config' }],
    ['index with artifactType', sbomIndex, 'acme/app', { kind: 'artifact', mediaType: 'application/vnd.oci.image.index.v1+json', typeOf: 'index', artifactType: 'application/spdx+json' }],
    ['index of attestations only', onlyAttestations, 'acme/app', { kind: 'artifact', mediaType: 'application/vnd.oci.image.index.v1+json', typeOf: 'index' }],
    ['multi-platform index under cache/', multiIndex, 'cache/x', { kind: 'build-cache-location', repo: 'cache/x', mediaType: 'application/vnd.oci.image.index.v1+json', typeOf: 'index' }],
  ];
  for (const [name, manifest, repo, expected] of table) {
    it(name, () => assert.deepEqual(classify(manifest, repo), expected));
  }

  it('bakes linux/amd64 from an OCI index by default and never the attestation', () => {
    const c = classify(multiIndex, 'acme/app');
    assert.equal(c.kind, 'multi-platform-image');
    if (c.kind !== 'multi-platform-image') return;
    assert.deepEqual(c.toBake.map((d) => d.digest), [DIGEST_B]);
    assert.deepEqual(c.available, [{ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'amd64' }]);
  });

  it('bakes the configured platforms in order, treating arm64 without variant as v8', () => {
    const platforms = [parsePlatformSpec('linux/arm64/v8'), parsePlatformSpec('linux/amd64'), parsePlatformSpec('linux/amd64')];
    const c = classify(multiIndex, 'acme/app', { platforms });
    assert.equal(c.kind, 'multi-platform-image');
    if (c.kind === 'multi-platform-image') assert.deepEqual(c.toBake.map((d) => d.digest), [DIGEST_A, DIGEST_B]);
  });

  it('matches variants in a Docker list', () => {
    const c = classify(dockerList, 'acme/app', { platforms: [parsePlatformSpec('linux/arm/v7')] });
    assert.equal(c.kind, 'multi-platform-image');
    if (c.kind === 'multi-platform-image') assert.deepEqual(c.toBake.map((d) => d.digest), [DIGEST_A]);
    const none = classify(dockerList, 'acme/app', { platforms: [parsePlatformSpec('linux/arm/v6')] });
    assert.equal(none.kind === 'multi-platform-image' && none.toBake.length, 0);
  });

  it('explains an index without the wanted platform', () => {
    const c = classify(dockerList, 'acme/app', { platforms: [parsePlatformSpec('linux/s390x')] });
    assert.equal(c.kind, 'multi-platform-image');
    if (c.kind !== 'multi-platform-image') return;
    assert.equal(noPlatformMessage(c, [parsePlatformSpec('linux/s390x')]), 'index has no image for linux/s390x (it offers: linux/arm/v7, linux/amd64)');
  });
});

describe('isCacheLocation', () => {
  const table: Array<[string, boolean]> = [
    ['cache', true],
    ['cache/global/node', true],
    ['cache/tenant-abc/legacy', true],
    ['10.0.0.1:8083/cache/global/node', true],
    ['registry.example.com/cache/x', true],
    ['localhost/cache/x', true],
    ['localhost:5000/cache/x', true],
    ['acme/cache/app', false],
    ['caches/x', false],
    ['cachex', false],
    ['library/cache', false],
    ['registry.example.com/acme/cache', false],
    ['localhost', false],
  ];
  for (const [repo, expected] of table) it(`${repo} → ${expected}`, () => assert.equal(isCacheLocation(repo), expected));
});

describe('notRunnableMessage', () => {
  const message = (m: ReturnType<typeof parseManifest>, repo: string) => {
    const c = classify(m, repo);
    assert.ok(isNotRunnable(c), `${repo} should not be runnable`);
    return notRunnableMessage(c);
  };
  it('names the cacheconfig type for the image-manifest cache form', () => {
    assert.equal(message(fixture('cache-image-manifest.manifest.json'), 'cache/global/node'),
      'not a runnable image: config media type application/vnd.buildkit.cacheconfig.v0 (BuildKit cache)');
  });
  it('names the cacheconfig type for the index cache form', () => {
    assert.equal(message(fixture('cache-index.index.json'), 'cache/tenant-abc/legacy'),
      'not a runnable image: index entry media type application/vnd.buildkit.cacheconfig.v0 (BuildKit cache, legacy index form)');
  });
  it('names the config type and location for an image under cache/', () => {
    assert.equal(message(ociImage, 'cache/global/node'),
      'not a runnable image: config media type application/vnd.oci.image.config.v1+json in cache/global/node, a build cache location (repositories under cache/ are never baked)');
  });
  it('names the config type and artifact type of an artifact', () => {
    assert.equal(message(signature, 'acme/app'),
      'not a runnable image: config media type application/vnd.oci.empty.v1+json (artifact of type application/vnd.dev.sigstore.bundle.v0.3+json)');
    assert.equal(message(helmChart, 'acme/chart'), 'not a runnable image: config media type application/vnd.cncf.helm.config.v1+json (artifact)');
  });
  it('is not offered for runnable images', () => {
    assert.equal(isNotRunnable(classify(ociImage, 'acme/app')), false);
    assert.equal(isNotRunnable(classify(multiIndex, 'acme/app')), false);
  });
});

describe('parsePlatformSpec', () => {
  it('parses os/arch and os/arch/variant', () => {
    assert.deepEqual(parsePlatformSpec('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parsePlatformSpec(' linux/arm64/v8 '), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  });
  for (const bad of ['linux', 'linux/', 'a/b/c/d', 'Linux/AMD64', '']) {
    it(`rejects "${bad}"`, () => assert.throws(() => parsePlatformSpec(bad), /not a platform/));
  }
});
