// Property tests of parseManifest: random bytes, random JSON, and valid
// manifests mutated at the JSON and the byte level never make it throw
// anything but a ManifestError; well-formed manifests always parse, and what
// comes out is what went in.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_MANIFEST_BYTES, ManifestError, parseManifest, referencedDescriptors, type Manifest } from './manifest.js';

const RUNS = Number(process.env.KILN_FUZZ_RUNS ?? 1500);

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const CONTENT_TYPES = [
  OCI_MANIFEST,
  OCI_INDEX,
  DOCKER_MANIFEST,
  DOCKER_LIST,
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/json',
  'application/octet-stream',
  'text/plain',
  '',
  'application/vnd.example.thing+json',
  'application/vnd.oci.image.manifest.v1+json; charset=utf-8',
];

/** Parses, and fails the property on any throw that is not a ManifestError. */
function parsesOrRefuses(bytes: Uint8Array, contentType: string | undefined): Manifest | null {
  try {
    return parseManifest(bytes, contentType);
  } catch (err) {
    if (err instanceof ManifestError) {
      assert.ok(err.message.length > 0);
      assert.ok(['MANIFEST_INVALID', 'DIGEST_INVALID', 'UNSUPPORTED'].includes(err.code));
      return null;
    }
    throw new Error(`parseManifest threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message} for ${Buffer.from(bytes).toString('utf8').slice(0, 300)}`);
  }
}

const hex64 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
const digest = fc.oneof(
  hex64.map((h) => `sha256:${h}`),
  fc.uint8Array({ minLength: 64, maxLength: 64 }).map((b) => `sha512:${Buffer.from(b).toString('hex')}`),
);
const mediaType = fc.constantFrom(
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.config.v1+json',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.buildkit.cacheconfig.v0',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.in-toto+json',
);
// Any RFC 6838 name pair: artifact types are free-form but must be media types.
const artifactType = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,12}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,12}$/);
const annotations = fc.option(fc.dictionary(fc.string({ maxLength: 20 }), fc.string({ maxLength: 30 }), { maxKeys: 4 }), { nil: undefined });
const platform = fc.record(
  { architecture: fc.constantFrom('amd64', 'arm64', 'unknown'), os: fc.constantFrom('linux', 'windows', 'unknown'), variant: fc.constantFrom('v8', 'v7') },
  { requiredKeys: ['architecture', 'os'] },
);
const descriptor = fc.record(
  { mediaType, digest, size: fc.nat({ max: 2 ** 40 }), annotations, platform, urls: fc.array(fc.webUrl(), { maxLength: 2 }), artifactType },
  { requiredKeys: ['mediaType', 'digest', 'size'] },
);
const imageManifest = fc.record(
  {
    schemaVersion: fc.constant(2),
    mediaType: fc.constantFrom(OCI_MANIFEST, DOCKER_MANIFEST),
    config: descriptor,
    layers: fc.array(descriptor, { minLength: 1, maxLength: 5 }),
    subject: descriptor,
    annotations,
    artifactType,
  },
  { requiredKeys: ['schemaVersion', 'mediaType', 'config', 'layers'] },
).map((m) => {
  // Docker schema 2 has neither subject nor artifactType in practice; keep the docs valid.
  if (m.mediaType === DOCKER_MANIFEST) {
    delete m.subject;
  }
  return m;
});
const index = fc.record(
  {
    schemaVersion: fc.constant(2),
    mediaType: fc.constantFrom(OCI_INDEX, DOCKER_LIST),
    manifests: fc.array(descriptor, { maxLength: 5 }),
    subject: descriptor,
    annotations,
  },
  { requiredKeys: ['schemaVersion', 'mediaType', 'manifests'] },
).map((m) => {
  if (m.mediaType === DOCKER_LIST) delete m.subject;
  return m;
});
const validDoc = fc.oneof(imageManifest, index);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** One random edit somewhere in a JSON tree: delete, replace, retype, or add a key. */
function mutate(doc: Json, path: number[], replacement: Json, op: number): Json {
  if (path.length === 0 || doc === null || typeof doc !== 'object') {
    return op % 2 === 0 ? replacement : doc;
  }
  const [step, ...rest] = path;
  if (Array.isArray(doc)) {
    if (doc.length === 0) return op === 3 ? [replacement] : replacement;
    const i = step! % doc.length;
    const copy = doc.slice();
    if (rest.length === 0 && op === 1) copy.splice(i, 1);
    else copy[i] = mutate(copy[i]!, rest, replacement, op);
    return copy;
  }
  const keys = Object.keys(doc);
  if (keys.length === 0) return { injected: replacement };
  const key = keys[step! % keys.length]!;
  const copy: { [k: string]: Json } = { ...doc };
  if (rest.length === 0 && op === 1) delete copy[key];
  else if (rest.length === 0 && op === 3) copy[`${key}x`] = replacement;
  else copy[key] = mutate(copy[key]!, rest, replacement, op);
  return copy;
}

const nasty: fc.Arbitrary<Json> = fc.oneof(
  fc.jsonValue() as fc.Arbitrary<Json>,
  fc.constantFrom<Json>(-1, 1.5, 2 ** 53, -0, '', 'sha256:', 'sha256:XYZ', `sha256:${'A'.repeat(64)}`, 'md5:abc', [], {}, null, true, '__proto__', { __proto__: null } as unknown as Json),
);

describe('parseManifest property tests (fast-check)', () => {
  it('random bytes with any content type: a Manifest or a ManifestError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.option(fc.constantFrom(...CONTENT_TYPES), { nil: undefined }), (bytes, ct) => {
        parsesOrRefuses(bytes, ct);
      }),
      { numRuns: RUNS },
    );
  });

  it('random JSON values and JSON with manifest-like keys', () => {
    const manifestish = fc.dictionary(
      fc.constantFrom('schemaVersion', 'mediaType', 'config', 'layers', 'manifests', 'subject', 'annotations', 'artifactType', 'digest', 'size'),
      nasty,
      { maxKeys: 8 },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), manifestish), fc.constantFrom(...CONTENT_TYPES), (doc, ct) => {
        parsesOrRefuses(Buffer.from(JSON.stringify(doc) ?? 'null'), ct);
      }),
      { numRuns: RUNS },
    );
  });

  it('valid manifests always parse, keeping their media type and every descriptor', () => {
    fc.assert(
      fc.property(validDoc, fc.boolean(), (doc, sendType) => {
        const bytes = Buffer.from(JSON.stringify(doc));
        const m = parseManifest(bytes, sendType ? doc.mediaType : 'application/json');
        assert.equal(m.mediaType, doc.mediaType);
        const want = 'manifests' in doc ? doc.manifests : [doc.config, ...doc.layers];
        assert.deepEqual(
          referencedDescriptors(m).map((d) => [d.digest, d.size, d.mediaType]),
          want.map((d) => [d.digest, d.size, d.mediaType]),
        );
        assert.equal(m.subject?.digest, doc.subject?.digest);
      }),
      { numRuns: RUNS },
    );
  });

  it('valid manifests mutated in their JSON tree never throw anything but ManifestError', () => {
    fc.assert(
      fc.property(
        validDoc,
        fc.array(fc.nat(), { minLength: 0, maxLength: 5 }),
        nasty,
        fc.nat({ max: 3 }),
        fc.constantFrom(...CONTENT_TYPES),
        (doc, path, replacement, op, ct) => {
          const mutated = mutate(doc as unknown as Json, path, replacement, op);
          parsesOrRefuses(Buffer.from(JSON.stringify(mutated) ?? 'null'), ct);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('valid manifests mutated byte by byte (flips, truncation, insertion) never throw anything but ManifestError', () => {
    fc.assert(
      fc.property(
        validDoc,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat({ max: 2 })), { minLength: 1, maxLength: 6 }),
        fc.constantFrom(...CONTENT_TYPES),
        (doc, edits, ct) => {
          let bytes = Buffer.from(JSON.stringify(doc));
          for (const [at, value, kind] of edits) {
            const i = at % Math.max(1, bytes.length);
            if (kind === 0) bytes[i] = value;
            else if (kind === 1) bytes = bytes.subarray(0, i);
            else bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from([value]), bytes.subarray(i)]);
          }
          parsesOrRefuses(bytes, ct);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('refuses oversize manifests and deep nesting with a ManifestError', () => {
    assert.throws(() => parseManifest(Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20)), ManifestError);
    const deep = Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    parsesOrRefuses(deep, OCI_MANIFEST);
    const deepObject = Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)},"layers":[]}`);
    parsesOrRefuses(deepObject, OCI_MANIFEST);
    // Digests are validated, and a body digest of a parseable doc is stable.
    const good = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }));
    assert.equal(parseManifest(good, OCI_INDEX).kind, 'index');
    assert.equal(createHash('sha256').update(good).digest('hex').length, 64);
  });
});
