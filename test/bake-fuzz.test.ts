// Property tests: random layers and mutated tar streams never crash the
// unpacker with anything but a BakeError/TarFormatError and never touch the
// host; random images bake into disks that e2fsck finds clean and that hold
// exactly the tree the model built.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { bakeImage } from '../src/convert/bake.js';
import { BakeError } from '../src/convert/errors.js';
import { BakeBudget, DEFAULT_BAKE_LIMITS } from '../src/convert/limits.js';
import { RootfsTree } from '../src/convert/rootfs-tree.js';
import { TarFormatError, TarReader } from '../src/convert/tar-reader.js';
import { layerTar, makeImage, MemorySink, type LayerEntry } from '../src/convert/testing.js';
import { ext4Tree, fsck, modelTree, summarize } from './bake-helpers.js';

let root: string;
let sentinel: string;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kiln-bake-fuzz-'));
  sentinel = path.join(root, 'sentinel');
  mkdirSync(sentinel);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

// Names and targets chosen to collide, climb, whiteout and point outside.
const component = fc.oneof(
  { arbitrary: fc.constantFrom('a', 'b', 'c', 'etc', 'shadow', 'sentinel'), weight: 12 },
  { arbitrary: fc.constantFrom('.wh.a', '.wh.b', '.wh.c', '.wh..wh..opq'), weight: 2 },
  { arbitrary: fc.constantFrom('..', '.', ''), weight: 1 },
);
const entryName = fc.tuple(fc.constantFrom('', '', '', '/', './', 'SENTINEL/'), fc.array(component, { minLength: 1, maxLength: 4 }))
  .map(([prefix, parts]) => `${prefix}${parts.join('/')}` || '.');
const symlinkTarget = fc.oneof(
  entryName,
  fc.constantFrom('/', '..', '../../../../..', '/etc/shadow', 'SENTINEL', `${'../'.repeat(20)}SENTINEL`, 'a/../..'),
);
// Hardlinks mostly to names other entries use, so they often resolve.
const hardlinkTarget = fc.oneof({ arbitrary: fc.constantFrom('a', 'b', 'a/b', 'b/c', '/a', 'c/a'), weight: 4 }, { arbitrary: symlinkTarget, weight: 1 });
const entryType = fc.oneof(
  { arbitrary: fc.constantFrom('file', 'directory'), weight: 8 },
  { arbitrary: fc.constant('symlink'), weight: 3 },
  { arbitrary: fc.constantFrom('link', 'fifo', 'character-device'), weight: 2 },
) as fc.Arbitrary<NonNullable<LayerEntry['type']>>;
const layerEntry: fc.Arbitrary<LayerEntry> = fc.record({
  name: entryName,
  type: entryType,
  symlinkTarget,
  hardlinkTarget,
  content: fc.string({ maxLength: 20 }),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  uid: fc.constantFrom(0, 1, 1000),
  xattrs: fc.option(fc.constantFrom<Record<string, string | Buffer>>(
    { 'user.a': 'x' },
    { 'security.capability': Buffer.from('0100000200200080000000000000000000000000', 'hex') },
    { 'user.big': 'v'.repeat(300), 'trusted.t': '1' }, // too big for the inode: an xattr block
  ), { nil: undefined }),
}).map(({ symlinkTarget: s, hardlinkTarget: h, xattrs, ...e }) => {
  const resolve = (text: string) => text.replaceAll('SENTINEL', sentinel.slice(1));
  const out: LayerEntry = { ...e, name: resolve(e.name), devmajor: 1, devminor: 3 };
  if (xattrs) out.xattrs = xattrs;
  if (e.type === 'symlink') out.linkname = resolve(s);
  if (e.type === 'link') out.linkname = resolve(h);
  if (e.type !== 'file') delete out.content;
  return out;
});
const layers = fc.array(fc.array(layerEntry, { maxLength: 14 }), { minLength: 1, maxLength: 3 });

function isExpected(err: unknown): boolean {
  return err instanceof BakeError || err instanceof TarFormatError;
}

/** Nothing of the host changed: the sentinel stays empty and no new names appear next to the work directory. */
function assertContained(): void {
  assert.deepEqual(readdirSync(sentinel), [], 'sentinel untouched');
  assert.deepEqual(readdirSync(root).filter((n) => n !== 'sentinel' && n !== 'work'), [], 'nothing new next to the work directory');
}

/** Unpacks tars into a tree model; returns the error, if any. */
function unpack(tars: Buffer[], chunk: number): { tree: RootfsTree; sink: MemorySink; error: unknown } {
  const sink = new MemorySink();
  const tree = new RootfsTree(sink, new BakeBudget(DEFAULT_BAKE_LIMITS));
  try {
    for (const tar of tars) {
      tree.beginLayer();
      const reader = new TarReader(tree);
      for (let off = 0; off < tar.length; off += chunk) reader.write(tar.subarray(off, off + chunk));
      reader.end();
    }
    return { tree, sink, error: null };
  } catch (error) {
    return { tree, sink, error };
  }
}

const sorted = (m: Map<string, string>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

describe('unpacking random layers', () => {
  it('only ever fails with a bake error and never touches the host', async () => {
    await fc.assert(
      fc.asyncProperty(layers, fc.integer({ min: 1, max: 2048 }), async (layerEntries, chunk) => {
        const tars = await Promise.all(layerEntries.map((l) => layerTar(l)));
        const { error } = unpack(tars, chunk);
        if (error !== null && !isExpected(error)) throw error;
        assertContained();
      }),
      { numRuns: 300 },
    );
  });

  it('survives mutated and truncated tar streams', async () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 600 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(layerEntry, { minLength: 1, maxLength: 10 }), fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 1500 }), async (entries, mutations, chunk) => {
        let tar = await layerTar(entries);
        for (const m of mutations) {
          const at = m.at % (tar.length + 1);
          if (m.kind === 'flip' && at < tar.length) tar[at] = m.byte;
          if (m.kind === 'truncate') tar = tar.subarray(0, at);
          if (m.kind === 'insert') tar = Buffer.concat([tar.subarray(0, at), Buffer.from(m.bytes), tar.subarray(at)]);
        }
        const { error } = unpack([tar], chunk);
        if (error !== null && !isExpected(error)) throw error;
        assertContained();
      }),
      { numRuns: 300 },
    );
  });

  it('bakes random images into disks that e2fsck finds clean and that hold what the model holds, or fails with a bake error', async () => {
    let baked = 0;
    await fc.assert(
      fc.asyncProperty(layers, async (layerEntries) => {
        const tars = await Promise.all(layerEntries.map((l) => layerTar(l)));
        const image = makeImage(tars.map((tar) => ({ tar, compression: 'gzip' as const })));
        const work = path.join(root, 'work');
        try {
          const result = await bakeImage({
            manifest: image.manifest,
            configBytes: image.configBytes,
            openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
            workDir: path.join(work, 'job'),
            outputDir: path.join(work, 'out'),
          });
          const check = fsck(result.diskPath);
          assert.ok(check.clean, check.output);
          const model = unpack(tars, 4096);
          assert.equal(model.error, null);
          const disk = ext4Tree(result.diskPath, path.join(work, 'scan'));
          assert.deepEqual(sorted(summarize(disk, { mtimes: true })), sorted(summarize(modelTree(model.tree.root, model.sink), { mtimes: true })));
          baked++;
        } catch (err) {
          if (!(err instanceof BakeError)) throw err;
        } finally {
          assertContained();
          rmSync(work, { recursive: true, force: true });
        }
      }),
      { numRuns: 40 },
    );
    assert.ok(baked >= 10, `only ${baked} of 40 random images baked`);
  });
});
