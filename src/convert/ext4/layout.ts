// ext4 geometry: the fixed format choices, and how many block groups, blocks
// and inodes a finished tree needs. Pure.
//
// The writer streams file data before it knows the tree, so the layout is
// chosen for it: sparse_super2 with no backup superblocks, and flex_bg, which
// lets every group's bitmaps and inode table live anywhere. The only fixed
// places are then the superblock and the descriptor table at the start, and
// the group size can be picked at the end, when the inode count is known (a
// group holds at most 8 × block size inodes, so a million files need ≥ 31
// groups however little data they have).

export const BLOCK_SIZE = 4096;
export const INODE_SIZE = 256;
/** Bytes of the large inode past the first 128: nanosecond times, crtime, the checksum's high half. */
export const EXTRA_ISIZE = 32;
/** Group descriptors without the 64bit feature (the disk stays below 16 TiB). */
export const DESC_SIZE = 32;
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE;
/** One bitmap block per group: at most this many blocks, and inodes, per group. */
export const MAX_PER_GROUP = 8 * BLOCK_SIZE;
export const ROOT_INO = 2;
/** First inode that is not reserved; it is lost+found's, as mke2fs makes it. */
export const FIRST_INO = 11;
export const LOST_FOUND_INO = FIRST_INO;
/** mke2fs gives lost+found 16 KiB so that e2fsck need not allocate while reconnecting files. */
export const LOST_FOUND_BLOCKS = 16384 / BLOCK_SIZE;
/** Disk sizes are whole MiBs. */
const ROUND_BLOCKS = (1024 * 1024) / BLOCK_SIZE;

export interface SpacePolicy {
  /** Free space left for the guest, as a fraction of what the tree uses… */
  freeFraction: number;
  /** …but never less than this many bytes. */
  minFreeBytes: number;
  /** Spare inodes for the guest, as a fraction of those the tree uses (plus a fixed 64)… */
  spareInodeFraction: number;
  /** …and at least one inode per this many bytes of disk, as mke2fs gives. */
  bytesPerInode: number;
}

export const DEFAULT_SPACE: SpacePolicy = { freeFraction: 0.1, minFreeBytes: 16 * 1024 * 1024, spareInodeFraction: 0.05, bytesPerInode: 16384 };

/** Inodes the disk gets for `used` inodes in use (reserved ones included). */
export function inodesWanted(used: number, policy: SpacePolicy = DEFAULT_SPACE): number {
  return Math.ceil(used * (1 + policy.spareInodeFraction)) + 64;
}

/** Blocks the group descriptor table needs for `groups` groups. */
export function descriptorBlocks(groups: number): number {
  return Math.ceil((groups * DESC_SIZE) / BLOCK_SIZE);
}

/**
 * Descriptor blocks to keep free after the superblock before any data is
 * written: enough for the most groups a disk within the limits can have.
 */
export function reservedDescriptorBlocks(maxDiskBytes: number, maxInodesInUse: number, policy: SpacePolicy = DEFAULT_SPACE): number {
  const byBlocks = Math.ceil(Math.ceil(maxDiskBytes / BLOCK_SIZE) / MAX_PER_GROUP);
  const byInodes = Math.ceil(inodesWanted(maxInodesInUse, policy) / MAX_PER_GROUP);
  return descriptorBlocks(Math.max(1, byBlocks, byInodes));
}

export interface GroupPlan {
  groups: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  /** Inode table blocks of each group. */
  inodeTableBlocks: number;
  totalBlocks: number;
}

export interface PlanInput {
  /** First block after everything allocated so far (data, directories, …); group metadata goes from here. */
  end: number;
  /** Free blocks below `end` (space released by later layers, unused descriptor reserve). */
  freeBelowEnd: number;
  /** Inodes in use, reserved ones included. */
  inodesInUse: number;
}

/**
 * Groups, group size and inodes per group for a finished tree. Each group's
 * block bitmap, inode bitmap and inode table are appended at `end`, then free
 * space for the guest (less what is already free below `end`).
 */
export function planGroups(input: PlanInput, policy: SpacePolicy = DEFAULT_SPACE): GroupPlan {
  const minFree = Math.ceil(policy.minFreeBytes / BLOCK_SIZE);
  const roughTotal = input.end + Math.max(minFree, Math.ceil(input.end * policy.freeFraction));
  const inodes = Math.max(inodesWanted(input.inodesInUse, policy), Math.floor((roughTotal * BLOCK_SIZE) / policy.bytesPerInode));
  let groups = Math.max(1, Math.ceil(inodes / MAX_PER_GROUP));
  for (;;) {
    const inodesPerGroup = roundUp(Math.ceil(inodes / groups), INODES_PER_BLOCK);
    const inodeTableBlocks = inodesPerGroup / INODES_PER_BLOCK;
    const contentEnd = input.end + groups * (2 + inodeTableBlocks);
    const used = contentEnd - input.freeBelowEnd;
    const margin = Math.max(minFree, Math.ceil(used * policy.freeFraction));
    const total = roundUp(contentEnd + Math.max(0, margin - input.freeBelowEnd), ROUND_BLOCKS);
    const byBlocks = Math.ceil(total / MAX_PER_GROUP);
    if (byBlocks > groups) {
      groups = byBlocks;
      continue;
    }
    if (byBlocks === groups) return { groups, blocksPerGroup: MAX_PER_GROUP, inodesPerGroup, inodeTableBlocks, totalBlocks: total };
    // More groups than the blocks need (many inodes, little data): smaller groups, all of one size.
    const blocksPerGroup = roundUp(Math.ceil(total / groups), 8);
    return { groups, blocksPerGroup, inodesPerGroup, inodeTableBlocks, totalBlocks: blocksPerGroup * groups };
  }
}

export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}
