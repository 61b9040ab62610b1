// The seam between the unpacked rootfs and a disk image format. ext4 today;
// an erofs writer (mkfs.erofs) implements the same interface.
import type { DirNode, Fixups } from './rootfs-tree.js';

export interface StagedRootfs {
  /** Directory holding the unpacked tree (without device nodes, fifos and xattrs). */
  dir: string;
  /** The model of the same tree, with everything the directory lacks. */
  root: DirNode;
  fixups: Fixups;
}

export interface DiskWriteOptions {
  /** Private scratch directory for helper files. */
  scratchDir: string;
  signal?: AbortSignal;
}

export interface DiskInfo {
  sizeBytes: number;
  /** How many sizes were tried (more than 1 means the first estimate was too small). */
  attempts: number;
}

export interface DiskWriter {
  readonly format: string;
  /** File name of the disk inside the image directory, e.g. rootfs.ext4. */
  readonly fileName: string;
  write(rootfs: StagedRootfs, diskPath: string, options: DiskWriteOptions): Promise<DiskInfo>;
}
