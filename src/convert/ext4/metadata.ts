// Encoders for the superblock, group descriptors, bitmaps and inodes, with
// their metadata_csum checksums (crc32c seeded by the filesystem UUID). Pure.
import { crc32c, crc32cU32 } from './crc32c.js';
import { BLOCK_SIZE, DESC_SIZE, EXTRA_ISIZE, FIRST_INO, INODE_SIZE, LOST_FOUND_INO } from './layout.js';

export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFDIR = 0o040000;
export const S_IFBLK = 0o060000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const EXTENTS_FL = 0x80000;

const COMPAT = 0x8 /* ext_attr */ | 0x20 /* dir_index */ | 0x200; /* sparse_super2 */
const INCOMPAT = 0x2 /* filetype */ | 0x40 /* extents */ | 0x200; /* flex_bg */
const RO_COMPAT = 0x1 /* sparse_super */ | 0x2 /* large_file */ | 0x8 /* huge_file */ | 0x20 /* dir_nlink */ | 0x40 /* extra_isize */ | 0x400; /* metadata_csum */

/** The checksum seed of everything but the superblock: crc32c(~0, uuid). */
export function fsChecksumSeed(uuid: Buffer): number {
  return crc32c(0xffffffff, uuid);
}

const inoAndGeneration = Buffer.alloc(8);

/** The seed of an inode's own checksums (inode, extent blocks, directory blocks): its number and generation (always 0). */
export function inodeChecksumSeed(fsSeed: number, ino: number): number {
  inoAndGeneration.writeUInt32LE(ino, 0);
  return crc32c(fsSeed, inoAndGeneration);
}

export interface SuperblockFields {
  inodes: number;
  blocks: number;
  freeBlocks: number;
  freeInodes: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  uuid: Buffer;
  hashSeed: Buffer;
}

/** The 1024-byte superblock (written at byte 1024 of the disk). */
export function encodeSuperblock(f: SuperblockFields): Buffer {
  const sb = Buffer.alloc(1024);
  sb.writeUInt32LE(f.inodes, 0x0);
  sb.writeUInt32LE(f.blocks, 0x4);
  sb.writeUInt32LE(0, 0x8); // no blocks reserved for root: the margin is for whoever runs the VM
  sb.writeUInt32LE(f.freeBlocks, 0xc);
  sb.writeUInt32LE(f.freeInodes, 0x10);
  sb.writeUInt32LE(0, 0x14); // first data block (4 KiB blocks)
  sb.writeUInt32LE(Math.log2(BLOCK_SIZE) - 10, 0x18);
  sb.writeUInt32LE(Math.log2(BLOCK_SIZE) - 10, 0x1c); // cluster size = block size
  sb.writeUInt32LE(f.blocksPerGroup, 0x20);
  sb.writeUInt32LE(f.blocksPerGroup, 0x24);
  sb.writeUInt32LE(f.inodesPerGroup, 0x28);
  sb.writeUInt16LE(0xffff, 0x36); // max mount count: no forced checks
  sb.writeUInt16LE(0xef53, 0x38);
  sb.writeUInt16LE(1, 0x3a); // cleanly unmounted
  sb.writeUInt16LE(1, 0x3c); // errors: continue
  sb.writeUInt32LE(1, 0x4c); // dynamic revision
  sb.writeUInt32LE(FIRST_INO, 0x54);
  sb.writeUInt16LE(INODE_SIZE, 0x58);
  sb.writeUInt32LE(COMPAT, 0x5c);
  sb.writeUInt32LE(INCOMPAT, 0x60);
  sb.writeUInt32LE(RO_COMPAT, 0x64);
  f.uuid.copy(sb, 0x68);
  f.hashSeed.copy(sb, 0xec);
  sb.writeUInt8(1, 0xfc); // half_md4, for the htrees a guest may build
  sb.writeUInt32LE(0x000c, 0x100); // default mount options: user_xattr, acl
  sb.writeUInt16LE(EXTRA_ISIZE, 0x15c);
  sb.writeUInt16LE(EXTRA_ISIZE, 0x15e);
  sb.writeUInt32LE(0x1, 0x160); // signed directory hash, as mke2fs on x86
  sb.writeUInt8(4, 0x174); // 16 groups per flex group
  sb.writeUInt8(1, 0x175); // crc32c
  sb.writeUInt32LE(LOST_FOUND_INO, 0x268);
  // s_backup_bgs (0x24c) stay 0: sparse_super2 with no backup superblocks.
  sb.writeUInt32LE(crc32c(0xffffffff, sb.subarray(0, 0x3fc)), 0x3fc);
  return sb;
}

export interface GroupFields {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
  /** Inodes at the end of the table never used. */
  itableUnused: number;
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
}

const BG_INODE_ZEROED = 0x4;

export function writeGroupDescriptor(buf: Buffer, group: number, f: GroupFields, fsSeed: number): void {
  const at = group * DESC_SIZE;
  const d = buf.subarray(at, at + DESC_SIZE);
  d.fill(0);
  d.writeUInt32LE(f.blockBitmap, 0x0);
  d.writeUInt32LE(f.inodeBitmap, 0x4);
  d.writeUInt32LE(f.inodeTable, 0x8);
  d.writeUInt16LE(f.freeBlocks, 0xc);
  d.writeUInt16LE(f.freeInodes, 0xe);
  d.writeUInt16LE(f.usedDirs, 0x10);
  d.writeUInt16LE(BG_INODE_ZEROED, 0x12); // unwritten inode table blocks read as zeros
  d.writeUInt16LE(f.blockBitmapCsum & 0xffff, 0x18);
  d.writeUInt16LE(f.inodeBitmapCsum & 0xffff, 0x1a);
  d.writeUInt16LE(f.itableUnused, 0x1c);
  d.writeUInt16LE(crc32c(crc32cU32(fsSeed, group), d) & 0xffff, 0x1e);
}

/** A bitmap's checksum covers its meaningful bytes: bits per group / 8. */
export function bitmapChecksum(fsSeed: number, bitmap: Buffer, bitsPerGroup: number): number {
  return crc32c(fsSeed, bitmap.subarray(0, bitsPerGroup / 8));
}

export interface InodeFields {
  /** Type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  /** Seconds since the epoch, possibly fractional: mtime, and atime, ctime and crtime alike. */
  time: number;
  flags: number;
  /** Blocks the inode owns (data, tree, xattr), in filesystem blocks. */
  blocks: number;
  /** The xattr block, or 0. */
  xattrBlock: number;
}

/** Where i_block (extent root, fast symlink target or device number; 60 bytes) starts in an inode. */
export const I_BLOCK_OFFSET = 0x28;

/**
 * Encodes an inode into `buf` at `at` and checksums it. The 256 bytes start
 * zeroed, with i_block and the in-inode xattrs already written by the caller.
 */
export function writeInode(buf: Buffer, at: number, f: InodeFields, inodeSeed: number): void {
  const sectors = f.blocks * (BLOCK_SIZE / 512);
  buf.writeUInt16LE(f.mode, at + 0x0);
  buf.writeUInt16LE(f.uid & 0xffff, at + 0x2);
  buf.writeUInt32LE(f.size % 2 ** 32, at + 0x4);
  const { seconds, extra } = encodeTime(f.time);
  for (const off of [0x8, 0xc, 0x10, 0x90]) buf.writeUInt32LE(seconds, at + off); // atime, ctime, mtime, crtime
  for (const off of [0x84, 0x88, 0x8c, 0x94]) buf.writeUInt32LE(extra, at + off);
  buf.writeUInt16LE(f.gid & 0xffff, at + 0x18);
  buf.writeUInt16LE(f.links, at + 0x1a);
  buf.writeUInt32LE(sectors % 2 ** 32, at + 0x1c);
  buf.writeUInt32LE(f.flags, at + 0x20);
  buf.writeUInt32LE(f.xattrBlock % 2 ** 32, at + 0x68);
  buf.writeUInt32LE(Math.floor(f.size / 2 ** 32), at + 0x6c);
  buf.writeUInt16LE(Math.floor(sectors / 2 ** 32), at + 0x74);
  buf.writeUInt16LE(Math.floor(f.xattrBlock / 2 ** 32), at + 0x76);
  buf.writeUInt16LE(f.uid >>> 16, at + 0x78);
  buf.writeUInt16LE(f.gid >>> 16, at + 0x7a);
  buf.writeUInt16LE(EXTRA_ISIZE, at + 0x80);
  const crc = crc32c(inodeSeed, buf.subarray(at, at + INODE_SIZE));
  buf.writeUInt16LE(crc & 0xffff, at + 0x7c);
  buf.writeUInt16LE(crc >>> 16, at + 0x82);
}

const MIN_TIME = -(2 ** 31);
const MAX_TIME = 2 ** 34 - 2 ** 31 - 1;

/** ext4's 34-bit seconds: the low 32 bits, and two epoch bits with the nanoseconds in the extra field. Out-of-range times are clamped. */
export function encodeTime(time: number): { seconds: number; extra: number } {
  const t = Number.isFinite(time) ? Math.min(MAX_TIME, Math.max(MIN_TIME, time)) : 0;
  const whole = Math.floor(t);
  const nanos = Math.min(999_999_999, Math.round((t - whole) * 1e9));
  const low = ((((whole + 2 ** 31) % 2 ** 32) + 2 ** 32) % 2 ** 32) - 2 ** 31; // as a signed 32-bit number
  const epoch = (whole - low) / 2 ** 32;
  return { seconds: low >>> 0, extra: ((nanos * 4) | epoch) >>> 0 };
}

/** A device node's i_block: the old 16-bit form when both numbers fit a byte, else the new form in the second word. */
export function writeDevice(buf: Buffer, at: number, major: number, minor: number): void {
  if (major < 256 && minor < 256) buf.writeUInt32LE((major << 8) | minor, at);
  else buf.writeUInt32LE(((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, at + 4);
}
