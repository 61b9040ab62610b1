// An image of a million files bakes once the entry limit allows it: the
// disk has enough groups for the inodes (at most 32,768 per group), e2fsck
// finds it clean, and the files are there. Slow (a 512 MB tar stream); the
// peak RSS is reported as a diagnostic.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { bakeImage } from '../src/convert/bake.js';
import { DEFAULT_BAKE_LIMITS } from '../src/convert/limits.js';
import { emptyFilesTar, gzipStream, imageFromBlobs } from '../src/convert/testing.js';
import { OCI_LAYER_GZIP } from '../src/oci/media-types.js';
import { fsck, run } from './bake-helpers.js';

const FILES = 1_000_000;

describe('a million files', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-million-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('bake into a clean disk with every file when the entry limit is raised', async (t) => {
    const { blob, diffId } = await gzipStream(emptyFilesTar(FILES, 1000));
    const image = imageFromBlobs([{ blob, mediaType: OCI_LAYER_GZIP, diffId }]);
    const rssBefore = process.memoryUsage().rss;
    const result = await bakeImage({
      manifest: image.manifest,
      configBytes: image.configBytes,
      openBlob: async () => Readable.from((function* () {
        for (let at = 0; at < blob.length; at += 1 << 20) yield blob.subarray(at, at + (1 << 20));
      })()),
      workDir: path.join(tmp, 'work'),
      outputDir: path.join(tmp, 'out'),
      limits: { ...DEFAULT_BAKE_LIMITS, maxEntries: FILES + 1000 },
    });
    t.diagnostic(`RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB before the bake, peak ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
    const check = fsck(result.diskPath);
    assert.ok(check.clean, check.output);
    const sb = run('dumpe2fs', ['-h', result.diskPath]).stdout.toString();
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(sb)?.[1]);
    const inUse = field('Inode count') - field('Free inodes');
    assert.equal(inUse, 10 + 1 + 1000 + FILES, 'the 10 reserved inodes (the root is 2), lost+found, 1000 directories and the files');
    assert.ok(field('Inodes per group') <= 32768);
    const last = run('debugfs', ['-R', 'stat /d0000999/f0999999', result.diskPath]).stdout.toString();
    assert.match(last, /Type: regular\s+Mode:\s+0644/);
    const listing = run('debugfs', ['-R', 'ls /d0000500', result.diskPath]).stdout.toString();
    assert.equal(listing.match(/f0\d{6}/g)?.length, 1000);
  });
});
