// The review's resource attacks, each refused by a limit that names itself
// and its setting: decompression bombs (gzip and zstd), a million-entry layer,
// a manifest repeating one layer 20,000 times, symlink-hop layers, and a disk
// over its size limit. Bombs are refused early: only a small part of the
// blob is ever read, so no GiBs are written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { bakeImage, type BakeInput } from '../src/convert/bake.js';
import { BakeError } from '../src/convert/errors.js';
import { DEFAULT_BAKE_LIMITS, type BakeLimits } from '../src/convert/limits.js';
import { emptyFilesTar, gzipStream, imageFromBlobs, layerTar, makeImage, sha256, ustarHeader, type LayerEntry, type TestImage } from '../src/convert/testing.js';
import { OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../src/oci/media-types.js';

const MiB = 1024 * 1024;
let tmp: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-limits-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});
afterEach(async () => {
  assert.ok(!existsSync(path.join(tmp, 'out')), 'no output');
  if (existsSync(path.join(tmp, 'work'))) assert.deepEqual(readdirSync(path.join(tmp, 'work')), [], 'no temporary result');
});

/** Bakes `image`, counting how much of each blob is read (blobs are served in 64 KiB pieces). */
async function bake(image: TestImage, limits: Partial<BakeLimits> = {}, extra: Partial<BakeInput> = {}): Promise<{ read: number; opened: number }> {
  const stats = { read: 0, opened: 0 };
  await bakeImage({
    manifest: image.manifest,
    configBytes: image.configBytes,
    openBlob: async (digest) => {
      stats.opened++;
      const blob = image.blobs.get(digest) as Buffer;
      return Readable.from((function* () {
        for (let at = 0; at < blob.length; at += 64 * 1024) {
          stats.read += Math.min(64 * 1024, blob.length - at);
          yield blob.subarray(at, at + 64 * 1024);
        }
      })());
    },
    workDir: path.join(tmp, 'work'),
    outputDir: path.join(tmp, 'out'),
    limits: { ...DEFAULT_BAKE_LIMITS, ...limits },
    ...extra,
  });
  return stats;
}

/** Expects a LIMIT_EXCEEDED error naming the setting and the value in force; returns its message. */
async function refusedBy(promise: Promise<unknown>, setting: string, value: number): Promise<string> {
  let message = '';
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof BakeError, String(err));
    assert.equal(err.code, 'LIMIT_EXCEEDED', err.message);
    assert.match(err.message, new RegExp(`the limit of .* is ${value}\\b.*; raise ${setting} to allow more`));
    assert.ok(!err.message.includes(tmp), 'no host path in the message');
    message = err.message;
    return true;
  });
  return message;
}

/** How far unpacking got when the byte limit stopped it, from the message. */
const unpackedAtRefusal = (message: string) => Number(/unpack to at least (\d+) bytes/.exec(message)?.[1]);

/** 1 MiB of zeros, compressed once: bombs are that member/frame repeated (both formats allow concatenation). */
const zeros = Buffer.alloc(MiB);
const zstd = (data: Buffer) => {
  const r = spawnSync('zstd', ['-q', '-c', '-19'], { input: data });
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout;
};

describe('decompression bombs', () => {
  it('a gzip layer declaring one 1 GiB file is refused at its header, before the content is read', async () => {
    const header = ustarHeader({ name: 'bomb', typeflag: '0', size: 1024 * MiB });
    const blob = Buffer.concat([gzipSync(header), ...Array.from({ length: 1024 }, () => gzipSync(zeros, { level: 9 })), gzipSync(Buffer.alloc(1024))]);
    const image = imageFromBlobs([{ blob, mediaType: OCI_LAYER_GZIP, diffId: sha256(header) }]);
    let read = 0;
    const message = await refusedBy(bake(image, { maxUnpackedBytes: 64 * MiB }, {
      onProgress: (done) => {
        read = done;
      },
    }), 'KILN_BAKE_MAX_BYTES', 64 * MiB);
    assert.ok(read < blob.length / 10, `read ${read} of ${blob.length} compressed bytes`);
    assert.ok(unpackedAtRefusal(message) > 1024 * MiB, 'refused for the size the header declares');
  });

  it('a zstd layer of 1 GiB in 1 MiB files is refused once 64 MiB are unpacked', async () => {
    const member = Buffer.concat([ustarHeader({ name: 'f', typeflag: '0', size: MiB }), zeros]);
    const frame = zstd(member);
    const blob = Buffer.concat([...Array.from({ length: 1024 }, () => frame), zstd(Buffer.alloc(1024))]);
    const image = imageFromBlobs([{ blob, mediaType: OCI_LAYER_ZSTD, diffId: sha256(member) }]);
    const message = await refusedBy(bake(image, { maxUnpackedBytes: 64 * MiB }), 'KILN_BAKE_MAX_BYTES', 64 * MiB);
    // Stopped at the first file past the limit: zstd's output is read as it is needed, so no more is made.
    assert.ok(unpackedAtRefusal(message) <= 65 * MiB + 512, message);
  });

  it('counts the bytes of every layer of the image together', async () => {
    const layer = { tar: await layerTar([{ name: 'f', content: Buffer.alloc(3 * MiB, 1) }]), compression: 'gzip' as const };
    const image = makeImage([layer, layer, layer]);
    await assert.doesNotReject(bake(image, { maxUnpackedBytes: 10 * MiB }).then(() => rm(path.join(tmp, 'out'), { recursive: true })));
    await refusedBy(bake(image, { maxUnpackedBytes: 8 * MiB }), 'KILN_BAKE_MAX_BYTES', 8 * MiB);
  });
});

describe('entries, layers, symlinks and disk size', () => {
  it('a layer of a million empty files is refused at the entry limit', async () => {
    const { blob, diffId } = await gzipStream(emptyFilesTar(1_000_000, 1000));
    const image = imageFromBlobs([{ blob, mediaType: OCI_LAYER_GZIP, diffId }]);
    await refusedBy(bake(image), 'KILN_BAKE_MAX_ENTRIES', DEFAULT_BAKE_LIMITS.maxEntries);
  });

  it('a manifest listing one layer 20,000 times is refused before any blob is opened', async () => {
    const tar = await layerTar([{ name: 'f', content: 'x' }]);
    const blob = gzipSync(tar);
    const image = imageFromBlobs(Array.from({ length: 20_000 }, () => ({ blob, mediaType: OCI_LAYER_GZIP, diffId: sha256(tar) })));
    let opened = 0;
    await refusedBy(bake(image, {}, {
      openBlob: async () => {
        opened++;
        return Readable.from([blob]);
      },
    }), 'KILN_BAKE_MAX_LAYERS', DEFAULT_BAKE_LIMITS.maxLayers);
    assert.equal(opened, 0);
  });

  const symlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'symlink', linkname });
  const gzipped = async (...layers: LayerEntry[][]) => makeImage(await Promise.all(layers.map(async (l) => ({ tar: await layerTar(l), compression: 'gzip' as const }))));

  it('a symlink chain that doubles at each step is refused at the hop limit', async () => {
    const chain: LayerEntry[] = [symlink('l0', '.')];
    for (let i = 1; i <= 30; i++) chain.push(symlink(`l${i}`, `l${i - 1}/l${i - 1}`));
    const entries = Array.from({ length: 1000 }, (_, i): LayerEntry => ({ name: `l30/f${i}`, content: 'x' }));
    await refusedBy(bake(await gzipped(chain, entries)), 'KILN_BAKE_MAX_SYMLINK_HOPS', DEFAULT_BAKE_LIMITS.maxSymlinkHops);
  });

  it('a layer whose paths each walk 40 hops of 2,000-component targets is refused at the per-layer work limit', async () => {
    const wide = [{ name: 'd/', type: 'directory' as const }, symlink('w', `${'./'.repeat(2000)}d`), symlink('d/w', `../${'./'.repeat(2000)}d`)];
    const deep = `w/${'w/'.repeat(38)}`;
    const entries = Array.from({ length: 300 }, (_, i): LayerEntry => ({ name: `${deep}f${i}`, content: 'x' }));
    await refusedBy(bake(await gzipped(wide, entries)), 'KILN_BAKE_MAX_RESOLVE_STEPS', DEFAULT_BAKE_LIMITS.maxResolveStepsPerLayer);
  });

  it('a file larger than the disk limit is refused as it starts, and so is a disk whose free space passes it', async () => {
    const big = makeImage([{ tar: await layerTar([{ name: 'f', content: Buffer.alloc(40 * MiB) }]), compression: 'gzip' }]);
    await refusedBy(bake(big, { maxDiskBytes: 32 * MiB }), 'KILN_BAKE_MAX_DISK_BYTES', 32 * MiB);
    // 20 MiB of data fits, but not with the 16 MiB of free space a disk gets.
    const medium = makeImage([{ tar: await layerTar([{ name: 'f', content: Buffer.alloc(20 * MiB) }]), compression: 'gzip' }]);
    await refusedBy(bake(medium, { maxDiskBytes: 32 * MiB }), 'KILN_BAKE_MAX_DISK_BYTES', 32 * MiB);
  });
});
