// ext4 disks written directly from the tree model, in the manner of hcsshim's
// tar2ext4: no mkfs, no debugfs, no staging tree, no privilege.
//
//   streaming: each file's content goes straight from the tar stream to a
//              contiguous run of blocks (reused space first); content that a
//              later layer deletes gives its blocks back
//   finish:    inode numbers; directories, slow symlinks, xattr blocks and
//              extent tree blocks; then the groups are sized for the inode
//              count, and their inode tables and bitmaps, the descriptors and
//              the superblock are written; large free runs are punched out
//              of the file so it stays sparse
//
// Layout: block 0 holds the superblock, the descriptor table follows (room
// for the most groups the limits allow is kept free before any data), and
// everything else floats (flex_bg, sparse_super2 without backups).
import { createHash } from 'node:crypto';
import type { DiskBuilder, DiskInfo, DiskWriteOptions, DiskWriter } from '../disk-writer.js';
import { BakeError } from '../errors.js';
import type { BakeBudget } from '../limits.js';
import { MAX_LINKS, nodeOf, type DirNode, type FileNode, type TreeNode } from '../rootfs-tree.js';
import { BlockFile } from './block-file.js';
import { directoryBlocks, FILE_TYPE, writeDirectory, type FileType } from './directory.js';
import { extentCount, runTreeBlocks, treeBlockCount, writeRunRoot } from './extents.js';
import {
  BLOCK_SIZE,
  DEFAULT_SPACE,
  descriptorBlocks,
  FIRST_INO,
  INODE_SIZE,
  planGroups,
  reservedDescriptorBlocks,
  ROOT_INO,
  type GroupPlan,
  type SpacePolicy,
} from './layout.js';
import {
  bitmapChecksum,
  encodeSuperblock,
  EXTENTS_FL,
  fsChecksumSeed,
  I_BLOCK_OFFSET,
  inodeChecksumSeed,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  writeDevice,
  writeGroupDescriptor,
  writeInode,
  type InodeFields,
} from './metadata.js';
import { FreeSpace } from './free-space.js';
import { layoutXattrs, toDiskXattrs, writeInodeXattrs, xattrBlock, XattrError } from './xattrs.js';

/**
 * Free runs at least this long are punched out of the image file, the
 * largest first and at most MAX_PUNCHES of them (a punch costs ~0.25 ms on a
 * discard-mounted ext4 host); the rest stay as written, as free space.
 */
const PUNCH_MIN_BLOCKS = 16;
const MAX_PUNCHES = 1024;
const FAST_SYMLINK_MAX = 59;
const LOST_FOUND = 'lost+found';
const ZEROS = Buffer.alloc(BLOCK_SIZE);

export class Ext4Writer implements DiskWriter {
  readonly format = 'ext4';
  readonly fileName = 'rootfs.ext4';

  constructor(private readonly space: SpacePolicy = DEFAULT_SPACE) {}

  create(target: string | number, options: DiskWriteOptions): DiskBuilder {
    return new Ext4Builder(typeof target === 'number' ? BlockFile.adopt(target) : BlockFile.create(target), options, this.space);
  }
}

type Node = DirNode | FileNode;

class Ext4Builder implements DiskBuilder {
  private readonly free: FreeSpace;
  private readonly budget: BakeBudget;
  /** Descriptor blocks kept free after the superblock. */
  private readonly reserved: number;
  private position = 0;

  constructor(
    private readonly file: BlockFile,
    private readonly options: DiskWriteOptions,
    private readonly policy: SpacePolicy,
  ) {
    this.budget = options.budget;
    const { maxDiskBytes, maxEntries } = this.budget.limits;
    this.reserved = reservedDescriptorBlocks(maxDiskBytes, maxEntries + FIRST_INO, policy);
    this.free = new FreeSpace(1 + this.reserved);
  }

  // ---- content, while layers stream ------------------------------------------

  beginFile(size: number): number {
    const start = this.free.allocate(Math.ceil(size / BLOCK_SIZE));
    this.budget.checkDiskBytes(this.free.end * BLOCK_SIZE);
    this.position = start * BLOCK_SIZE;
    return start;
  }

  write(chunk: Buffer): void {
    this.file.write(this.position, chunk);
    this.position += chunk.length;
  }

  endFile(): void {
    // Zero the rest of the last block: it may hold what a deleted file left there.
    const tail = this.position % BLOCK_SIZE;
    if (tail > 0) this.file.write(this.position, ZEROS.subarray(tail));
  }

  release(dataRef: number, size: number): void {
    this.free.release(dataRef, Math.ceil(size / BLOCK_SIZE));
  }

  xattrProblem(xattrs: ReadonlyMap<string, Buffer>): string | null {
    try {
      layoutXattrs(toDiskXattrs(xattrs));
      return null;
    } catch (err) {
      if (err instanceof XattrError) return err.message;
      throw err;
    }
  }

  abort(): void {
    this.file.close();
  }

  // ---- the rest, from the finished tree --------------------------------------

  async finish(root: DirNode): Promise<DiskInfo> {
    const signal = this.options.signal;
    const { uuid, hashSeed } = identityBytes(this.options.identity);
    const seed = fsChecksumSeed(uuid);
    addLostFound(root);
    const tree = numberInodes(root);
    const inodesInUse = tree.nodes.length - 1;
    signal?.throwIfAborted();

    // Room for the descriptors of the most groups this tree can need; the rest of the reserve is free space.
    const most = planGroups({ end: this.free.end + countLooseBlocks(tree.nodes), freeBelowEnd: 0, inodesInUse }, this.policy);
    const maxDescriptors = descriptorBlocks(most.groups);
    // The reserve covers every disk within the limits: only a disk over its size limit needs more.
    if (maxDescriptors > this.reserved) {
      this.budget.checkDiskBytes(most.totalBlocks * BLOCK_SIZE);
      throw new Error(`${most.groups} groups need more descriptor blocks than the ${this.reserved} kept free`);
    }
    this.free.release(1 + maxDescriptors, this.reserved - maxDescriptors);

    const refs = this.writeLooseBlocks(tree, seed);
    signal?.throwIfAborted();

    const plan = planGroups({ end: this.free.end, freeBelowEnd: this.free.freeBelowEnd, inodesInUse }, this.policy);
    const descriptors = descriptorBlocks(plan.groups);
    this.free.release(1 + descriptors, maxDescriptors - descriptors);
    this.budget.checkDiskBytes(plan.totalBlocks * BLOCK_SIZE);
    const tables = Array.from({ length: plan.groups }, () => this.free.allocate(plan.inodeTableBlocks));
    const bitmaps = this.free.allocate(2 * plan.groups);

    this.writeInodeTables(tree.nodes, refs, plan, tables, seed);
    signal?.throwIfAborted();
    const used = this.writeBitmapsAndDescriptors(tree, plan, tables, bitmaps, descriptors, seed);
    this.file.write(1024, encodeSuperblock({
      inodes: plan.inodesPerGroup * plan.groups,
      blocks: plan.totalBlocks,
      freeBlocks: plan.totalBlocks - used.blocks,
      freeInodes: plan.inodesPerGroup * plan.groups - used.inodes,
      blocksPerGroup: plan.blocksPerGroup,
      inodesPerGroup: plan.inodesPerGroup,
      uuid,
      hashSeed,
    }));
    const holes = this.free.runs().filter((r) => r.count >= PUNCH_MIN_BLOCKS).sort((a, b) => b.count - a.count);
    for (const run of holes.slice(0, MAX_PUNCHES)) this.file.punch(run.start * BLOCK_SIZE, run.count * BLOCK_SIZE);
    this.file.setSize(plan.totalBlocks * BLOCK_SIZE);
    this.file.sync();
    this.file.close();
    return { sizeBytes: plan.totalBlocks * BLOCK_SIZE };
  }

  /**
   * Allocates and writes directory blocks, slow symlink targets, xattr blocks
   * and extent tree blocks, in inode order (so the writes are sequential).
   */
  private writeLooseBlocks(tree: NumberedTree, seed: number): LooseRefs {
    const { nodes, parents } = tree;
    const refs: LooseRefs = { blocks: new Uint32Array(nodes.length), count: new Uint32Array(nodes.length), tree: new Uint32Array(nodes.length), xattr: new Uint32Array(nodes.length) };
    for (let ino = ROOT_INO; ino < nodes.length; ino++) {
      const node = nodes[ino];
      if (!node) continue;
      const inodeSeed = inodeChecksumSeed(seed, ino);
      if (node.kind === 'dir') {
        const count = directoryBlocks(node.children.keys());
        const start = this.free.allocate(count);
        refs.blocks[ino] = start;
        refs.count[ino] = count;
        let at = start;
        writeDirectory({ self: ino, parent: parents[ino], children: node.children, inoOf, typeOf }, inodeSeed, (block) => this.file.write(at++ * BLOCK_SIZE, block));
        refs.tree[ino] = this.writeTree(start, count, inodeSeed);
      } else if (node.kind === 'symlink' && (node.target as string).length > FAST_SYMLINK_MAX) {
        const block = this.free.allocate(1);
        refs.blocks[ino] = block;
        const data = Buffer.alloc(BLOCK_SIZE);
        data.write(node.target as string, 'latin1');
        this.file.write(block * BLOCK_SIZE, data);
      } else if (node.kind === 'file' && node.dataRef >= 0) {
        refs.tree[ino] = this.writeTree(node.dataRef, Math.ceil(node.size / BLOCK_SIZE), inodeSeed);
      }
      const inBlock = node.xattrs ? layoutXattrs(toDiskXattrs(node.xattrs)).inBlock : [];
      if (inBlock.length > 0) {
        const block = this.free.allocate(1);
        refs.xattr[ino] = block;
        this.file.write(block * BLOCK_SIZE, xattrBlock(inBlock, block, seed));
      }
    }
    return refs;
  }

  /** Allocates and writes the extent tree blocks of a run that has more than four extents; returns the first (0: none needed). */
  private writeTree(start: number, count: number, inodeSeed: number): number {
    const treeCount = treeBlockCount(extentCount(count));
    if (treeCount === 0) return 0;
    const treeStart = this.free.allocate(treeCount);
    for (const { block, data } of runTreeBlocks(start, count, treeStart, inodeSeed)) this.file.write(block * BLOCK_SIZE, data);
    return treeStart;
  }

  private writeInodeTables(nodes: readonly (Node | undefined)[], refs: LooseRefs, plan: GroupPlan, tables: readonly number[], seed: number): void {
    const perChunk = 256;
    const chunk = Buffer.alloc(perChunk * INODE_SIZE);
    for (let group = 0; group < plan.groups; group++) {
      const first = group * plan.inodesPerGroup + 1;
      const last = Math.min(nodes.length - 1, first + plan.inodesPerGroup - 1);
      for (let base = first; base <= last; base += perChunk) {
        chunk.fill(0);
        const end = Math.min(last, base + perChunk - 1);
        for (let ino = base; ino <= end; ino++) {
          const node = nodes[ino];
          if (node) encodeInode(chunk, (ino - base) * INODE_SIZE, ino, node, refs, seed);
        }
        const block = tables[group] + (base - first) / (BLOCK_SIZE / INODE_SIZE);
        this.file.write(block * BLOCK_SIZE, chunk.subarray(0, (end - base + 1) * INODE_SIZE));
      }
    }
  }

  /** Writes both bitmaps of every group and the descriptor table; returns the blocks and inodes in use. */
  private writeBitmapsAndDescriptors(tree: NumberedTree, plan: GroupPlan, tables: readonly number[], bitmaps: number, descriptors: number, seed: number): { blocks: number; inodes: number } {
    const { groups, blocksPerGroup, inodesPerGroup, totalBlocks } = plan;
    // Every block below the end is in use but the free runs; blocks past the disk's end are padding (set).
    const used = new Uint8Array((groups * blocksPerGroup) / 8);
    setBits(used, 0, this.free.end);
    for (const run of this.free.runs()) clearBits(used, run.start, run.count);
    setBits(used, totalBlocks, groups * blocksPerGroup - totalBlocks);
    const inodesInUse = tree.nodes.length - 1;
    const dirs = new Uint32Array(groups);
    tree.nodes.forEach((node, ino) => {
      if (node?.kind === 'dir') dirs[Math.floor((ino - 1) / inodesPerGroup)]++;
    });

    const table = Buffer.alloc(descriptors * BLOCK_SIZE);
    const block = Buffer.alloc(BLOCK_SIZE);
    let usedBlocks = 0;
    for (let g = 0; g < groups; g++) {
      block.fill(0xff);
      block.set(used.subarray((g * blocksPerGroup) / 8, ((g + 1) * blocksPerGroup) / 8));
      const inGroup = Math.min(blocksPerGroup, totalBlocks - g * blocksPerGroup);
      const freeBlocks = blocksPerGroup - countBits(block, blocksPerGroup);
      usedBlocks += inGroup - freeBlocks;
      const blockBitmapCsum = bitmapChecksum(seed, block, blocksPerGroup);
      this.file.write((bitmaps + g) * BLOCK_SIZE, block);

      const inodes = Math.max(0, Math.min(inodesPerGroup, inodesInUse - g * inodesPerGroup));
      block.fill(0xff);
      block.fill(0, 0, inodesPerGroup / 8);
      setBits(block, 0, inodes);
      const inodeBitmapCsum = bitmapChecksum(seed, block, inodesPerGroup);
      this.file.write((bitmaps + groups + g) * BLOCK_SIZE, block);

      writeGroupDescriptor(table, g, {
        blockBitmap: bitmaps + g,
        inodeBitmap: bitmaps + groups + g,
        inodeTable: tables[g],
        freeBlocks,
        freeInodes: inodesPerGroup - inodes,
        usedDirs: dirs[g],
        itableUnused: inodesPerGroup - inodes,
        blockBitmapCsum,
        inodeBitmapCsum,
      }, seed);
    }
    this.file.write(BLOCK_SIZE, table);
    return { blocks: usedBlocks, inodes: inodesInUse };
  }
}

interface LooseRefs {
  /** First directory block, or the slow symlink's block, by inode. */
  blocks: Uint32Array;
  /** Directory blocks, by inode. */
  count: Uint32Array;
  /** First extent tree block, by inode (0: the extents fit in the inode). */
  tree: Uint32Array;
  /** Xattr block, by inode (0: none). */
  xattr: Uint32Array;
}

interface NumberedTree {
  /** Nodes by inode number; 0, 1 and 3–10 (reserved) are empty. */
  nodes: Array<Node | undefined>;
  /** Parent directory of each directory, by inode. */
  parents: Uint32Array;
}

/** ext4 needs /lost+found for e2fsck; an image's own directory of that name serves. */
function addLostFound(root: DirNode): void {
  const existing = root.children.get(LOST_FOUND);
  if (existing?.kind === 'dir') return;
  if (existing) throw new BakeError('UNSUPPORTED_ENTRY', `entry "/${LOST_FOUND}" is not a directory; ext4 keeps that name for the directory e2fsck reconnects files to`);
  root.children.set(LOST_FOUND, {
    kind: 'dir', mode: 0o700, uid: 0, gid: 0, mtime: root.mtime, xattrs: undefined, ino: 0, children: new Map(), layer: 0, touchedLayer: 0,
  });
}

/** Numbers every inode, directory by directory (iteratively: trees can be deeper than the stack). */
function numberInodes(root: DirNode): NumberedTree {
  const nodes: Array<Node | undefined> = [];
  nodes[ROOT_INO] = root;
  root.ino = ROOT_INO;
  let next = FIRST_INO;
  const parentOf = new Map<DirNode, number>([[root, ROOT_INO]]);
  const pending: DirNode[] = [root];
  for (let dir = pending.pop(); dir; dir = pending.pop()) {
    for (const child of dir.children.values()) {
      const node = nodeOf(child);
      if (node.ino !== 0) continue; // another name of a hardlinked file
      node.ino = next;
      nodes[next++] = node;
      if (node.kind === 'dir') {
        parentOf.set(node, dir.ino);
        pending.push(node);
      }
    }
  }
  const parents = new Uint32Array(next);
  for (const [dir, parent] of parentOf) parents[dir.ino] = parent;
  return { nodes, parents };
}

/** Blocks the finish will allocate besides group metadata. */
function countLooseBlocks(nodes: ReadonlyArray<Node | undefined>): number {
  let total = 0;
  for (const node of nodes) {
    if (!node) continue;
    if (node.kind === 'dir') {
      const count = directoryBlocks(node.children.keys());
      total += count + treeBlockCount(extentCount(count));
    } else if (node.kind === 'symlink' && (node.target as string).length > FAST_SYMLINK_MAX) {
      total += 1;
    } else if (node.kind === 'file') {
      total += treeBlockCount(extentCount(Math.ceil(node.size / BLOCK_SIZE)));
    }
    if (node.xattrs && layoutXattrs(toDiskXattrs(node.xattrs)).inBlock.length > 0) total += 1;
  }
  return total;
}

const inoOf = (child: TreeNode): number => nodeOf(child).ino;
const typeOf = (child: TreeNode): FileType => fileType(nodeOf(child));

function fileType(node: Node): FileType {
  switch (node.kind) {
    case 'dir':
      return FILE_TYPE.dir;
    case 'file':
      return FILE_TYPE.file;
    case 'symlink':
      return FILE_TYPE.symlink;
    case 'special':
      return node.device?.kind === 'fifo' ? FILE_TYPE.fifo : node.device?.kind === 'char' ? FILE_TYPE.char : FILE_TYPE.block;
  }
}

function encodeInode(buf: Buffer, at: number, ino: number, node: Node, refs: LooseRefs, seed: number): void {
  const inodeSeed = inodeChecksumSeed(seed, ino);
  const xattrBlockNo = refs.xattr[ino];
  const f: InodeFields = { mode: node.mode & 0o7777, uid: node.uid, gid: node.gid, size: 0, links: 1, time: node.mtime, flags: 0, blocks: xattrBlockNo > 0 ? 1 : 0, xattrBlock: xattrBlockNo };
  const mapBlocks = (start: number, count: number) => {
    writeRunRoot(buf, at + I_BLOCK_OFFSET, start, count, refs.tree[ino], inodeSeed);
    f.blocks += count + treeBlockCount(extentCount(count));
    f.flags = EXTENTS_FL;
  };
  switch (node.kind) {
    case 'dir': {
      let subdirs = 0;
      for (const child of node.children.values()) if (child.kind === 'dir') subdirs++;
      const count = refs.count[ino];
      f.mode |= S_IFDIR;
      f.size = count * BLOCK_SIZE;
      f.links = 2 + subdirs > MAX_LINKS ? 1 : 2 + subdirs; // dir_nlink: 1 stands for "many"
      mapBlocks(refs.blocks[ino], count);
      break;
    }
    case 'file':
      f.mode |= S_IFREG;
      f.size = node.size;
      f.links = node.links;
      mapBlocks(Math.max(0, node.dataRef), Math.ceil(node.size / BLOCK_SIZE));
      break;
    case 'symlink': {
      const target = node.target as string;
      f.mode |= S_IFLNK;
      f.size = target.length;
      f.links = node.links;
      if (target.length > FAST_SYMLINK_MAX) mapBlocks(refs.blocks[ino], 1);
      else buf.write(target, at + I_BLOCK_OFFSET, 'latin1');
      break;
    }
    case 'special': {
      const device = node.device as NonNullable<FileNode['device']>;
      f.mode |= device.kind === 'fifo' ? S_IFIFO : device.kind === 'char' ? S_IFCHR : S_IFBLK;
      f.links = node.links;
      if (device.kind !== 'fifo') writeDevice(buf, at + I_BLOCK_OFFSET, device.major, device.minor);
      break;
    }
  }
  if (node.xattrs) writeInodeXattrs(buf.subarray(at, at + INODE_SIZE), layoutXattrs(toDiskXattrs(node.xattrs)).inInode);
  writeInode(buf, at, f, inodeSeed);
}

/** UUID (random-looking, version 4) and htree hash seed derived from the image, so a disk is reproducible. */
function identityBytes(identity: string): { uuid: Buffer; hashSeed: Buffer } {
  const digest = createHash('sha256').update(`kiln ext4\0${identity}`).digest();
  const uuid = Buffer.from(digest.subarray(0, 16));
  uuid[6] = (uuid[6] & 0x0f) | 0x40;
  uuid[8] = (uuid[8] & 0x3f) | 0x80;
  return { uuid, hashSeed: Buffer.from(digest.subarray(16, 32)) };
}

function setBits(bits: Uint8Array, from: number, count: number): void {
  let i = from;
  const end = from + count;
  for (; i < end && i % 8 !== 0; i++) bits[i >> 3] |= 1 << (i & 7);
  const wholeEnd = end - (end % 8);
  if (i < wholeEnd) {
    bits.fill(0xff, i >> 3, wholeEnd >> 3);
    i = wholeEnd;
  }
  for (; i < end; i++) bits[i >> 3] |= 1 << (i & 7);
}

function clearBits(bits: Uint8Array, from: number, count: number): void {
  let i = from;
  const end = from + count;
  for (; i < end && i % 8 !== 0; i++) bits[i >> 3] &= ~(1 << (i & 7));
  const wholeEnd = end - (end % 8);
  if (i < wholeEnd) {
    bits.fill(0, i >> 3, wholeEnd >> 3);
    i = wholeEnd;
  }
  for (; i < end; i++) bits[i >> 3] &= ~(1 << (i & 7));
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let v = b; v; v >>= 1) n += v & 1;
  return n;
});

/** Set bits among the first `count` (a multiple of 8). */
function countBits(bits: Uint8Array, count: number): number {
  let n = 0;
  for (let i = 0; i < count / 8; i++) n += POPCOUNT[bits[i]];
  return n;
}
