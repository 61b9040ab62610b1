// Where the rootfs is staged: tmpfs when it has room, the job's workDir
// otherwise, and workDir again when tmpfs fills up mid-bake.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { bakeImage } from '../src/convert/bake.js';
import { createStagingDir, removeStaleStaging, removeTree, TMPFS_ROOT } from '../src/convert/staging.js';
import { layerTar, makeImage } from '../src/convert/testing.js';
import { debugfsCat, fsck } from './bake-helpers.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-staging-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('createStagingDir', () => {
  it('uses tmpfs when the tree fits with room to spare', async () => {
    const staging = await createStagingDir(tmp, { estimateBytes: 1024 * 1024 });
    try {
      assert.equal(staging.onTmpfs, true);
      assert.equal(path.dirname(staging.path), TMPFS_ROOT);
      assert.match(path.basename(staging.path), new RegExp(`^kiln-stage-${process.pid}-`));
    } finally {
      await removeTree(staging.path);
    }
    assert.ok(!existsSync(staging.path));
  });

  it('uses the work directory when tmpfs is too small for the estimate, or is not tmpfs', async () => {
    const big = await createStagingDir(tmp, { estimateBytes: Number.MAX_SAFE_INTEGER });
    const notTmpfs = await createStagingDir(tmp, { estimateBytes: 1, tmpfsRoot: tmp });
    assert.deepEqual([path.dirname(big.path), big.onTmpfs], [tmp, false]);
    assert.deepEqual([path.dirname(notTmpfs.path), notTmpfs.onTmpfs], [tmp, false]);
  });

  it('removes staging trees of processes that are gone, and only those', async () => {
    const fake = path.join(tmp, 'fake-tmpfs');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    for (const name of [`kiln-stage-${dead}-abc`, `kiln-stage-${process.pid}-def`, 'unrelated']) mkdirSync(path.join(fake, name, 'sub'), { recursive: true });
    await removeStaleStaging(fake);
    assert.deepEqual(readdirSync(fake).sort(), [`kiln-stage-${process.pid}-def`, 'unrelated']);
  });
});

const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;

describe('tmpfs filling up during a bake', { skip: canMount ? false : 'needs root to mount a small tmpfs' }, () => {
  it('starts again in the work directory and succeeds', async () => {
    const small = path.join(tmp, 'small-tmpfs');
    mkdirSync(small);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    assert.equal(mounted.status, 0, mounted.stderr?.toString());
    try {
      const image = makeImage([{ tar: await layerTar([{ name: 'big.bin', content: Buffer.alloc(3 * 1024 * 1024, 9) }]), compression: 'gzip' }]);
      const result = await bakeImage({
        manifest: image.manifest,
        configBytes: image.configBytes,
        openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
        workDir: path.join(tmp, 'work'),
        stagingDir: small,
        outputDir: path.join(tmp, 'out'),
      });
      assert.ok(fsck(result.diskPath).clean);
      assert.equal(debugfsCat(result.diskPath, '/big.bin').length, 3 * 1024 * 1024);
      assert.deepEqual(readdirSync(small), [], 'the tmpfs attempt was cleaned up');
      assert.deepEqual(readdirSync(path.join(tmp, 'work')).filter((n) => n.startsWith('rootfs-')), [], 'so was the workDir attempt');
    } finally {
      spawnSync('umount', [small]);
    }
  });
});
