// Differential test: for the same image, the tree in Kiln's ext4 disk equals
// the rootfs `umoci unpack` produces (names, types, modes, owners, sizes,
// contents, link targets, hardlink groups, devices, xattrs, mtimes).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bakeImage } from '../src/convert/bake.js';
import { layoutBlobOpener, writeOciLayout } from '../src/convert/testing.js';
import { ext4Tree, fsck, hostTree, linkGroups, run, summarize, type Tree } from './bake-helpers.js';
import { fixtureImage } from './bake-fixture.js';

const sorted = (m: Map<string, string>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

describe('bakeImage matches umoci unpack', () => {
  let tmp: string;
  let kiln: Tree;
  let umoci: Tree;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-umoci-'));
    const image = await fixtureImage(['gzip', 'gzip', 'none']);
    const layout = path.join(tmp, 'layout');
    await writeOciLayout(layout, image, 'v1');

    const unpack = run('umoci', ['unpack', '--image', `${layout}:v1`, path.join(tmp, 'bundle')]);
    assert.equal(unpack.status, 0, unpack.stderr);
    umoci = hostTree(path.join(tmp, 'bundle', 'rootfs'));

    const result = await bakeImage({
      manifest: image.manifest,
      configBytes: image.configBytes,
      openBlob: layoutBlobOpener(layout),
      workDir: path.join(tmp, 'work'),
      outputDir: path.join(tmp, 'out'),
    });
    const check = fsck(result.diskPath);
    assert.ok(check.clean, check.output);
    kiln = ext4Tree(result.diskPath, path.join(tmp, 'scratch'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('has the same paths with the same type, mode, owner, size, content, target, device, link count and xattrs', () => {
    assert.deepEqual(sorted(summarize(kiln)), sorted(summarize(umoci)));
  });

  it('has the same mtimes on everything but directories', () => {
    assert.deepEqual(sorted(summarize(kiln, { mtimes: true })), sorted(summarize(umoci, { mtimes: true })));
  });

  it('has the same hardlink groups', () => {
    assert.deepEqual(linkGroups(kiln), linkGroups(umoci));
    assert.ok(linkGroups(kiln).length >= 2);
  });
});
