// ext4 disks with e2fsprogs: `mkfs.ext4 -d` copies the staged tree into a
// sparse file sized by planExt4, then one debugfs run applies the fixups.
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildDebugfsScript } from './debugfs-script.js';
import type { DiskInfo, DiskWriteOptions, DiskWriter, StagedRootfs } from './disk-writer.js';
import { BakeError } from './errors.js';
import { DEFAULT_GEOMETRY, planExt4, type Ext4Geometry } from './ext4-size.js';
import { runTool, ToolError } from './run-tool.js';

const MAX_ATTEMPTS = 4;
const GROWTH = 1.5;
const SPACE_ERROR = /Could not allocate (block|inode)|No space left|too big for a filesystem|Could not expand directory/i;
const DEBUGFS_BANNER = /^debugfs [0-9.]+ \(.*\)$/;

export class Ext4Writer implements DiskWriter {
  readonly format = 'ext4';
  readonly fileName = 'rootfs.ext4';

  constructor(private readonly geometry: Ext4Geometry = DEFAULT_GEOMETRY) {}

  async write(rootfs: StagedRootfs, diskPath: string, options: DiskWriteOptions): Promise<DiskInfo> {
    const plan = planExt4(rootfs.root, this.geometry);
    const script = await this.prepareFixups(rootfs, options.scratchDir);
    let { sizeBytes, inodes } = plan;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.makeFilesystem(rootfs.dir, diskPath, sizeBytes, inodes, options.signal);
        if (script) await applyDebugfs(script, diskPath, options.signal);
        return { sizeBytes, attempts: attempt };
      } catch (err) {
        const outOfSpace = err instanceof ToolError && SPACE_ERROR.test(err.stderr);
        if (!outOfSpace || attempt >= MAX_ATTEMPTS) {
          await rm(diskPath, { force: true });
          if (options.signal?.aborted) throw err;
          throw new BakeError('DISK_WRITE', `could not write the ext4 disk (${sizeBytes} bytes, ${inodes} inodes, attempt ${attempt}): ${(err as Error).message}`, { cause: err });
        }
        sizeBytes = Math.ceil((sizeBytes * GROWTH) / 1048576) * 1048576;
        inodes = Math.ceil(inodes * GROWTH);
      }
    }
  }

  private async makeFilesystem(tree: string, diskPath: string, sizeBytes: number, inodes: number, signal?: AbortSignal): Promise<void> {
    // A fresh sparse file each attempt: mkfs writes only what it uses.
    const handle = await open(diskPath, 'w');
    try {
      await handle.truncate(sizeBytes);
    } finally {
      await handle.close();
    }
    await runTool('mkfs.ext4', [
      '-q', '-F',
      '-b', String(this.geometry.blockSize),
      '-I', String(this.geometry.inodeSize),
      '-N', String(inodes),
      '-m', '0', // no blocks reserved for root: the margin is for whoever runs the VM
      '-O', '^has_journal',
      '-E', 'root_owner=0:0',
      '-d', tree,
      diskPath,
    ], { signal });
  }

  /** Writes the debugfs script and xattr value files; null when there is nothing to fix. */
  private async prepareFixups(rootfs: StagedRootfs, scratchDir: string): Promise<string | null> {
    const dir = path.join(scratchDir, 'debugfs');
    const { script, values } = buildDebugfsScript(rootfs.fixups, (i) => path.join(dir, `xattr-${i}`));
    if (script.trim() === '') return null;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    for (const [i, value] of values.entries()) await writeFile(path.join(dir, `xattr-${i}`), value);
    const scriptPath = path.join(dir, 'commands');
    await writeFile(scriptPath, Buffer.from(script, 'latin1'));
    return scriptPath;
  }
}

/** debugfs exits 0 even when commands fail; anything on stderr besides its banner is a failure. */
async function applyDebugfs(scriptPath: string, diskPath: string, signal?: AbortSignal): Promise<void> {
  const { stderr } = await runTool('debugfs', ['-w', '-f', scriptPath, diskPath], { signal });
  const problems = stderr.split('\n').filter((line) => line.trim() !== '' && !DEBUGFS_BANNER.test(line.trim()));
  if (problems.length > 0) throw new ToolError('debugfs', 0, problems.slice(0, 20).join('\n'));
}
