// The disk size computed from the tree holds many-small-file images on the
// first mkfs attempt, without wasting much space.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { bakeImage } from '../src/convert/bake.js';
import type { DiskInfo, DiskWriter } from '../src/convert/disk-writer.js';
import { Ext4Writer } from '../src/convert/ext4-writer.js';
import { layerTar, makeImage, type LayerEntry } from '../src/convert/testing.js';
import { fsck, run } from './bake-helpers.js';

/** The Ext4Writer, remembering what it reported. */
class RecordingWriter implements DiskWriter {
  readonly format = 'ext4';
  readonly fileName = 'rootfs.ext4';
  info: DiskInfo | null = null;
  private readonly inner = new Ext4Writer();
  async write(...args: Parameters<DiskWriter['write']>): Promise<DiskInfo> {
    this.info = await this.inner.write(...args);
    return this.info;
  }
}

function superblock(disk: string): Record<string, number> {
  const out = run('dumpe2fs', ['-h', disk]).stdout.toString();
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(out)?.[1]);
  return { blocks: field('Block count'), freeBlocks: field('Free blocks'), inodes: field('Inode count'), freeInodes: field('Free inodes') };
}

describe('ext4 sizing', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-sizing-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('fits 24,000 one-byte files, 2,000 long-named files in one directory and 600 deep directories first time', async () => {
    const entries: LayerEntry[] = [];
    for (let d = 0; d < 120; d++) {
      entries.push({ name: `node_modules/pkg-${d}/`, type: 'directory' });
      for (let f = 0; f < 200; f++) entries.push({ name: `node_modules/pkg-${d}/file-${f}.js`, content: 'x' });
    }
    for (let f = 0; f < 2000; f++) entries.push({ name: `wide/${'w'.repeat(200)}-${f}`, content: '' });
    let deep = 'deep';
    for (let d = 0; d < 600; d++) {
      deep += `/${d % 10}`;
      if (deep.length > 1000) deep = `deep${d}`;
      entries.push({ name: `${deep}/`, type: 'directory' });
    }
    for (let s = 0; s < 500; s++) entries.push({ name: `links/l${s}`, type: 'symlink', linkname: `/${'t'.repeat(100)}/${s}` });
    const image = makeImage([{ tar: await layerTar(entries), compression: 'gzip' }]);
    const writer = new RecordingWriter();
    const result = await bakeImage({
      manifest: image.manifest,
      configBytes: image.configBytes,
      openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
      workDir: path.join(tmp, 'work'),
      outputDir: path.join(tmp, 'out'),
      diskWriter: writer,
    });
    assert.equal(writer.info?.attempts, 1, 'the first size was big enough');
    const check = fsck(result.diskPath);
    assert.ok(check.clean, check.output);
    const sb = superblock(result.diskPath);
    assert.ok(sb.inodes - sb.freeInodes > 27000, `inodes used: ${sb.inodes - sb.freeInodes}`);
    // Not wasteful: content fills most of the disk (free space is the 16 MiB floor plus rounding).
    const freeBytes = sb.freeBlocks * 4096;
    assert.ok(freeBytes < 40 * 1024 * 1024, `free: ${freeBytes} of ${sb.blocks * 4096}`);
  });
});
