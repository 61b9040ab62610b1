import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ImageConfigError, normalizeManifest, parseImageConfig, type ImageConfig } from './image-config.js';
import { parseManifest } from './manifest.js';
import { buildkitFixtures } from '../../test/helpers/paths.js';

const FIXTURES = buildkitFixtures;
const DIFF = `sha256:${'1'.repeat(64)}`;
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const bytes = (doc: unknown) => Buffer.from(JSON.stringify(doc));
const base = { os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [DIFF] } };
const emptyRun = { entrypoint: [], cmd: [], env: [], workingDir: '', user: '', exposedPorts: [], labels: {} };

describe('parseImageConfig', () => {
  const table: Array<[string, Uint8Array, ImageConfig]> = [
    ['BuildKit fixture (OCI)', readFileSync(path.join(FIXTURES, 'built-image.config.json')), {
      os: 'linux',
      architecture: 'amd64',
      run: { ...emptyRun, cmd: ['sh'], env: [PATH] },
      diffIds: [
        'sha256:6c68c26f024eec1740da548c8a76842209083cf1958b467ed89fc3be533d20b6',
        'sha256:336d3077ab3450f609b854be883a00e2b56b04ca4db8d6290aec8ec759735fbf',
        'sha256:61443e2f3b8374f18f24b3b1711e8a9b2718b45490f352e7d3c726656248a69b',
        'sha256:4b1c7c4344dc63056a8bc919c8cf4c426e867bdce5f979d5f5928989d2435286',
        'sha256:ad16e380c798a243891dd1675a279130c088283d0c041ddbabc7b08de0e2e5ea',
      ],
    }],
    ['every run field', bytes({
      ...base,
      variant: 'v8',
      architecture: 'arm64',
      config: {
        Entrypoint: ['/usr/local/bin/docker-entrypoint.sh'],
        Cmd: ['node', 'server.js'],
        Env: [PATH, 'NODE_ENV=production'],
        WorkingDir: '/srv/app',
        User: '1000:1000',
        ExposedPorts: { '8080/tcp': {}, '53/udp': {} },
        StopSignal: 'SIGQUIT',
        Labels: { 'org.opencontainers.image.title': 'app' },
        Volumes: { '/data': {} },
      },
    }), {
      os: 'linux',
      architecture: 'arm64',
      variant: 'v8',
      run: {
        entrypoint: ['/usr/local/bin/docker-entrypoint.sh'],
        cmd: ['node', 'server.js'],
        env: [PATH, 'NODE_ENV=production'],
        workingDir: '/srv/app',
        user: '1000:1000',
        exposedPorts: ['53/udp', '8080/tcp'],
        stopSignal: 'SIGQUIT',
        labels: { 'org.opencontainers.image.title': 'app' },
      },
      diffIds: [DIFF],
    }],
    ['Docker nulls', bytes({ ...base, config: { Entrypoint: null, Cmd: null, Env: null, Labels: null, ExposedPorts: null, WorkingDir: null } }),
      { os: 'linux', architecture: 'amd64', run: emptyRun, diffIds: [DIFF] }],
    ['no config section', bytes(base), { os: 'linux', architecture: 'amd64', run: emptyRun, diffIds: [DIFF] }],
  ];
  for (const [name, input, expected] of table) it(name, () => assert.deepEqual(parseImageConfig(input), expected));

  const bad: Array<[string, unknown, RegExp]> = [
    ['not an object', [1], /must be a JSON object/],
    ['no os', { ...base, os: undefined }, /"os" must be a non-empty string/],
    ['no rootfs', { os: 'linux', architecture: 'amd64' }, /"rootfs" must be an object/],
    ['wrong rootfs type', { ...base, rootfs: { type: 'zfs', diff_ids: [] } }, /rootfs.type/],
    ['bad diff id', { ...base, rootfs: { type: 'layers', diff_ids: ['md5:x'] } }, /diff_ids\[0\]/],
    ['Cmd as a string', { ...base, config: { Cmd: 'sh -c x' } }, /"config.Cmd" must be an array of strings/],
    ['Labels with numbers', { ...base, config: { Labels: { a: 1 } } }, /"config.Labels" must be a map of strings/],
  ];
  for (const [name, doc, pattern] of bad) {
    it(`rejects ${name}`, () => assert.throws(() => parseImageConfig(bytes(doc)), (err: Error) => err instanceof ImageConfigError && pattern.test(err.message)));
  }
  it('rejects invalid JSON', () => assert.throws(() => parseImageConfig(Buffer.from('{')), /not valid JSON/));
});

describe('normalizeManifest', () => {
  const digest = (c: string) => `sha256:${c.repeat(64)}`;
  it('maps Docker schema 2 image types to OCI and keeps everything else', () => {
    const docker = parseManifest(bytes({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: digest('a'), size: 1 },
      layers: [
        { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: digest('b'), size: 2 },
        { mediaType: 'application/vnd.docker.image.rootfs.diff.tar', digest: digest('c'), size: 3 },
        { mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', digest: digest('d'), size: 4, urls: ['https://x/y'] },
        { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.zstd', digest: digest('e'), size: 5 },
      ],
    }));
    const before = structuredClone(docker);
    const oci = normalizeManifest(docker);
    assert.deepEqual(docker, before, 'the input is not modified');
    assert.equal(oci.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.ok(oci.kind === 'image');
    assert.equal(oci.config.mediaType, 'application/vnd.oci.image.config.v1+json');
    assert.deepEqual(oci.layers.map((l) => l.mediaType), [
      'application/vnd.oci.image.layer.v1.tar+gzip',
      'application/vnd.oci.image.layer.v1.tar',
      'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
      'application/vnd.oci.image.layer.v1.tar+zstd',
    ]);
    assert.deepEqual(oci.layers.map((l) => [l.digest, l.size]), docker.kind === 'image' ? docker.layers.map((l) => [l.digest, l.size]) : []);
    assert.deepEqual(oci.layers[2].urls, ['https://x/y']);
  });

  it('maps a Docker manifest list to an OCI index', () => {
    const list = parseManifest(bytes({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
      manifests: [{ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: digest('a'), size: 1, platform: { os: 'linux', architecture: 'amd64' } }],
    }));
    const oci = normalizeManifest(list);
    assert.equal(oci.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.ok(oci.kind === 'index');
    assert.deepEqual(oci.manifests[0], { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest('a'), size: 1, platform: { os: 'linux', architecture: 'amd64' } });
  });

  it('leaves OCI manifests as they are', () => {
    const m = parseManifest(readFileSync(path.join(FIXTURES, 'cache-image-manifest.manifest.json')));
    assert.deepEqual(normalizeManifest(m), m);
  });
});
