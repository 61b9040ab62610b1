// The seam between the tree model and a disk image format. A writer creates
// a builder per disk; the builder receives file content while layers stream
// (it is the tree's DataSink) and writes everything else from the finished
// tree. ext4 today; an erofs writer implements the same interface.
import type { BakeBudget } from './limits.js';
import type { DataSink, DirNode } from './rootfs-tree.js';

export interface DiskWriteOptions {
  /** The bake's limits; the builder checks the disk size against them. */
  budget: BakeBudget;
  /** Stable text naming the image (e.g. its config digest): the same image gives the same disk bytes. */
  identity: string;
  signal?: AbortSignal;
}

export interface DiskInfo {
  sizeBytes: number;
}

export interface DiskBuilder extends DataSink {
  /** Writes the rest of the disk from the finished tree and makes it durable. */
  finish(root: DirNode): Promise<DiskInfo>;
  /** Gives up: closes the file (the caller removes it). */
  abort(): void;
}

export interface DiskWriter {
  readonly format: string;
  /** File name of the disk inside the image directory, e.g. rootfs.ext4. */
  readonly fileName: string;
  /**
   * Starts a disk at `target`: a path that must not exist, or the descriptor
   * of an empty file opened for reading and writing (the builder takes it over
   * and closes it).
   */
  create(target: string | number, options: DiskWriteOptions): DiskBuilder;
}
