// How big an ext4 image must be to hold a rootfs, computed from the tree
// rather than from `du` (tmpfs reports near-zero sizes for directories, and
// "1.5 × apparent size" runs out of blocks on many-small-file images).
//
// Counted: data blocks per file (each rounded up to whole blocks), extent
// index blocks of large files, directory blocks from their entries, symlink
// targets too long to live in the inode, xattrs too big for the inode,
// lost+found, the inode tables, per-group bitmaps, superblock and descriptor
// backups (incl. reserved GDT blocks), plus free space so the guest can write.
import type { DirNode, Inode } from './rootfs-tree.js';

export interface Ext4Geometry {
  blockSize: number;
  inodeSize: number;
  /** Free space left for the guest, as a fraction of the content. */
  freeFraction: number;
  /** …but never less than this many bytes. */
  minFreeBytes: number;
}

export const DEFAULT_GEOMETRY: Ext4Geometry = { blockSize: 4096, inodeSize: 256, freeFraction: 0.1, minFreeBytes: 16 * 1024 * 1024 };

export interface TreeCounts {
  inodes: number;
  fileBlocks: number;
  extentBlocks: number;
  dirBlocks: number;
  symlinkBlocks: number;
  xattrBlocks: number;
}

export interface Ext4Plan {
  sizeBytes: number;
  inodes: number;
  counts: TreeCounts;
}

const BLOCKS_PER_GROUP_4K = 32768;
const GROUP_DESC_BYTES = 64; // 64bit feature
const RESERVED_INODES = 11; // inodes below EXT4_GOOD_OLD_FIRST_INO
const FAST_SYMLINK_MAX = 59; // shorter targets live in the inode's block map
const IN_INODE_XATTR_BYTES = 92; // 256-byte inodes, 32 bytes extra_isize
const DIRENT_HEADER = 8;
const DIR_BLOCK_TAIL = 12; // metadata_csum tail
const MAX_DIRENT = 8 + 256; // worst waste at the end of a directory block

export function countTree(root: DirNode, blockSize = DEFAULT_GEOMETRY.blockSize): TreeCounts {
  const counts: TreeCounts = { inodes: 0, fileBlocks: 0, extentBlocks: 0, dirBlocks: 0, symlinkBlocks: 0, xattrBlocks: 0 };
  const seen = new Set<Inode>();
  const walk = (dir: DirNode): void => {
    counts.inodes++;
    if (dir.xattrs && xattrBytes(dir.xattrs) > IN_INODE_XATTR_BYTES) counts.xattrBlocks++;
    let entryBytes = 2 * (DIRENT_HEADER + 4); // "." and ".."
    for (const [name, child] of dir.children) {
      entryBytes += DIRENT_HEADER + round4(Buffer.byteLength(name, 'latin1'));
      if (child.kind === 'dir') {
        walk(child);
        continue;
      }
      const inode = child.inode;
      if (seen.has(inode)) continue;
      seen.add(inode);
      counts.inodes++;
      if (inode.xattrs && xattrBytes(inode.xattrs) > IN_INODE_XATTR_BYTES) counts.xattrBlocks++;
      if (inode.type === 'file') {
        const blocks = Math.ceil(inode.size / blockSize);
        counts.fileBlocks += blocks;
        counts.extentBlocks += extentIndexBlocks(blocks, blockSize);
      } else if (inode.type === 'symlink' && Buffer.byteLength(inode.target ?? '', 'latin1') > FAST_SYMLINK_MAX) {
        counts.symlinkBlocks++;
      }
    }
    counts.dirBlocks += Math.max(1, Math.ceil(entryBytes / (blockSize - DIR_BLOCK_TAIL - MAX_DIRENT)));
  };
  walk(root);
  return counts;
}

export function planExt4(root: DirNode, geometry: Ext4Geometry = DEFAULT_GEOMETRY): Ext4Plan {
  return planFromCounts(countTree(root, geometry.blockSize), geometry);
}

export function planFromCounts(counts: TreeCounts, geometry: Ext4Geometry = DEFAULT_GEOMETRY): Ext4Plan {
  const { blockSize: bs, inodeSize } = geometry;
  const lostAndFound = Math.ceil(16384 / bs);
  // 5% spare inodes plus a fixed few: cheap, and mkfs rounds up per group anyway.
  const inodes = Math.ceil((counts.inodes + RESERVED_INODES + 1) * 1.05) + 64;
  const content = counts.fileBlocks + counts.extentBlocks + counts.dirBlocks + counts.symlinkBlocks + counts.xattrBlocks + lostAndFound;
  const inodeTable = Math.ceil((inodes * inodeSize) / bs);
  const free = Math.max(Math.ceil(geometry.minFreeBytes / bs), Math.ceil(content * geometry.freeFraction));
  const base = content + inodeTable + free;
  const blocksPerGroup = BLOCKS_PER_GROUP_4K * (bs / 4096);
  const groups = Math.ceil(base / blocksPerGroup);
  const total = base + groupOverhead(groups, bs);
  const roundTo = Math.ceil((1024 * 1024) / bs);
  return { sizeBytes: Math.ceil(total / roundTo) * roundTo * bs, inodes, counts };
}

/** Bitmaps per group, plus superblock + descriptors + reserved GDT in each backup group (sparse_super). */
function groupOverhead(groups: number, bs: number): number {
  const gdt = Math.ceil((groups * GROUP_DESC_BYTES) / bs);
  // mke2fs reserves descriptor room to grow the filesystem 1024×, at most one block of pointers.
  const reservedGdt = Math.min(bs / 4, Math.ceil((groups * 1024 * GROUP_DESC_BYTES) / bs) - gdt);
  return groups * 2 + backupGroups(groups) * (1 + gdt + reservedGdt);
}

/** Groups holding a superblock copy: 0, 1 and powers of 3, 5 and 7. */
export function backupGroups(groups: number): number {
  const holders = new Set([0, 1]);
  for (const base of [3, 5, 7]) for (let g = base; g < groups; g *= base) holders.add(g);
  return [...holders].filter((g) => g < groups).length;
}

/** Index blocks for a file's extent tree: 4 extents fit in the inode; assume fragments of 1/8 of a group. */
function extentIndexBlocks(blocks: number, bs: number): number {
  const extents = Math.ceil(blocks / ((BLOCKS_PER_GROUP_4K * (bs / 4096)) / 8));
  if (extents <= 4) return 0;
  const perBlock = Math.floor((bs - 12) / 12);
  return Math.ceil(extents / perBlock);
}

function xattrBytes(xattrs: Map<string, Buffer>): number {
  let total = 4; // header
  for (const [name, value] of xattrs) total += 16 + round4(Buffer.byteLength(name)) + round4(value.length);
  return total;
}

function round4(n: number): number {
  return (n + 3) & ~3;
}
