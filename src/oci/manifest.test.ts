import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildkitFixtures } from '../../test/helpers/paths.js';
import { MAX_MANIFEST_BYTES, ManifestError, parseManifest, referencedDescriptors, type Manifest } from './manifest.js';
import {
  BUILDKIT_CACHE_CONFIG,
  DOCKER_CONFIG,
  DOCKER_FOREIGN_LAYER,
  DOCKER_LAYER_GZIP,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  OCI_CONFIG,
  OCI_EMPTY,
  OCI_INDEX,
  OCI_LAYER_GZIP,
  OCI_LAYER_ND_GZIP,
  OCI_MANIFEST,
} from './media-types.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const desc = (mediaType: string, c: string, size = 10, extra: object = {}) => ({ mediaType, digest: D(c), size, ...extra });
const bytes = (doc: unknown) => Buffer.from(JSON.stringify(doc));

const ociManifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(OCI_CONFIG, 'a'), layers: [desc(OCI_LAYER_GZIP, 'b', 20)] };
const ociIndex = {
  schemaVersion: 2,
  mediaType: OCI_INDEX,
  manifests: [
    desc(OCI_MANIFEST, 'c', 300, { platform: { architecture: 'amd64', os: 'linux' } }),
    desc(OCI_MANIFEST, 'd', 300, { platform: { architecture: 'arm64', os: 'linux', variant: 'v8', 'os.features': ['x'] } }),
  ],
};
const dockerManifest = { schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: desc(DOCKER_CONFIG, 'a'), layers: [desc(DOCKER_LAYER_GZIP, 'b', 20)] };
const dockerList = { schemaVersion: 2, mediaType: DOCKER_LIST, manifests: [desc(DOCKER_MANIFEST, 'c', 300, { platform: { architecture: 'amd64', os: 'linux' } })] };
const artifact = {
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  artifactType: 'application/vnd.example.sbom.v1+json',
  config: desc(OCI_EMPTY, 'e', 2),
  layers: [desc('application/spdx+json', 'f', 99)],
  subject: desc(OCI_MANIFEST, '1', 500),
  annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
};

function expectError(fn: () => unknown, code: ManifestError['code'], message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ManifestError, `expected ManifestError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('parseManifest: accepted manifests', () => {
  // [name, body, Content-Type, expected kind, expected media type]
  const table: [string, unknown, string | undefined, Manifest['kind'], string][] = [
    ['OCI manifest with matching Content-Type', ociManifest, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['OCI manifest, Content-Type with parameters', ociManifest, `${OCI_MANIFEST}; charset=utf-8`, 'image', OCI_MANIFEST],
    ['OCI manifest, no Content-Type', ociManifest, undefined, 'image', OCI_MANIFEST],
    ['OCI manifest, generic application/json', ociManifest, 'application/json', 'image', OCI_MANIFEST],
    ['OCI manifest, application/octet-stream', ociManifest, 'application/octet-stream', 'image', OCI_MANIFEST],
    ['OCI manifest without layers (artifact style)', { ...ociManifest, layers: [] }, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['OCI index', ociIndex, OCI_INDEX, 'index', OCI_INDEX],
    ['empty OCI index', { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }, OCI_INDEX, 'index', OCI_INDEX],
    ['Docker schema 2 manifest', dockerManifest, DOCKER_MANIFEST, 'image', DOCKER_MANIFEST],
    ['Docker manifest list', dockerList, DOCKER_LIST, 'index', DOCKER_LIST],
    ['umoci manifest (no mediaType) pushed with OCI Content-Type', { schemaVersion: 2, config: ociManifest.config, layers: ociManifest.layers }, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['no mediaType, no Content-Type, has config: an OCI manifest', { schemaVersion: 2, config: ociManifest.config, layers: [] }, undefined, 'image', OCI_MANIFEST],
    ['no mediaType, no Content-Type, has manifests: an OCI index', { schemaVersion: 2, manifests: [] }, undefined, 'index', OCI_INDEX],
    ['no mediaType, Docker Content-Type', { schemaVersion: 2, config: dockerManifest.config, layers: dockerManifest.layers }, DOCKER_MANIFEST, 'image', DOCKER_MANIFEST],
    ['no mediaType in an index, OCI index Content-Type', { schemaVersion: 2, manifests: ociIndex.manifests }, OCI_INDEX, 'index', OCI_INDEX],
    ['artifact with artifactType and subject', artifact, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['index with artifactType', { ...ociIndex, artifactType: 'application/vnd.example.bundle' }, OCI_INDEX, 'index', OCI_INDEX],
    [
      'artifact with a custom manifest media type and artifactType',
      { ...artifact, mediaType: 'application/vnd.example.artifact.manifest.v1+json' },
      'application/vnd.example.artifact.manifest.v1+json',
      'image',
      'application/vnd.example.artifact.manifest.v1+json',
    ],
    [
      'custom type given only by Content-Type, with artifactType',
      { schemaVersion: 2, artifactType: 'application/vnd.example.x', config: desc(OCI_EMPTY, 'e', 2), layers: [] },
      'application/vnd.example.artifact.manifest.v1+json',
      'image',
      'application/vnd.example.artifact.manifest.v1+json',
    ],
    ['manifest with a custom config type (Helm style)', { ...ociManifest, config: desc('application/vnd.cncf.helm.config.v1+json', 'a') }, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['BuildKit cache manifest (cacheconfig config)', { ...ociManifest, config: desc(BUILDKIT_CACHE_CONFIG, 'a') }, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['index whose children are blobs (BuildKit cache index)', { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [desc(OCI_LAYER_GZIP, 'b'), desc(BUILDKIT_CACHE_CONFIG, 'a')] }, OCI_INDEX, 'index', OCI_INDEX],
    ['non-distributable layer with urls', { ...ociManifest, layers: [desc(OCI_LAYER_ND_GZIP, 'b', 20, { urls: ['https://example.com/l'] })] }, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['Docker foreign layer', { ...dockerManifest, layers: [desc(DOCKER_FOREIGN_LAYER, 'b', 20, { urls: ['https://example.com/l'] })] }, DOCKER_MANIFEST, 'image', DOCKER_MANIFEST],
    ['unknown top-level fields are ignored', { ...ociManifest, somethingNew: { a: 1 } }, OCI_MANIFEST, 'image', OCI_MANIFEST],
    ['size 0 descriptor', { ...ociManifest, layers: [desc(OCI_LAYER_GZIP, 'b', 0)] }, OCI_MANIFEST, 'image', OCI_MANIFEST],
  ];
  for (const [name, body, contentType, kind, mediaType] of table) {
    it(name, () => {
      const m = parseManifest(bytes(body), contentType);
      assert.equal(m.kind, kind);
      assert.equal(m.mediaType, mediaType);
    });
  }

  it('keeps descriptors, platform, artifactType, subject and annotations', () => {
    const m = parseManifest(bytes(artifact), OCI_MANIFEST);
    assert.equal(m.kind, 'image');
    assert.equal(m.artifactType, artifact.artifactType);
    assert.deepEqual(m.subject, artifact.subject);
    assert.deepEqual(m.annotations, artifact.annotations);
    if (m.kind !== 'image') return;
    assert.deepEqual(m.config, artifact.config);
    assert.deepEqual(m.layers, artifact.layers);
    const idx = parseManifest(bytes(ociIndex), OCI_INDEX);
    assert.equal(idx.kind, 'index');
    if (idx.kind === 'index') {
      assert.deepEqual(idx.manifests.map((c) => c.platform), [
        { architecture: 'amd64', os: 'linux' },
        { architecture: 'arm64', os: 'linux', variant: 'v8', 'os.features': ['x'] },
      ]);
    }
  });

  it('referencedDescriptors: config then layers, or the index children; never the subject', () => {
    assert.deepEqual(referencedDescriptors(parseManifest(bytes(artifact))).map((d) => d.digest), [D('e'), D('f')]);
    assert.deepEqual(referencedDescriptors(parseManifest(bytes(ociIndex))).map((d) => d.digest), [D('c'), D('d')]);
  });

  it('parses a sha512 descriptor', () => {
    const m = parseManifest(bytes({ ...ociManifest, config: { mediaType: OCI_CONFIG, digest: `sha512:${'a'.repeat(128)}`, size: 1 } }));
    assert.equal(m.kind === 'image' && m.config.digest.startsWith('sha512:'), true);
  });

  it('accepts exactly the size limit and reads a Uint8Array view', () => {
    const doc = bytes(ociManifest);
    const padded = Buffer.alloc(MAX_MANIFEST_BYTES, 0x20);
    doc.copy(padded);
    assert.equal(parseManifest(padded, OCI_MANIFEST).kind, 'image');
    const backing = Buffer.concat([Buffer.from('garbage'), doc, Buffer.from('garbage')]);
    assert.equal(parseManifest(new Uint8Array(backing.buffer, backing.byteOffset + 7, doc.length)).kind, 'image');
  });
});

describe('parseManifest: the BuildKit fixtures', () => {
  const fixtures: [string, string, Manifest['kind'], number][] = [
    ['base-image.manifest.json', OCI_MANIFEST, 'image', 2],
    ['built-image.manifest.json', OCI_MANIFEST, 'image', 6],
    ['cache-image-manifest.manifest.json', OCI_MANIFEST, 'image', 6],
    ['cache-image-manifest-reexport.manifest.json', OCI_MANIFEST, 'image', 6],
    ['cache-index.index.json', OCI_INDEX, 'index', 6],
  ];
  for (const [file, contentType, kind, refs] of fixtures) {
    it(`${file} parses as ${kind} with ${refs} references`, () => {
      const m = parseManifest(readFileSync(path.join(buildkitFixtures, file)), contentType);
      assert.equal(m.kind, kind);
      assert.equal(m.mediaType, contentType);
      assert.equal(referencedDescriptors(m).length, refs);
    });
  }
  it('the base image has no mediaType field and is typed by its Content-Type', () => {
    const raw = readFileSync(path.join(buildkitFixtures, 'base-image.manifest.json'));
    assert.equal('mediaType' in JSON.parse(raw.toString()), false);
    assert.equal(parseManifest(raw, OCI_MANIFEST).mediaType, OCI_MANIFEST);
  });
  it('the cache index lists layer blobs and the cacheconfig, not manifests', () => {
    const m = parseManifest(readFileSync(path.join(buildkitFixtures, 'cache-index.index.json')), OCI_INDEX);
    assert.equal(m.kind, 'index');
    const types = referencedDescriptors(m).map((d) => d.mediaType);
    assert.deepEqual(types, [...Array(5).fill(OCI_LAYER_GZIP), BUILDKIT_CACHE_CONFIG]);
  });
});

describe('parseManifest: refused manifests', () => {
  // [name, raw body, Content-Type, error code, message pattern]
  const table: [string, Buffer, string | undefined, ManifestError['code'], RegExp][] = [
    ['not JSON', Buffer.from('{"schemaVersion":2,'), OCI_MANIFEST, 'MANIFEST_INVALID', /not valid JSON/],
    ['empty body', Buffer.alloc(0), OCI_MANIFEST, 'MANIFEST_INVALID', /not valid JSON/],
    ['JSON array', bytes([ociManifest]), OCI_MANIFEST, 'MANIFEST_INVALID', /JSON object/],
    ['JSON null', bytes(null), OCI_MANIFEST, 'MANIFEST_INVALID', /JSON object/],
    ['JSON string', bytes('manifest'), OCI_MANIFEST, 'MANIFEST_INVALID', /JSON object/],
    ['invalid UTF-8 / binary', Buffer.from([0xff, 0xfe, 0x00, 0x01]), OCI_MANIFEST, 'MANIFEST_INVALID', /not valid JSON/],
    ['over 4 MiB', Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20), OCI_MANIFEST, 'MANIFEST_INVALID', /limit/],
    ['Content-Type disagrees with mediaType (index sent as manifest)', bytes(ociIndex), OCI_MANIFEST, 'MANIFEST_INVALID', /does not match/],
    ['Content-Type disagrees with mediaType (OCI vs Docker)', bytes(ociManifest), DOCKER_MANIFEST, 'MANIFEST_INVALID', /does not match/],
    ['Content-Type disagrees with mediaType (Docker list vs OCI index)', bytes(dockerList), OCI_INDEX, 'MANIFEST_INVALID', /does not match/],
    ['mediaType not a string', bytes({ ...ociManifest, mediaType: 2 }), undefined, 'MANIFEST_INVALID', /mediaType/],
    ['schema 1 by schemaVersion', bytes({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] }), undefined, 'UNSUPPORTED', /schema 1/],
    ['schema 1 by Content-Type', bytes({ schemaVersion: 1, name: 'x' }), DOCKER_SCHEMA1, 'UNSUPPORTED', /schema 1/],
    ['signed schema 1 by Content-Type', bytes({ schemaVersion: 1, signatures: [] }), DOCKER_SCHEMA1_SIGNED, 'UNSUPPORTED', /schema 1/],
    ['missing schemaVersion', bytes({ mediaType: OCI_MANIFEST, config: ociManifest.config, layers: [] }), OCI_MANIFEST, 'MANIFEST_INVALID', /schemaVersion/],
    ['schemaVersion 3', bytes({ ...ociManifest, schemaVersion: 3 }), OCI_MANIFEST, 'MANIFEST_INVALID', /schemaVersion/],
    ['schemaVersion "2" as string', bytes({ ...ociManifest, schemaVersion: '2' }), OCI_MANIFEST, 'MANIFEST_INVALID', /schemaVersion/],
    ['OCI manifest without config', bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }), OCI_MANIFEST, 'MANIFEST_INVALID', /config/],
    ['index without manifests', bytes({ schemaVersion: 2, mediaType: OCI_INDEX }), OCI_INDEX, 'MANIFEST_INVALID', /manifests/],
    ['index with manifests not an array', bytes({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: {} }), OCI_INDEX, 'MANIFEST_INVALID', /manifests/],
    ['layers not an array', bytes({ ...ociManifest, layers: {} }), OCI_MANIFEST, 'MANIFEST_INVALID', /layers/],
    ['Docker manifest without layers', bytes({ ...dockerManifest, layers: [] }), DOCKER_MANIFEST, 'MANIFEST_INVALID', /at least one layer/],
    ['Docker list with a subject', bytes({ ...dockerList, subject: desc(OCI_MANIFEST, '1') }), DOCKER_LIST, 'MANIFEST_INVALID', /subject/],
    ['descriptor without digest', bytes({ ...ociManifest, config: { mediaType: OCI_CONFIG, size: 1 } }), OCI_MANIFEST, 'MANIFEST_INVALID', /config\.digest/],
    ['descriptor with malformed digest', bytes({ ...ociManifest, config: { mediaType: OCI_CONFIG, digest: 'sha256:xyz', size: 1 } }), OCI_MANIFEST, 'DIGEST_INVALID', /config\.digest/],
    ['layer with uppercase digest', bytes({ ...ociManifest, layers: [{ mediaType: OCI_LAYER_GZIP, digest: `sha256:${'A'.repeat(64)}`, size: 1 }] }), OCI_MANIFEST, 'DIGEST_INVALID', /layers\[0\]\.digest/],
    ['index child with malformed digest', bytes({ ...ociIndex, manifests: [{ mediaType: OCI_MANIFEST, digest: 'nope', size: 1 }] }), OCI_INDEX, 'DIGEST_INVALID', /manifests\[0\]\.digest/],
    ['subject with malformed digest', bytes({ ...artifact, subject: { mediaType: OCI_MANIFEST, digest: 'sha256:1', size: 1 } }), OCI_MANIFEST, 'DIGEST_INVALID', /subject\.digest/],
    ['descriptor without mediaType', bytes({ ...ociManifest, config: { digest: D('a'), size: 1 } }), OCI_MANIFEST, 'MANIFEST_INVALID', /config\.mediaType/],
    ['descriptor with empty mediaType', bytes({ ...ociManifest, config: { mediaType: '', digest: D('a'), size: 1 } }), OCI_MANIFEST, 'MANIFEST_INVALID', /config\.mediaType/],
    ['negative size', bytes({ ...ociManifest, config: desc(OCI_CONFIG, 'a', -1) }), OCI_MANIFEST, 'MANIFEST_INVALID', /size/],
    ['fractional size', bytes({ ...ociManifest, config: desc(OCI_CONFIG, 'a', 1.5) }), OCI_MANIFEST, 'MANIFEST_INVALID', /size/],
    ['size as a string', bytes({ ...ociManifest, config: { mediaType: OCI_CONFIG, digest: D('a'), size: '10' } }), OCI_MANIFEST, 'MANIFEST_INVALID', /size/],
    ['size beyond 2^53', Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":{"mediaType":"${OCI_CONFIG}","digest":"${D('a')}","size":99999999999999999999},"layers":[]}`), OCI_MANIFEST, 'MANIFEST_INVALID', /size/],
    ['descriptor not an object', bytes({ ...ociManifest, layers: ['sha256:abc'] }), OCI_MANIFEST, 'MANIFEST_INVALID', /layers\[0\]/],
    ['urls not strings', bytes({ ...ociManifest, layers: [desc(OCI_LAYER_GZIP, 'b', 1, { urls: [1] })] }), OCI_MANIFEST, 'MANIFEST_INVALID', /urls/],
    ['annotation values not strings', bytes({ ...ociManifest, annotations: { a: 1 } }), OCI_MANIFEST, 'MANIFEST_INVALID', /annotations/],
    ['descriptor annotations not a map', bytes({ ...ociManifest, config: desc(OCI_CONFIG, 'a', 1, { annotations: ['x'] }) }), OCI_MANIFEST, 'MANIFEST_INVALID', /config\.annotations/],
    ['platform without os', bytes({ ...ociIndex, manifests: [desc(OCI_MANIFEST, 'c', 1, { platform: { architecture: 'amd64' } })] }), OCI_INDEX, 'MANIFEST_INVALID', /platform/],
    ['empty artifactType', bytes({ ...artifact, artifactType: '' }), OCI_MANIFEST, 'MANIFEST_INVALID', /artifactType/],
    ['artifactType not a string', bytes({ ...artifact, artifactType: 7 }), OCI_MANIFEST, 'MANIFEST_INVALID', /artifactType/],
    ['unknown media type without a manifest shape', bytes({ schemaVersion: 2, mediaType: 'application/vnd.example.thing+json', blobs: [] }), 'application/vnd.example.thing+json', 'MANIFEST_INVALID', /not a known manifest type/],
    ['unknown media type with a manifest shape but no artifactType', bytes({ ...ociManifest, mediaType: 'application/vnd.example.thing+json' }), 'application/vnd.example.thing+json', 'MANIFEST_INVALID', /artifactType/],
    ['unknown Content-Type (text/html) with a manifest body and no mediaType', bytes({ schemaVersion: 2, config: ociManifest.config, layers: [] }), 'text/html', 'MANIFEST_INVALID', /artifactType/],
  ];
  for (const [name, body, contentType, code, message] of table) {
    it(name, () => expectError(() => parseManifest(body, contentType), code, message));
  }
});
