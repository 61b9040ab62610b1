// Property tests: random layers and mutated tar streams never crash the
// unpacker with anything but a BakeError/TarFormatError, never write outside
// the staging directory, and leave the staging tree equal to the model.
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { bakeImage } from '../src/convert/bake.js';
import { BakeError } from '../src/convert/errors.js';
import { RootfsTree, type DirNode } from '../src/convert/rootfs-tree.js';
import { StagingSink } from '../src/convert/staging-sink.js';
import { TarFormatError, TarReader } from '../src/convert/tar-reader.js';
import { layerTar, makeImage, type LayerEntry } from '../src/convert/testing.js';
import { fsck } from './bake-helpers.js';

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
}).map(({ symlinkTarget: s, hardlinkTarget: h, ...e }) => {
  const resolve = (text: string) => text.replaceAll('SENTINEL', sentinel.slice(1));
  const out: LayerEntry = { ...e, name: resolve(e.name), devmajor: 1, devminor: 3 };
  if (e.type === 'symlink') out.linkname = resolve(s);
  if (e.type === 'link') out.linkname = resolve(h);
  if (e.type !== 'file') delete out.content;
  return out;
});
const layers = fc.array(fc.array(layerEntry, { maxLength: 14 }), { minLength: 1, maxLength: 3 });

function isExpected(err: unknown): boolean {
  return err instanceof BakeError || err instanceof TarFormatError;
}

/** Nothing outside the staging directory changed. */
function assertContained(stage: string): void {
  assert.deepEqual(readdirSync(sentinel), [], 'sentinel untouched');
  const others = readdirSync(root).filter((n) => n !== 'sentinel' && path.join(root, n) !== stage && n !== 'work');
  assert.deepEqual(others, [], 'nothing new next to the staging directory');
}

/** The staging tree holds exactly the model's non-special entries, with the model's types and sizes. */
function assertMirrors(model: DirNode, stage: string): void {
  const fromModel: string[] = [];
  const walkModel = (d: DirNode, p: string) => {
    for (const [name, child] of d.children) {
      const cp = `${p}/${name}`;
      if (child.kind === 'dir') {
        fromModel.push(`d ${cp}`);
        walkModel(child, cp);
      } else if (child.inode.type === 'file') fromModel.push(`f ${cp} ${child.inode.size}`);
      else if (child.inode.type === 'symlink') fromModel.push(`l ${cp}`);
    }
  };
  walkModel(model, '');
  const fromDisk: string[] = [];
  const walkDisk = (p: string) => {
    for (const name of readdirSync(Buffer.from(path.join(stage, p)), { encoding: 'buffer' })) {
      const cp = `${p}/${name.toString('latin1')}`;
      const st = lstatSync(Buffer.concat([Buffer.from(stage), Buffer.from(cp, 'latin1')]));
      if (st.isDirectory()) {
        fromDisk.push(`d ${cp}`);
        walkDisk(cp);
      } else if (st.isFile()) fromDisk.push(`f ${cp} ${st.size}`);
      else if (st.isSymbolicLink()) fromDisk.push(`l ${cp}`);
      else fromDisk.push(`? ${cp}`);
    }
  };
  walkDisk('');
  assert.deepEqual(fromDisk.sort(), fromModel.sort());
}

/** Unpacks tars into a fresh staging directory; returns the error, if any. */
function unpack(tars: Buffer[], chunk: number): { stage: string; tree: RootfsTree; error: unknown } {
  const stage = path.join(root, `stage-${Math.random().toString(36).slice(2)}`);
  mkdirSync(stage);
  const sink = new StagingSink(stage);
  const tree = new RootfsTree(sink);
  try {
    for (const tar of tars) {
      tree.beginLayer();
      const reader = new TarReader(tree);
      for (let off = 0; off < tar.length; off += chunk) reader.write(tar.subarray(off, off + chunk));
      reader.end();
    }
    tree.finish();
    return { stage, tree, error: null };
  } catch (error) {
    return { stage, tree, error };
  } finally {
    sink.close();
  }
}

describe('unpacking random layers', () => {
  it('only ever fails with a bake error, stays inside the staging directory, and mirrors the model', async () => {
    await fc.assert(
      fc.asyncProperty(layers, fc.integer({ min: 1, max: 2048 }), async (layerEntries, chunk) => {
        const tars = await Promise.all(layerEntries.map((l) => layerTar(l)));
        const { stage, tree, error } = unpack(tars, chunk);
        try {
          if (error !== null && !isExpected(error)) throw error;
          assertContained(stage);
          if (error === null) assertMirrors(tree.root, stage);
        } finally {
          rmSync(stage, { recursive: true, force: true });
        }
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
        const { stage, tree, error } = unpack([tar], chunk);
        try {
          if (error !== null && !isExpected(error)) throw error;
          assertContained(stage);
          if (error === null) assertMirrors(tree.root, stage);
        } finally {
          rmSync(stage, { recursive: true, force: true });
        }
      }),
      { numRuns: 300 },
    );
  });

  it('bakes random images into clean disks or fails with a bake error', async () => {
    await fc.assert(
      fc.asyncProperty(layers, async (layerEntries) => {
        const image = makeImage(await Promise.all(layerEntries.map(async (l) => ({ tar: await layerTar(l), compression: 'gzip' as const }))));
        const work = path.join(root, 'work');
        try {
          const result = await bakeImage({
            manifest: image.manifest,
            configBytes: image.configBytes,
            openBlob: async (digest) => Readable.from([image.blobs.get(digest) as Buffer]),
            workDir: work,
            stagingDir: work,
            outputDir: path.join(work, 'out'),
          });
          const check = fsck(result.diskPath);
          assert.ok(check.clean, check.output);
        } catch (err) {
          if (!(err instanceof BakeError)) throw err;
        } finally {
          assertContained(path.join(work, 'none'));
          rmSync(work, { recursive: true, force: true });
        }
      }),
      { numRuns: 25 },
    );
  });
});
