// What a worker killed with kill -9 (or by the OOM killer) leaves while its
// server keeps running and starts another: its bake's work directory
// (`bake-<job>-<pid>`, the partial disk in it), its spare bake process's
// directory (`warm-<pid>-…`) and its bakes' cgroups (`kiln-bake-<pid>-<n>`).
// The server wipes the scratch root only when it starts, so each worker,
// when it starts, removes what dead workers of this host left. Anything of a
// live process, and every other name (builds' directories), is left alone.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { isProcessAlive } from '../store/dir-lock.js';
import { removeDeadBakeCgroups, type CgroupRoots } from './sandbox/cgroup.js';

/** The pid of the worker that made a scratch entry of this name; null for names workers do not make. Pure. */
export function scratchOwnerPid(name: string): number | null {
  const m = /^bake-.+-(\d+)$/.exec(name) ?? /^warm-(\d+)-[A-Za-z0-9]+$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** Removes the scratch entries and bake cgroups of dead workers; returns what it removed, for the log. */
export async function sweepDeadWorkers(scratchRoot: string, cgroups: CgroupRoots, alive: (pid: number) => boolean = isProcessAlive): Promise<string[]> {
  const dead = (pid: number | null) => pid !== null && pid !== process.pid && !alive(pid);
  const names = (await readdir(scratchRoot).catch(() => [] as string[])).filter((name) => dead(scratchOwnerPid(name)));
  await Promise.all(names.map((name) => rm(path.join(scratchRoot, name), { recursive: true, force: true })));
  return [...names, ...(await removeDeadBakeCgroups(cgroups, dead))];
}
