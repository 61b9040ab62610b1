import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { hostPlatform, kilnBaseRefs, resolveBaseImages, type RegistryReader } from './base-images.js';
import { BuildError } from './errors.js';

const R = '127.0.0.1:5000';
const sha = (data: string | Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('kilnBaseRefs', () => {
  it('keeps refs on this registry, split into repo and tag or digest', () => {
    const digest = sha('x');
    assert.deepEqual(
      kilnBaseRefs(R, [`${R}/acme/base:1`, `${R}/library/base`, `${R}/acme/pinned@${digest}`, 'docker.io/library/alpine:3', `127.0.0.2:5000/acme/x`, 'alpine']),
      [
        { ref: `${R}/acme/base:1`, repo: 'acme/base', reference: '1' },
        { ref: `${R}/library/base`, repo: 'library/base', reference: 'latest' },
        { ref: `${R}/acme/pinned@${digest}`, repo: 'acme/pinned', reference: digest },
      ],
    );
  });

  it('refuses a malformed digest', () => {
    assert.throws(() => kilnBaseRefs(R, [`${R}/acme/x@sha256:nope`]), (err: unknown) => err instanceof BuildError && err.kind === 'invalid-input');
  });

  it('hostPlatform speaks OCI', () => {
    assert.equal(hostPlatform('x64'), 'linux/amd64');
    assert.equal(hostPlatform('arm64'), 'linux/arm64');
  });
});

describe('resolveBaseImages', () => {
  // A tiny store: two single-platform images and an index of them, under acme/base.
  const manifests = new Map<string, { digest: string; mediaType: string; bytes: Buffer }>();
  const put = (data: string) => {
    const bytes = Buffer.from(data);
    return { digest: sha(bytes), size: bytes.length };
  };
  const image = (arch: string) => {
    const config = put(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const layer = put(`layer of ${arch}`);
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    );
    const m = { digest: sha(bytes), mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes };
    manifests.set(m.digest, m);
    return { ...m, config, layer };
  };
  const amd = image('amd64');
  const arm = image('arm64');
  const indexBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: amd.mediaType, digest: amd.digest, size: amd.bytes.length, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: arm.mediaType, digest: arm.digest, size: arm.bytes.length, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    }),
  );
  const index = { digest: sha(indexBytes), mediaType: 'application/vnd.oci.image.index.v1+json', bytes: indexBytes };
  manifests.set(index.digest, index);
  const tags = new Map([
    ['multi', index.digest],
    ['amd', amd.digest],
  ]);
  const reader: RegistryReader = {
    manifest: async (repo, reference) => {
      if (repo !== 'acme/base') return null;
      return manifests.get(tags.get(reference) ?? reference) ?? null;
    },
  };

  it('picks the platform from an index', async () => {
    const loaded = await resolveBaseImages(reader, kilnBaseRefs(R, [`${R}/acme/base:multi`, `${R}/acme/base:amd`]), { platform: 'linux/arm64' });
    assert.deepEqual(loaded, [
      { ref: `${R}/acme/base:multi`, repo: 'acme/base', digest: index.digest, imageDigest: arm.digest },
      { ref: `${R}/acme/base:amd`, repo: 'acme/base', digest: amd.digest, imageDigest: amd.digest },
    ]);
  });

  it('says which ref is missing, and which platforms an index has', async () => {
    await assert.rejects(
      resolveBaseImages(reader, kilnBaseRefs(R, [`${R}/acme/base:nope`]), { platform: 'linux/amd64' }),
      /FROM 127\.0\.0\.1:5000\/acme\/base:nope: acme\/base:nope is not in this registry; push it first/,
    );
    await assert.rejects(
      resolveBaseImages(reader, kilnBaseRefs(R, [`${R}/acme/base:multi`]), { platform: 'linux/s390x' }),
      /has no linux\/s390x variant \(it has linux\/amd64, linux\/arm64\)/,
    );
  });
});
