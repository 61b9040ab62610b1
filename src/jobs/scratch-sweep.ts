// What a worker killed with kill -9 (or by the OOM killer) leaves while its
// server keeps running and starts another: its bake's work directory (the
// partial disk in it), its spare bake process's directory and its bakes'
// cgroups. The server wipes the scratch root only when it starts, so each
// worker, when it starts, removes what dead workers of this host left.
//
// Scratch names carry the host as well as the pid: on PostgreSQL several
// hosts may share one data directory, and another host's pid tells nothing
// here. Anything of a live process, of another host, and every other name
// (builds' directories) is left alone.
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isProcessAlive } from '../store/dir-lock.js';
import { removeDeadBakeCgroups, type CgroupRoots } from './sandbox/cgroup.js';

/** This host as scratch names hold it: os.hostname() with anything a file name should not hold replaced. */
export const SCRATCH_HOST = os.hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'localhost';

/** The work directory of one attempt at a bake job, by this process. */
export function bakeScratchName(jobId: number, host = SCRATCH_HOST, pid = process.pid): string {
  return `bake-${jobId}-${host}-${pid}`;
}

/** The mkdtemp prefix of a spare bake process's directory (mkdtemp adds six characters). */
export function warmScratchPrefix(host = SCRATCH_HOST, pid = process.pid): string {
  return `warm-${host}-${pid}-`;
}

/** Who made a scratch entry of this name; null for names workers do not make. Pure. */
export function scratchOwner(name: string): { host: string; pid: number } | null {
  const m = /^bake-\d+-(.+)-(\d+)$/.exec(name) ?? /^warm-(.+)-(\d+)-[A-Za-z0-9]{6}$/.exec(name);
  return m ? { host: m[1]!, pid: Number(m[2]) } : null;
}

/** Removes the scratch entries and bake cgroups of dead workers of this host; returns what it removed, for the log. */
export async function sweepDeadWorkers(scratchRoot: string, cgroups: CgroupRoots, alive: (pid: number) => boolean = isProcessAlive, host = SCRATCH_HOST): Promise<string[]> {
  const dead = (pid: number) => pid !== process.pid && !alive(pid);
  const names = (await readdir(scratchRoot).catch(() => [] as string[])).filter((name) => {
    const owner = scratchOwner(name);
    return owner !== null && owner.host === host && dead(owner.pid);
  });
  await Promise.all(names.map((name) => rm(path.join(scratchRoot, name), { recursive: true, force: true })));
  // Cgroups are this host's own: the pid alone says whose they are.
  return [...names, ...(await removeDeadBakeCgroups(cgroups, dead))];
}
