// Baking without root (no chown, no mknod): the fixture image baked as user
// nobody gives the same disk tree as baked as root. Needs root to switch user.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bakeImage } from '../src/convert/bake.js';
import { layoutBlobOpener, writeOciLayout } from '../src/convert/testing.js';
import { ext4Tree, fsck, run, summarize } from './bake-helpers.js';
import { fixtureImage } from './bake-fixture.js';

const NOBODY = 65534;
const sorted = (m: Map<string, string>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

describe('bakeImage as an unprivileged user', { skip: process.getuid?.() !== 0 ? 'needs root to run a child as nobody' : false }, () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-nobody-'));
    await chmod(tmp, 0o777);
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('gives the same tree, modes, owners, devices and xattrs as a bake by root', async () => {
    const image = await fixtureImage();
    const layout = path.join(tmp, 'layout');
    await writeOciLayout(layout, image, 'v1');
    await writeFile(path.join(tmp, 'image.json'), JSON.stringify({ manifest: image.manifest, config: image.configBytes.toString('base64') }));
    const child = path.join(tmp, 'child.mts');
    await writeFile(child, `
      import { readFileSync } from 'node:fs';
      import { bakeImage } from ${JSON.stringify(import.meta.resolve('../src/convert/bake.js'))};
      import { layoutBlobOpener } from ${JSON.stringify(import.meta.resolve('../src/convert/testing.js'))};
      const { manifest, config } = JSON.parse(readFileSync(${JSON.stringify(path.join(tmp, 'image.json'))}, 'utf8'));
      if (process.getuid() !== ${NOBODY}) throw new Error('not running as nobody');
      await bakeImage({ manifest, configBytes: Buffer.from(config, 'base64'), openBlob: layoutBlobOpener(${JSON.stringify(layout)}),
        workDir: ${JSON.stringify(path.join(tmp, 'work-nobody'))}, outputDir: ${JSON.stringify(path.join(tmp, 'out-nobody'))} });
    `);
    const r = run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '--import', 'tsx', child]);
    assert.equal(r.status, 0, r.stderr);

    const asRoot = await bakeImage({
      manifest: image.manifest,
      configBytes: image.configBytes,
      openBlob: layoutBlobOpener(layout),
      workDir: path.join(tmp, 'work-root'),
      outputDir: path.join(tmp, 'out-root'),
    });
    const nobodyDisk = path.join(tmp, 'out-nobody', 'rootfs.ext4');
    const check = fsck(nobodyDisk);
    assert.ok(check.clean, check.output);
    const expected = summarize(ext4Tree(asRoot.diskPath, path.join(tmp, 'scan-root')), { mtimes: true });
    const actual = summarize(ext4Tree(nobodyDisk, path.join(tmp, 'scan-nobody')), { mtimes: true });
    assert.deepEqual(sorted(actual), sorted(expected));
  });
});
