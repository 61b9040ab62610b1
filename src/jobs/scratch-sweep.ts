// What a worker killed with kill -9 (or by the OOM killer) leaves while its
// server keeps running and starts another: its bake's work directory (the
// partial disk in it), its spare bake process's directory and its bakes'
// cgroups. The server wipes the scratch root only when it starts, so each
// worker, when it starts, removes what dead workers left. The names carry
// the maker's pid scope (pid-scope.ts); anything of a live process, of
// another host or container, and every other name (builds' directories) is
// left alone.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { isProcessAlive } from '../store/dir-lock.js';
import { ownerOf, PID_SCOPE, type PidOwner } from './pid-scope.js';
import { removeDeadBakeCgroups, type CgroupRoots } from './sandbox/cgroup.js';

/** The work directory of one attempt at a bake job, by this process. */
export function bakeScratchName(jobId: number, scope = PID_SCOPE, pid = process.pid): string {
  return `bake-${jobId}-${scope}-${pid}`;
}

/** The mkdtemp prefix of a spare bake process's directory (mkdtemp adds six characters). */
export function warmScratchPrefix(scope = PID_SCOPE, pid = process.pid): string {
  return `warm-${scope}-${pid}-`;
}

/** Who made a scratch entry of this name; null for names workers do not make. Pure. */
export function scratchOwner(name: string): PidOwner | null {
  return ownerOf(/^bake-\d+-(.+)-(\d+)$/, name) ?? ownerOf(/^warm-(.+)-(\d+)-[A-Za-z0-9]{6}$/, name);
}

/** Removes the scratch entries and bake cgroups of dead workers of this pid scope; returns what it removed, for the log. */
export async function sweepDeadWorkers(scratchRoot: string, cgroups: CgroupRoots, alive: (pid: number) => boolean = isProcessAlive, scope = PID_SCOPE): Promise<string[]> {
  const dead = (owner: PidOwner | null) => owner !== null && owner.scope === scope && owner.pid !== process.pid && !alive(owner.pid);
  const names = (await readdir(scratchRoot).catch(() => [] as string[])).filter((name) => dead(scratchOwner(name)));
  await Promise.all(names.map((name) => rm(path.join(scratchRoot, name), { recursive: true, force: true })));
  return [...names, ...(await removeDeadBakeCgroups(cgroups, dead))];
}
