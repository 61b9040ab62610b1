// A pid lock on the data directory. The server holds it while it runs; the
// offline tools (`kiln gc --data-dir`, `kiln fsck`) hold it while they work,
// so they never sweep or quarantine under a live server (whose in-flight
// requests they cannot see) and a server cannot start under them. A lock
// left by a process that died (kill -9) is taken over.
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { PRIVATE_FILE_MODE, type DataDir } from './data-dir.js';

export class DataDirInUseError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
    readonly owner: string,
  ) {
    super(`the data directory ${dir} is in use by ${owner} (pid ${pid}); stop it first (or, if no such process runs, remove ${dir}/kiln.lock)`);
    this.name = 'DataDirInUseError';
  }
}

interface LockInfo {
  pid: number;
  owner: string;
  since: string;
}

// Several holders in one process (tests run servers in-process) share the file.
const held = new Map<string, number>();

/** Takes the lock; resolves with its release function. */
export async function lockDataDir(dirs: DataDir, owner: string): Promise<() => Promise<void>> {
  const file = dirs.lockFile;
  for (let attempt = 0; ; attempt++) {
    const info: LockInfo = { pid: process.pid, owner, since: new Date().toISOString() };
    try {
      await writeFile(file, `${JSON.stringify(info)}\n`, { flag: 'wx', mode: PRIVATE_FILE_MODE });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 5) throw err;
    }
    const current = await readLock(file);
    if (current && current.pid === process.pid) break;
    if (current && isProcessAlive(current.pid)) throw new DataDirInUseError(dirs.root, current.pid, current.owner);
    // Stale (its process is gone) or unreadable: take it over.
    await unlink(file).catch(() => undefined);
  }
  held.set(file, (held.get(file) ?? 0) + 1);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    const n = (held.get(file) ?? 1) - 1;
    if (n > 0) {
      held.set(file, n);
      return;
    }
    held.delete(file);
    const current = await readLock(file);
    if (current?.pid === process.pid) await unlink(file).catch(() => undefined);
  };
}

async function readLock(file: string): Promise<LockInfo | null> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<LockInfo>;
    return typeof parsed.pid === 'number' ? { pid: parsed.pid, owner: String(parsed.owner ?? 'kiln'), since: String(parsed.since ?? '') } : null;
  } catch {
    return null;
  }
}

/** Whether a process with this pid exists (EPERM: it does, but belongs to someone else). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
