// How bakeImage fails: clear errors naming the layer and media type, and no
// output or temporary result left behind.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { bakeImage, type BakeInput } from '../src/convert/bake.js';
import { BakeError, type BakeErrorCode } from '../src/convert/errors.js';
import { compress, layerTar, makeImage, sha256, type TestImage } from '../src/convert/testing.js';
import { parseManifest, type ImageManifest } from '../src/oci/manifest.js';
import { debugfsCat, ext4Tree, fsck } from './bake-helpers.js';
import { buildkitFixtures } from './helpers/paths.js';

const FIXTURES = buildkitFixtures;
let tmp: string;

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-errors-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function input(image: TestImage, extra: Partial<BakeInput> = {}): BakeInput {
  return {
    manifest: image.manifest,
    configBytes: image.configBytes,
    openBlob: async (digest) => {
      const blob = image.blobs.get(digest);
      if (!blob) throw new Error(`no blob ${digest}`);
      return Readable.from([blob]);
    },
    workDir: path.join(tmp, 'work'),
    outputDir: path.join(tmp, 'images', 'x'),
    ...extra,
  };
}

const simpleImage = async (compression: 'gzip' | 'zstd' | 'none' = 'gzip') =>
  makeImage([{ tar: await layerTar([{ name: 'etc/', type: 'directory' }, { name: 'etc/os-release', content: 'ID=test\n' }]), compression }]);

function fails(code: BakeErrorCode, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof BakeError, `expected a BakeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

function assertNothingLeft(): void {
  assert.ok(!existsSync(path.join(tmp, 'images', 'x')), 'no output directory');
  if (existsSync(path.join(tmp, 'images'))) assert.deepEqual(readdirSync(path.join(tmp, 'images')), [], 'no temporary output');
  if (existsSync(path.join(tmp, 'work'))) assert.deepEqual(readdirSync(path.join(tmp, 'work')), [], 'no temporary result');
}

/** Replaces a layer blob by other bytes under the same descriptor. */
function withBlob(image: TestImage, index: number, bytes: Buffer): TestImage {
  const blobs = new Map(image.blobs);
  blobs.set(image.manifest.layers[index].digest, bytes);
  return { ...image, blobs };
}

describe('bakeImage failures', () => {
  it('refuses a layer whose bytes do not match its digest, naming the layer', async () => {
    const image = await simpleImage('none');
    const layer = image.manifest.layers[0];
    const tampered = Buffer.from(image.blobs.get(layer.digest) as Buffer);
    tampered[tampered.indexOf('ID=test') + 3] = 0x58; // same size, still a valid tar
    await assert.rejects(bakeImage(input(withBlob(image, 0, tampered))), fails('LAYER_DIGEST_MISMATCH', new RegExp(`layer ${layer.digest} is corrupt: its \\d+ bytes hash to sha256:`)));
    assertNothingLeft();
  });

  it('reports a damaged gzip blob as a digest mismatch', async () => {
    const image = await simpleImage('gzip');
    const layer = image.manifest.layers[0];
    const damaged = Buffer.from(image.blobs.get(layer.digest) as Buffer);
    damaged.fill(0x55, 20, 40);
    await assert.rejects(bakeImage(input(withBlob(image, 0, damaged))), fails('LAYER_DIGEST_MISMATCH', new RegExp(layer.digest)));
    assertNothingLeft();
  });

  it('refuses a layer that does not decompress to its diff_id', async () => {
    const image = await simpleImage('zstd');
    const config = JSON.parse(image.configBytes.toString());
    config.rootfs.diff_ids = [sha256(Buffer.from('something else'))];
    const configBytes = Buffer.from(JSON.stringify(config));
    await assert.rejects(bakeImage(input({ ...image, configBytes })), fails('LAYER_DIGEST_MISMATCH', /decompresses to sha256:[0-9a-f]{64}, but the image config lists diff_id/));
    assertNothingLeft();
  });

  it('says which layer is not valid gzip when its digest is right', async () => {
    const image = await simpleImage('gzip');
    const broken = Buffer.from(image.blobs.get(image.manifest.layers[0].digest) as Buffer);
    broken.fill(0x55, 20, 40);
    const digest = sha256(broken);
    const manifest: ImageManifest = { ...image.manifest, layers: [{ ...image.manifest.layers[0], digest, size: broken.length }] };
    const blobs = new Map(image.blobs).set(digest, broken);
    await assert.rejects(bakeImage(input({ ...image, manifest, blobs })), fails('LAYER_CORRUPT', new RegExp(`layer ${digest} \\(application/vnd.oci.image.layer.v1.tar\\+gzip\\) could not be read as gzip-compressed tar`)));
    assertNothingLeft();
  });

  it('says which layer is not a tar at all', async () => {
    const garbage = Buffer.alloc(2048, 0x41);
    const image = await simpleImage('none');
    const digest = sha256(garbage);
    const manifest: ImageManifest = { ...image.manifest, layers: [{ ...image.manifest.layers[0], digest, size: garbage.length }] };
    const blobs = new Map(image.blobs).set(digest, garbage);
    await assert.rejects(bakeImage(input({ ...image, manifest, blobs })), fails('LAYER_CORRUPT', /^layer 1 \(sha256:[0-9a-f]{64}\) is not a valid tar: invalid/));
    assertNothingLeft();
  });

  it('says which layer is a truncated tar', async () => {
    const tar = await layerTar([{ name: 'big', content: Buffer.alloc(10000, 1) }]);
    const image = makeImage([{ tar: tar.subarray(0, 3000), compression: 'gzip' }]);
    await assert.rejects(bakeImage(input(image)), fails('LAYER_CORRUPT', /^layer 1 \(sha256:[0-9a-f]{64}\) is not a valid tar: archive ends inside the content of "big"/));
    assertNothingLeft();
  });

  it('refuses foreign and non-distributable layers without fetching them', async () => {
    const image = await simpleImage();
    for (const mediaType of ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip']) {
      const manifest: ImageManifest = { ...image.manifest, layers: [{ ...image.manifest.layers[0], mediaType, urls: ['https://example.com/layer'] }] };
      let opened = 0;
      await assert.rejects(
        bakeImage(input({ ...image, manifest }, { openBlob: async () => { opened++; return Readable.from([]); } })),
        fails('UNSUPPORTED_LAYER', /foreign \(non-distributable\) layer of media type application\/vnd\.oci\.image\.layer\.nondistributable\.v1\.tar\+gzip/),
      );
      assert.equal(opened, 0);
    }
  });

  it('refuses layers that are not filesystem layers, naming the media type', async () => {
    const image = await simpleImage();
    const manifest: ImageManifest = { ...image.manifest, layers: [{ ...image.manifest.layers[0], mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip' }] };
    await assert.rejects(bakeImage(input({ ...image, manifest })), fails('UNSUPPORTED_LAYER', /media type application\/vnd\.cncf\.helm\.chart\.content\.v1\.tar\+gzip, which is not a tar/));
  });

  it('refuses a config whose diff_ids do not match the layers, and an invalid config', async () => {
    const image = await simpleImage();
    const config = JSON.parse(image.configBytes.toString());
    config.rootfs.diff_ids.push(config.rootfs.diff_ids[0]);
    await assert.rejects(bakeImage(input({ ...image, configBytes: Buffer.from(JSON.stringify(config)) })), fails('INVALID_IMAGE', /lists 2 diff_ids but the manifest has 1 layers/));
    await assert.rejects(bakeImage(input({ ...image, configBytes: Buffer.from('{"os":"linux"}') })), fails('INVALID_IMAGE', /invalid image config: "architecture"/));
  });

  it('stops when aborted and cleans up', async () => {
    const image = makeImage([{ tar: await layerTar([{ name: 'big', content: Buffer.alloc(4 << 20, 7) }]), compression: 'gzip' }]);
    const controller = new AbortController();
    const chunked = (buf: Buffer) => Readable.from((function* () { for (let i = 0; i < buf.length; i += 1024) yield buf.subarray(i, i + 1024); })());
    await assert.rejects(
      bakeImage(input(image, {
        signal: controller.signal,
        openBlob: async (d) => chunked(image.blobs.get(d) as Buffer),
        onProgress: (done) => { if (done > 0) controller.abort(); },
      })),
      (err: Error) => err.name === 'AbortError',
    );
    assertNothingLeft();
  });
});

describe('bakeImage inputs', () => {
  it('bakes Docker schema 2 media types', async () => {
    const tar = await layerTar([{ name: 'hello', content: 'docker\n' }]);
    const blob = compress(tar, 'gzip');
    const configBytes = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: null }, rootfs: { type: 'layers', diff_ids: [sha256(tar)] } }));
    const manifest = parseManifest(Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: sha256(configBytes), size: configBytes.length },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: sha256(blob), size: blob.length }],
    })));
    assert.ok(manifest.kind === 'image');
    const image: TestImage = { manifest, manifestBytes: Buffer.alloc(0), configBytes, blobs: new Map([[sha256(blob), blob]]) };
    const result = await bakeImage(input(image));
    assert.equal(debugfsCat(result.diskPath, '/hello').toString(), 'docker\n');
    assert.deepEqual(result.runConfig.cmd, []);
  });

  it('trusts the bytes over the media type: gzip labelled as tar, tar labelled as gzip, zstd labelled as gzip', async () => {
    for (const [compression, mediaType] of [['gzip', 'application/vnd.oci.image.layer.v1.tar'], ['none', 'application/vnd.oci.image.layer.v1.tar+gzip'], ['zstd', 'application/vnd.docker.image.rootfs.diff.tar.gzip']] as const) {
      const image = makeImage([{ tar: await layerTar([{ name: 'f', content: compression }]), compression }]);
      const manifest: ImageManifest = { ...image.manifest, layers: [{ ...image.manifest.layers[0], mediaType }] };
      const result = await bakeImage(input({ ...image, manifest }, { outputDir: path.join(tmp, 'images', compression) }));
      assert.equal(debugfsCat(result.diskPath, '/f').toString(), compression);
    }
  });

  it('bakes the BuildKit v0.20.2 fixture image (real BuildKit layers)', async () => {
    const manifest = parseManifest(readFileSync(path.join(FIXTURES, 'built-image.manifest.json')));
    assert.ok(manifest.kind === 'image');
    const result = await bakeImage({
      manifest,
      configBytes: readFileSync(path.join(FIXTURES, 'built-image.config.json')),
      openBlob: async (digest) => Readable.from([readFileSync(path.join(FIXTURES, 'blobs', ...digest.split(':')))]),
      workDir: path.join(tmp, 'work'),
      outputDir: path.join(tmp, 'images', 'built'),
    });
    const check = fsck(result.diskPath);
    assert.ok(check.clean, check.output);
    assert.equal(debugfsCat(result.diskPath, '/app/hello.txt').toString(), 'hello\n');
    assert.equal(debugfsCat(result.diskPath, '/app/combined.txt').toString(), `${debugfsCat(result.diskPath, '/app/data.txt')}hello\n`);
    const tree = ext4Tree(result.diskPath, path.join(tmp, 'scan'));
    assert.equal(tree.get('/app/big.bin')?.size, 48 * 1024);
    assert.equal(tree.get('/bin/sh')?.type, 'symlink');
    assert.ok(tree.size > 280, `busybox tree has ${tree.size} entries`);
    assert.deepEqual(result.runConfig.cmd, ['sh']);
  });

  it('replaces an earlier result in the output directory', async () => {
    const first = await bakeImage(input(await simpleImage()));
    const image = makeImage([{ tar: await layerTar([{ name: 'second', content: '2\n' }]), compression: 'gzip' }]);
    const second = await bakeImage(input(image));
    assert.equal(second.diskPath, first.diskPath);
    assert.equal(debugfsCat(second.diskPath, '/second').toString(), '2\n');
    assert.deepEqual(readdirSync(path.join(tmp, 'images')), ['x']);
  });

  it('keeps awkward names as they are: spaces, quotes, non-UTF-8 bytes on devices, fifos, hardlinked symlinks and xattrs', async () => {
    const odd = Buffer.from([0x6f, 0x64, 0x64, 0x20, 0x22, 0x71, 0x22, 0x20, 0xe9]).toString('latin1'); // odd "q" é (Latin-1)
    const tar = await layerTar([
      { name: `${odd}/`, type: 'directory', byteNames: true },
      { name: `${odd}/dev "x"`, type: 'character-device', devmajor: 5, devminor: 1, mode: 0o620, byteNames: true },
      { name: `${odd}/fifo ${odd}`, type: 'fifo', byteNames: true },
      { name: `${odd}/f`, content: 'x', xattrs: { 'user.k': 'v' }, byteNames: true },
      { name: `${odd}/l`, type: 'symlink', linkname: 'f', byteNames: true },
      { name: `${odd}/l2 "`, type: 'link', linkname: `${odd}/l`, byteNames: true },
    ]);
    const result = await bakeImage(input(makeImage([{ tar, compression: 'gzip' }])));
    assert.ok(fsck(result.diskPath).clean);
    const tree = ext4Tree(result.diskPath, path.join(tmp, 'scan'));
    assert.deepEqual(tree.get(`/${odd}/dev "x"`)?.rdev, [5, 1]);
    assert.equal(tree.get(`/${odd}/fifo ${odd}`)?.type, 'fifo');
    assert.equal(tree.get(`/${odd}/f`)?.xattrs['user.k'], Buffer.from('v').toString('hex'));
    assert.equal(tree.get(`/${odd}/l2 "`)?.nlink, 2);
  });
});
