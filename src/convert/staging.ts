// Where the rootfs is unpacked before mkfs. Creating files on the ext4 root
// of this machine costs ~30× more than on tmpfs (see bench/BASELINES), so
// /dev/shm is used when it has room for the image with memory to spare; the
// job's workDir otherwise.
import { mkdtemp, readdir, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import { runTool } from './run-tool.js';
import { isProcessAlive } from '../store/dir-lock.js';

export const TMPFS_ROOT = '/dev/shm';
const PREFIX = 'kiln-stage-';
const TMPFS_MAGIC = 0x01021994;
/** Free tmpfs to leave for everyone else: this much, or a tenth of the tmpfs. */
const TMPFS_RESERVE_BYTES = 1024 * 1024 * 1024;

export interface StagingDir {
  path: string;
  onTmpfs: boolean;
}

export interface StagingOptions {
  /** Expected size of the unpacked tree. */
  estimateBytes: number;
  /** Stage under this directory, no questions asked. */
  parent?: string;
  /** The tmpfs to try first (tests point this elsewhere). */
  tmpfsRoot?: string;
}

export async function createStagingDir(workDir: string, options: StagingOptions): Promise<StagingDir> {
  if (options.parent) return { path: await mkdtemp(path.join(options.parent, 'rootfs-')), onTmpfs: await isTmpfs(options.parent) };
  const tmpfs = options.tmpfsRoot ?? TMPFS_ROOT;
  await removeStaleStaging(tmpfs);
  if (await tmpfsHasRoom(tmpfs, options.estimateBytes)) {
    return { path: await mkdtemp(path.join(tmpfs, `${PREFIX}${process.pid}-`)), onTmpfs: true };
  }
  return { path: await mkdtemp(path.join(workDir, 'rootfs-')), onTmpfs: false };
}

async function tmpfsHasRoom(dir: string, estimateBytes: number): Promise<boolean> {
  try {
    const s = await statfs(dir);
    if (s.type !== TMPFS_MAGIC) return false;
    const free = s.bavail * s.bsize;
    const reserve = Math.max(TMPFS_RESERVE_BYTES, (s.blocks * s.bsize) / 10);
    return free - estimateBytes >= reserve;
  } catch {
    return false;
  }
}

async function isTmpfs(dir: string): Promise<boolean> {
  try {
    return (await statfs(dir)).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Staging trees on tmpfs outlive a process killed with -9 and hold memory:
 * remove those whose owning process is gone. Job workDirs are wiped by the
 * data directory's own startup cleanup.
 */
export async function removeStaleStaging(tmpfs: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(tmpfs);
  } catch {
    return;
  }
  for (const name of names) {
    const match = /^kiln-stage-(\d+)-/.exec(name);
    if (match && !isProcessAlive(Number(match[1]))) await removeTree(path.join(tmpfs, name));
  }
}

/**
 * Removes an unpacked tree. coreutils `rm -rf` takes a third of the time of
 * fs.rm on a 30,000-entry tree (no per-entry lstat and promise); fs.rm is
 * the fallback if it cannot run.
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    await runTool('rm', ['-rf', '--one-file-system', '--', dir]);
  } catch {
    await rm(dir, { recursive: true, force: true });
  }
}

