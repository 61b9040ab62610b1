// Memory and CPU of a server process *and its descendants*, from /proc. Kiln
// may hand work to child processes (mkfs.ext4, or workers if it ever forks),
// so reading only the top process could miss memory or CPU it causes.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const CLOCK_TICKS = 100; // USER_HZ on Linux/x86-64 (`getconf CLK_TCK`)

/** Fields of /proc/PID/stat after the `(comm)` field, which may itself contain spaces. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // exited meanwhile
  }
}

/** `pid` and all its living descendants. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(Number(name));
    if (!fields) continue;
    const ppid = Number(fields[1]); // field 4 of stat
    children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
  }
  const tree: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    tree.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return tree;
}

/** A process as it was seen: its pid and its start time (field 22 of stat), which tells it apart from a later process with the same pid. */
export interface SeenProcess {
  pid: number;
  start: string;
}

/** The living descendants of `pid` (not `pid` itself), to be checked on after `pid` is stopped. */
export function descendants(pid: number): SeenProcess[] {
  return processTree(pid)
    .slice(1)
    .flatMap((p) => {
      const start = statFields(p)?.[19];
      return start === undefined ? [] : [{ pid: p, start }];
    });
}

/**
 * SIGKILL those of `seen` that are still the same processes. A server's helpers
 * (bake workers, say) may sit in process groups of their own, so stopping the
 * server's group need not reach them.
 */
export function killSurvivors(seen: SeenProcess[]): number {
  let killed = 0;
  for (const { pid, start } of seen) {
    if (statFields(pid)?.[19] !== start) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      // exited meanwhile
    }
  }
  return killed;
}

/** Reset the peak-RSS counter (VmHWM) of the tree to its current RSS (`echo 5 > clear_refs`). */
export function resetPeakRss(pid: number): void {
  for (const p of processTree(pid)) {
    try {
      writeFileSync(`/proc/${p}/clear_refs`, '5');
    } catch {
      // exited meanwhile
    }
  }
}

/** VmHWM of `pid` alone (not its descendants), in MiB. */
export function ownPeakRssMiB(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Sum of VmHWM over the tree, in MiB. For one process this is its peak RSS
 * since the last reset; for several it is an upper bound of their joint peak.
 */
export function peakRssMiB(pid: number): number {
  let kib = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) kib += Number(m[1]);
    } catch {
      // exited meanwhile
    }
  }
  return kib / 1024;
}

/** CPU seconds used so far by the tree, including children it has already reaped. */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    const f = statFields(p);
    // utime, stime, cutime, cstime are fields 14–17 of stat
    if (f) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks / CLOCK_TICKS;
}

/**
 * Wait until the tree uses less than 3% of a core over a second. Kiln bakes
 * every pushed image in the background; measuring pulls or request rates while
 * it bakes would charge that work to the wrong figure (and slow the anchor too).
 */
export async function waitIdle(pid: number, label: string, maxSeconds = 600, quiet = false): Promise<void> {
  const start = Date.now();
  let before = cpuSeconds(pid);
  let nextReport = 10;
  for (;;) {
    await sleep(1000);
    const now = cpuSeconds(pid);
    const waited = (Date.now() - start) / 1000;
    if (now - before < 0.03) {
      if (!quiet) process.stderr.write(`  ${label} idle after ${waited.toFixed(0)} s\n`);
      return;
    }
    before = now;
    if (waited > maxSeconds) {
      process.stderr.write(`  ${label} still busy after ${maxSeconds} s; measuring anyway\n`);
      return;
    }
    if (waited >= nextReport) {
      process.stderr.write(`  waiting for ${label} to go idle (background work)… ${waited.toFixed(0)} s\n`);
      nextReport += 10;
    }
  }
}
