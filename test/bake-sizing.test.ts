// The writer sizes the disk from the tree: many-small-file images fit with
// little waste, and content that later layers delete or replace neither
// grows the disk nor stays allocated in the image file.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { bakeImage, type BakeResult } from '../src/convert/bake.js';
import { layerTar, makeImage, type LayerEntry } from '../src/convert/testing.js';
import { debugfsCat, fsck, run } from './bake-helpers.js';

function superblock(disk: string): Record<string, number> {
  const out = run('dumpe2fs', ['-h', disk]).stdout.toString();
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(out)?.[1]);
  return { blocks: field('Block count'), freeBlocks: field('Free blocks'), inodes: field('Inode count'), freeInodes: field('Free inodes') };
}

const MiB = 1024 * 1024;

describe('ext4 sizing', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-sizing-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  async function bake(name: string, ...layers: LayerEntry[][]): Promise<BakeResult> {
    const image = makeImage(await Promise.all(layers.map(async (l) => ({ tar: await layerTar(l), compression: 'gzip' as const }))));
    const result = await bakeImage({
      manifest: image.manifest,
      configBytes: image.configBytes,
      openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
      workDir: path.join(tmp, 'work'),
      outputDir: path.join(tmp, name),
    });
    const check = fsck(result.diskPath);
    assert.ok(check.clean, check.output);
    return result;
  }

  it('fits 24,000 one-byte files, 2,000 long-named files in one directory, 600 deep directories and 500 long symlinks with little to spare', async () => {
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
    const result = await bake('many', entries);
    const sb = superblock(result.diskPath);
    assert.ok(sb.inodes - sb.freeInodes > 27000, `inodes used: ${sb.inodes - sb.freeInodes}`);
    assert.ok(sb.freeInodes >= (sb.inodes - sb.freeInodes) * 0.05, 'spare inodes for the guest');
    // Not wasteful: the free space is the 16 MiB floor plus rounding.
    const freeBytes = sb.freeBlocks * 4096;
    assert.ok(freeBytes >= 16 * MiB && freeBytes < 20 * MiB, `free: ${freeBytes} of ${sb.blocks * 4096}`);
    assert.equal(result.diskSizeBytes, sb.blocks * 4096);
  });

  const big = (seed: number) => Buffer.alloc(24 * MiB, seed);
  const used = (sb: Record<string, number>) => sb.blocks - sb.freeBlocks;

  it('reuses the blocks of files that later layers delete or replace', async () => {
    const once = await bake('once', [{ name: 'data/a', content: big(3) }, { name: 'data/b', content: big(4) }]);
    const churn = await bake(
      'churn',
      [{ name: 'data/a', content: big(1) }, { name: 'data/b', content: big(2) }],
      [{ name: 'data/.wh.b', content: '' }, { name: 'data/a', content: big(3) }],
      [{ name: 'data/b', content: big(4) }],
    );
    assert.deepEqual(debugfsCat(churn.diskPath, '/data/a'), big(3));
    assert.deepEqual(debugfsCat(churn.diskPath, '/data/b'), big(4));
    const [o, c] = [superblock(once.diskPath), superblock(churn.diskPath)];
    assert.ok(used(c) <= used(o) + 16, `${used(c)} blocks in use after churn, ${used(o)} without`);
    assert.equal(churn.diskSizeBytes, once.diskSizeBytes);
  });

  it('counts space freed in the middle as the free space it is, and punches it out of the image file', async () => {
    const keep = Array.from({ length: 50 }, (_, i): LayerEntry => ({ name: `keep/f${i}`, content: Buffer.alloc(20_000, i) }));
    const result = await bake('holes', [{ name: 'gone', content: big(1) }, ...keep], [{ name: '.wh.gone', content: '' }]);
    const sb = superblock(result.diskPath);
    // The 24 MiB hole covers the 16 MiB of free space the guest gets: no more is added.
    assert.ok(sb.freeBlocks * 4096 >= 24 * MiB && sb.freeBlocks * 4096 < 26 * MiB, `free: ${sb.freeBlocks * 4096}`);
    const allocated = statSync(result.diskPath).blocks * 512;
    assert.ok(allocated < used(sb) * 4096 + MiB, `the image file allocates ${allocated} bytes for ${used(sb) * 4096} in use`);
  });
});
