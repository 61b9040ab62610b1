// One cgroup (v1: memory and pids controllers) per bake, made beside
// nothing: inside the cgroup the worker itself is in, so limits above it
// still hold. Used where the hierarchy is mounted and writable (as root);
// elsewhere the bake has its rlimits only.
//
// The sandboxed process joins the cgroups itself, before it execs anything
// (the launcher's first step writes its pid into cgroup.procs), so every
// process of the sandbox starts inside them.
import { chown, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ownerOf, PID_SCOPE, type PidOwner } from '../pid-scope.js';

export interface BakeCgroups {
  /** The cgroup directories made (memory, pids), for the record. */
  dirs: string[];
  /** The cgroup.procs files the sandboxed process writes its pid into. */
  procsFiles: string[];
  memoryDir: string | null;
  pidsDir: string | null;
}

/** Mount points of the v1 memory and pids hierarchies. */
export interface CgroupRoots {
  memoryRoot: string;
  pidsRoot: string;
}

export interface CgroupPlan extends CgroupRoots {
  memoryBytes: number;
  maxTasks: number;
  /** Owner of cgroup.procs, so that the unprivileged process can join. */
  uid: number;
  gid: number;
}

/** The path of this process's cgroup in one v1 hierarchy, from /proc/self/cgroup ("4:memory:/a/b"). */
export function ownCgroupPath(procSelfCgroup: string, controller: string): string | null {
  for (const line of procSelfCgroup.split('\n')) {
    const [, controllers, where] = line.split(':');
    if (controllers !== undefined && where !== undefined && controllers.split(',').includes(controller)) return where;
  }
  return null;
}

let sequence = 0;

/** Who made a bake cgroup of this name (createCgroups), or null. Pure. */
export function bakeCgroupOwner(name: string): PidOwner | null {
  return ownerOf(/^kiln-bake-(.+)-(\d+)-\d+$/, name);
}

/** Makes the bake's cgroups where possible; controllers that are missing or not writable are left out. */
export async function createCgroups(plan: CgroupPlan): Promise<BakeCgroups> {
  const self = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const name = `kiln-bake-${PID_SCOPE}-${process.pid}-${++sequence}`;
  const result: BakeCgroups = { dirs: [], procsFiles: [], memoryDir: null, pidsDir: null };
  const make = async (root: string, controller: string, settings: Array<[string, string]>): Promise<string | null> => {
    const own = ownCgroupPath(self, controller);
    if (own === null) return null;
    const dir = path.join(root, own, name);
    try {
      await mkdir(dir);
    } catch {
      return null; // not mounted, or not ours to write
    }
    try {
      for (const [file, value] of settings) await writeFile(path.join(dir, file), value);
      if (plan.uid !== process.getuid?.()) await chown(path.join(dir, 'cgroup.procs'), plan.uid, plan.gid);
    } catch (err) {
      await rmdir(dir).catch(() => {});
      throw new Error(`could not set up the bake cgroup ${dir}: ${(err as Error).message}`, { cause: err });
    }
    result.dirs.push(dir);
    result.procsFiles.push(path.join(dir, 'cgroup.procs'));
    return dir;
  };
  try {
    result.memoryDir = await make(plan.memoryRoot, 'memory', [['memory.limit_in_bytes', String(plan.memoryBytes)]]);
    if (result.memoryDir) {
      // With swap accounting, swap counts too (memsw must not be below the memory limit, hence after it).
      await writeFile(path.join(result.memoryDir, 'memory.memsw.limit_in_bytes'), String(plan.memoryBytes)).catch(() => {});
    }
    result.pidsDir = await make(plan.pidsRoot, 'pids', [['pids.max', String(plan.maxTasks)]]);
  } catch (err) {
    await removeCgroups(result);
    throw err;
  }
  return result;
}

/** How often the memory cgroup's OOM killer ran (memory.oom_control's oom_kill, kernel 4.13+). */
export async function oomKills(cgroups: BakeCgroups): Promise<number> {
  if (!cgroups.memoryDir) return 0;
  const text = await readFile(path.join(cgroups.memoryDir, 'memory.oom_control'), 'utf8').catch(() => '');
  return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0);
}

/** Host pids in the bake's cgroups. */
export async function cgroupPids(cgroups: BakeCgroups): Promise<number[]> {
  const pids = new Set<number>();
  for (const file of cgroups.procsFiles) {
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (line.trim() !== '') pids.add(Number(line));
  }
  return [...pids];
}

/**
 * Removes the bake cgroups, beside this process's own, of workers `dead` says
 * are gone (killed before they could remove them), with whatever still runs in them.
 */
export async function removeDeadBakeCgroups(roots: CgroupRoots, dead: (owner: PidOwner | null) => boolean): Promise<string[]> {
  const self = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const left: BakeCgroups = { dirs: [], procsFiles: [], memoryDir: null, pidsDir: null };
  for (const [root, controller] of [[roots.memoryRoot, 'memory'], [roots.pidsRoot, 'pids']] as const) {
    const own = ownCgroupPath(self, controller);
    if (own === null) continue;
    const parent = path.join(root, own);
    for (const name of await readdir(parent).catch(() => [] as string[])) {
      if (!dead(bakeCgroupOwner(name))) continue;
      left.dirs.push(path.join(parent, name));
      left.procsFiles.push(path.join(parent, name, 'cgroup.procs'));
    }
  }
  const removed = [...left.dirs];
  await removeCgroups(left);
  return removed;
}

/** Kills whatever is left in the cgroups and removes them. */
export async function removeCgroups(cgroups: BakeCgroups): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    for (const pid of await cgroupPids(cgroups)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    const left: string[] = [];
    for (const dir of cgroups.dirs) {
      try {
        await rmdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
      }
    }
    cgroups.dirs = left;
    if (left.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`could not remove the bake cgroups ${cgroups.dirs.join(', ')}`);
}
