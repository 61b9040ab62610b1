// Child processes and scratch directories for the benches, and the guarantee
// that every one of them is gone when the bench ends: normally, on error, or on
// Ctrl-C / SIGTERM.
//
// Every child is spawned `detached`, i.e. as the leader of its own process
// group. Two reasons: Ctrl-C in the terminal reaches only this script, which
// then stops the children in order (a registry gets SIGTERM and time to exit);
// and killing the group also reaches what a child spawned itself (Kiln's
// mkfs.ext4, for example).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

const groups = new Set<number>();
const scratch = new Set<string>();

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM a process group we started, then SIGKILL it if it is still there after `graceMs`. */
export async function stopGroup(pid: number, graceMs = 10_000): Promise<void> {
  signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (alive(pid)) signalGroup(pid, 'SIGKILL');
  groups.delete(pid);
}

/** A fresh directory under /tmp, removed at the end of the bench. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(`/tmp/${prefix}-`);
  scratch.add(dir);
  return dir;
}

export async function removeTree(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Stop everything still running and remove the scratch directories. */
export async function cleanup(): Promise<void> {
  await Promise.all([...groups].map((pid) => stopGroup(pid, 5_000)));
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  scratch.clear();
}

let installed = false;
let interrupted = false;
/** Run `main`, then clean up whatever happens; Ctrl-C and SIGTERM clean up too. */
export function runBench(main: () => Promise<void>): void {
  if (!installed) {
    installed = true;
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        interrupted = true;
        process.stderr.write(`\n${signal}: stopping children and removing scratch dirs…\n`);
        void cleanup().finally(() => process.exit(130));
      });
    }
    // Last resort if something calls process.exit() on the way: no async here.
    process.on('exit', () => {
      for (const pid of groups) signalGroup(pid, 'SIGKILL');
      for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
    });
  }
  main()
    .catch((err: unknown) => {
      if (interrupted) return; // the children we just stopped make main() fail; that is expected
      process.stderr.write(`\nbench failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    })
    .finally(() => cleanup());
}

/** Spawn a long-running child in its own process group; it is stopped by cleanup() if nobody stops it before. */
export function spawnTracked(
  cmd: string,
  args: string[],
  stdout: 'pipe' | 'ignore' | number = 'ignore',
  stderr: 'pipe' | 'ignore' | number = 'pipe',
  env: Record<string, string> = {},
): ChildProcess {
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', stdout, stderr], env: { ...process.env, ...env } });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  groups.add(child.pid);
  child.once('exit', () => groups.delete(child.pid!));
  return child;
}

export interface Finished {
  /** Wall time from spawn to exit, the way `/usr/bin/time` measures a whole process. */
  seconds: number;
  stdout: string;
}

/**
 * Run a command to completion, timing it; a non-zero exit is an error that carries stderr.
 * `interrupt`: when it settles, the command gets SIGINT (wrk then stops and prints its figures).
 */
export function run(cmd: string, args: string[], opts: { interrupt?: Promise<unknown> } = {}): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid !== undefined) groups.add(child.pid);
    const interrupt = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
    };
    opts.interrupt?.then(interrupt, interrupt);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
    // Time at 'exit' (the process is gone); resolve at 'close' (its output is all read).
    let seconds = 0;
    child.once('exit', () => (seconds = Number(process.hrtime.bigint() - t0) / 1e9));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (child.pid !== undefined) groups.delete(child.pid);
      if (code === 0) resolve({ seconds, stdout });
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}:\n${stderr.trim()}`));
    });
  });
}
