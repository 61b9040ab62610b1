// Extent trees: where a file's (or directory's) blocks are. Pure.
//
// Four extents fit in the inode itself; more go into leaf blocks of 340
// extents, under index blocks of 340 entries, under the four root entries
// in the inode (depth grows as needed). Each extent covers at most 32768
// blocks (128 MiB), so a contiguous 1 GiB file already needs a leaf block.
import { crc32c } from './crc32c.js';
import { BLOCK_SIZE } from './layout.js';

export interface Extent {
  /** First block of the file this extent maps. */
  logical: number;
  /** First disk block. */
  start: number;
  length: number;
}

export const MAX_EXTENT_BLOCKS = 32768;
const HEADER = 12;
const ENTRY = 12;
const MAGIC = 0xf30a;
/** Entries in the inode's 60-byte i_block. */
export const ROOT_SLOTS = 4;
/** Entries in a tree block: the rest of the block holds the 4-byte checksum tail. */
export const BLOCK_SLOTS = Math.floor((BLOCK_SIZE - HEADER - 4) / ENTRY);
export const I_BLOCK_BYTES = 60;

/** The extents of `count` contiguous blocks at `start`. */
export function runExtents(start: number, count: number): Extent[] {
  const out: Extent[] = [];
  for (let done = 0; done < count; done += MAX_EXTENT_BLOCKS) {
    out.push({ logical: done, start: start + done, length: Math.min(MAX_EXTENT_BLOCKS, count - done) });
  }
  return out;
}

/** Extents of a contiguous run of `count` blocks. */
export function extentCount(count: number): number {
  return Math.ceil(count / MAX_EXTENT_BLOCKS);
}

/** Tree blocks (leaves and index blocks) a file of `extents` extents needs besides its inode. */
export function treeBlockCount(extents: number): number {
  let total = 0;
  for (let nodes = extents; nodes > ROOT_SLOTS; ) {
    nodes = Math.ceil(nodes / BLOCK_SLOTS);
    total += nodes;
  }
  return total;
}

export interface ExtentTree {
  /** The inode's i_block. */
  root: Buffer;
  /** Tree blocks to write, each BLOCK_SIZE bytes. */
  blocks: Array<{ block: number; data: Buffer }>;
}

interface Entry {
  logical: number;
  /** Disk block: the data start for leaf entries, the child node for index entries. */
  target: number;
  /** Leaf entries only. */
  length: number;
}

/**
 * The tree for `extents`, using `treeBlocks` (treeBlockCount(extents.length)
 * block numbers, leaves first) for its nodes; `inodeSeed` is the inode's
 * checksum seed (filesystem seed, inode number, generation).
 */
export function buildExtentTree(extents: readonly Extent[], treeBlocks: readonly number[], inodeSeed: number): ExtentTree {
  if (treeBlocks.length !== treeBlockCount(extents.length)) throw new RangeError(`${extents.length} extents need ${treeBlockCount(extents.length)} tree blocks, got ${treeBlocks.length}`);
  let level: Entry[] = extents.map((e) => ({ logical: e.logical, target: e.start, length: e.length }));
  let depth = 0;
  let next = 0;
  const blocks: ExtentTree['blocks'] = [];
  while (level.length > ROOT_SLOTS) {
    const up: Entry[] = [];
    for (let i = 0; i < level.length; i += BLOCK_SLOTS) {
      const block = treeBlocks[next++];
      const data = Buffer.alloc(BLOCK_SIZE);
      writeNode(data, level.slice(i, i + BLOCK_SLOTS), BLOCK_SLOTS, depth);
      data.writeUInt32LE(crc32c(inodeSeed, data.subarray(0, HEADER + ENTRY * BLOCK_SLOTS)), HEADER + ENTRY * BLOCK_SLOTS);
      blocks.push({ block, data });
      up.push({ logical: level[i].logical, target: block, length: 0 });
    }
    level = up;
    depth++;
  }
  const root = Buffer.alloc(I_BLOCK_BYTES);
  writeNode(root, level, ROOT_SLOTS, depth);
  return { root, blocks };
}

/**
 * Writes the extent root of `count` contiguous blocks at `start` into `buf`
 * at `offset` (the inode's i_block), without allocating when they fit in the
 * inode; `treeStart` is where their tree blocks went otherwise.
 */
export function writeRunRoot(buf: Buffer, offset: number, start: number, count: number, treeStart: number, inodeSeed: number): void {
  const extents = extentCount(count);
  if (extents > ROOT_SLOTS) {
    const tree = buildExtentTree(runExtents(start, count), consecutive(treeStart, treeBlockCount(extents)), inodeSeed);
    tree.root.copy(buf, offset);
    return;
  }
  writeHeader(buf, offset, extents, ROOT_SLOTS, 0);
  for (let i = 0; i < extents; i++) {
    const done = i * MAX_EXTENT_BLOCKS;
    writeLeaf(buf, offset + HEADER + i * ENTRY, done, start + done, Math.min(MAX_EXTENT_BLOCKS, count - done));
  }
}

/** The tree blocks of a run with more than four extents (none otherwise), to write at treeStart. */
export function runTreeBlocks(start: number, count: number, treeStart: number, inodeSeed: number): ExtentTree['blocks'] {
  const extents = extentCount(count);
  if (extents <= ROOT_SLOTS) return [];
  return buildExtentTree(runExtents(start, count), consecutive(treeStart, treeBlockCount(extents)), inodeSeed).blocks;
}

function consecutive(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}

function writeHeader(buf: Buffer, at: number, entries: number, max: number, depth: number): void {
  buf.writeUInt16LE(MAGIC, at);
  buf.writeUInt16LE(entries, at + 2);
  buf.writeUInt16LE(max, at + 4);
  buf.writeUInt16LE(depth, at + 6);
  buf.writeUInt32LE(0, at + 8); // generation
}

function writeLeaf(buf: Buffer, at: number, logical: number, start: number, length: number): void {
  buf.writeUInt32LE(logical, at);
  buf.writeUInt16LE(length, at + 4);
  buf.writeUInt16LE(Math.floor(start / 2 ** 32), at + 6);
  buf.writeUInt32LE(start % 2 ** 32, at + 8);
}

function writeNode(buf: Buffer, entries: readonly Entry[], max: number, depth: number): void {
  writeHeader(buf, 0, entries.length, max, depth);
  entries.forEach((e, i) => {
    const at = HEADER + i * ENTRY;
    if (depth === 0) writeLeaf(buf, at, e.logical, e.target, e.length);
    else {
      buf.writeUInt32LE(e.logical, at);
      buf.writeUInt32LE(e.target % 2 ** 32, at + 4);
      buf.writeUInt16LE(Math.floor(e.target / 2 ** 32), at + 8);
      buf.writeUInt16LE(0, at + 10);
    }
  });
}
