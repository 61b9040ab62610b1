// Layers that try to write outside the rootfs: the bake fails or contains
// them, and nothing appears outside the job's directories.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { bakeImage, type BakeResult } from '../src/convert/bake.js';
import { BakeError } from '../src/convert/errors.js';
import { layerTar, makeImage, type LayerEntry } from '../src/convert/testing.js';
import { debugfsCat, ext4Tree, fsck } from './bake-helpers.js';

let root: string;
let sentinel: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kiln-malicious-'));
  sentinel = path.join(root, 'sentinel');
  await mkdir(sentinel);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function bake(...layers: LayerEntry[][]): Promise<BakeResult> {
  const image = makeImage(await Promise.all(layers.map(async (l) => ({ tar: await layerTar(l), compression: 'gzip' as const }))));
  return bakeImage({
    manifest: image.manifest,
    configBytes: image.configBytes,
    openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
    workDir: path.join(root, 'work'),
    stagingDir: path.join(root, 'work'),
    outputDir: path.join(root, 'out', 'image'),
  });
}

/** Nothing outside work/ and out/: the sentinel stays empty and no new names appear. */
function assertContained(): void {
  assert.deepEqual(readdirSync(sentinel), []);
  assert.deepEqual(readdirSync(root).filter((n) => !['sentinel', 'work', 'out'].includes(n)), []);
  if (existsSync(path.join(root, 'work'))) assert.deepEqual(readdirSync(path.join(root, 'work')).filter((n) => n.startsWith('rootfs-')), [], 'staging removed');
}

const refused = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof BakeError, String(err));
  assert.equal(err.code, 'UNSAFE_ENTRY');
  assert.match(err.message, /^layer \d+ \(sha256:[0-9a-f]{64}\): /);
  assert.match(err.message, pattern);
  return true;
};

const file = (name: string, content = 'pwned\n'): LayerEntry => ({ name, content });
const symlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'symlink', linkname });
const hardlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'link', linkname });
const climb = (target: string) => `${'../'.repeat(30)}${target.slice(1)}`;

describe('malicious layers', () => {
  for (const name of ['../escape', '../../../../../../../../tmp/escape', 'a/../../escape', './../escape']) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(bake([file(name)]), refused(/outside the image root/));
      assertContained();
      assert.ok(!existsSync(path.join(root, 'out', 'image')), 'no output');
    });
  }

  it('contains absolute names inside the image', async () => {
    const result = await bake([file(`${sentinel}/abs`)]);
    assertContained();
    assert.equal(debugfsCat(result.diskPath, `${sentinel}/abs`).toString(), 'pwned\n');
  });

  it('contains writes through symlinks that point outside (relative, absolute, chained, as directories)', async () => {
    const result = await bake(
      [symlink('up', climb(sentinel)), symlink('abs', sentinel), symlink('chain', 'hop'), symlink('hop', 'abs'), symlink('d', sentinel)],
      [file('up/one'), file('abs/two'), file('chain/three'), file('abs/new/deeper/four'), { name: 'd/', type: 'directory' }, file('d/five')],
    );
    assertContained();
    assert.ok(fsck(result.diskPath).clean);
    const tree = ext4Tree(result.diskPath, path.join(root, 'work', 'scan'));
    for (const name of ['one', 'two', 'three', 'new/deeper/four']) assert.equal(tree.get(`${sentinel}/${name}`)?.type, 'file', name);
    // An explicit directory entry replaces the symlink instead of following it.
    assert.equal(tree.get('/d')?.type, 'dir');
    assert.equal(tree.get('/d/five')?.type, 'file');
    assert.equal(tree.get('/up')?.type, 'symlink');
  });

  it('replaces a symlink to a host file instead of writing through it', async () => {
    const result = await bake([symlink('passwd', `${sentinel}/passwd`)], [file('passwd', 'image passwd\n')]);
    assertContained();
    assert.equal(debugfsCat(result.diskPath, '/passwd').toString(), 'image passwd\n');
  });

  it('refuses a hardlink to the host /etc/shadow, by absolute path, by climbing, and through a symlink', async () => {
    const before = existsSync('/etc/shadow') ? createHash('sha256').update(readFileSync('/etc/shadow')).digest('hex') : null;
    await assert.rejects(bake([hardlink('shadow', '/etc/shadow')]), refused(/"\/etc\/shadow", which is not in the image/));
    await assert.rejects(bake([hardlink('shadow', '../../../../../../etc/shadow')]), refused(/outside the image root/));
    await assert.rejects(bake([symlink('hostetc', '/etc')], [hardlink('shadow', 'hostetc/shadow')]), refused(/not in the image/));
    await assert.rejects(bake([symlink('etc', '/etc')], [hardlink('shadow', 'etc/shadow')]), refused(/too many levels/));
    await assert.rejects(bake([symlink('up', climb('/etc'))], [hardlink('shadow', 'up/shadow')]), refused(/not in the image/));
    assertContained();
    const after = existsSync('/etc/shadow') ? createHash('sha256').update(readFileSync('/etc/shadow')).digest('hex') : null;
    assert.equal(after, before);
  });

  it('links to an escaping symlink itself, which stays a harmless symlink in the image', async () => {
    const result = await bake([symlink('esc', '/etc/shadow'), hardlink('h', 'esc')]);
    assertContained();
    const tree = ext4Tree(result.diskPath, path.join(root, 'work', 'scan'));
    assert.equal(tree.get('/h')?.type, 'symlink');
    assert.equal(tree.get('/h')?.target, '/etc/shadow');
    assert.equal(tree.get('/h')?.nlink, 2);
  });

  it('refuses symlink loops', async () => {
    await assert.rejects(bake([symlink('a', 'b'), symlink('b', 'a'), file('a/x')]), refused(/too many levels of symbolic links/));
    assertContained();
  });
});
