// Starts a program of this project in the bake sandbox:
//
//   sh (joins the bake's cgroups) → chrt --idle 0 → nice -n 19 → ionice -c 3
//     → prlimit (cpu, fsize, data, nofile, nproc, core) → setpriv --no-new-privs
//     → bwrap (user, mount, pid, ipc, net, uts namespaces; a read-only view of
//       node, its libraries, zstd and the project's dist + node_modules; a
//       seccomp filter, seccomp.ts) → node
//
// as an unprivileged user (spawn's uid/gid). Every element of the command is
// a fixed path, a tool name or a number: nothing from an image. With
// KILN_BAKE_SANDBOX=none, bwrap is left out (the rest stays).
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cgroupPids, createCgroups, oomKills, removeCgroups, type BakeCgroups } from './cgroup.js';
import { seccompFilter } from './seccomp.js';
import { cpuSeconds, heapMiB, SANDBOX_MAX_TASKS, SANDBOX_OPEN_FILES, type SandboxSettings } from './settings.js';

const run = promisify(execFile);

/** The project checkout: the nearest directory above this module with a package.json (dist/src/… compiled, src/… under tsx). */
export const PROJECT_ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));
/** The compiled entry point: the sandbox always runs dist/, so it must be built. */
export const BAKE_ENTRY = path.join(PROJECT_ROOT, 'dist', 'src', 'jobs', 'sandbox', 'bake-entry.js');

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** Joins each cgroup.procs file named before "--", then runs the rest. */
const JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
export const JOIN_FAILED_EXIT = 125;
/** Processes of the sandbox user (RLIMIT_NPROC counts per user, over the whole host): a backstop where there is no pids cgroup. */
const NPROC_AS_NOBODY = 1024;
const TMP_BYTES = 16 * 1024 * 1024;

export interface SandboxTools {
  sh: string;
  chrt: string;
  nice: string;
  ionice: string;
  prlimit: string;
  setpriv: string;
  bwrap: string | null;
  node: string;
  zstd: string | null;
  /** Directories of the shared libraries node and zstd load, as real paths. */
  libDirs: string[];
  /** Top-level symlinks on the way to them (/lib → usr/lib), recreated inside. */
  symlinks: Array<{ target: string; at: string }>;
  nodeModules: string | null;
}

function which(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return realpathSync(candidate);
    } catch {
      // next
    }
  }
  return null;
}

let toolsPromise: Promise<SandboxTools> | null = null;

/** Finds the tools and what the sandbox must see, once per process. Missing tools are reported by checkSandbox. */
export function sandboxTools(): Promise<SandboxTools> {
  toolsPromise ??= findTools();
  return toolsPromise;
}

async function findTools(): Promise<SandboxTools> {
  const need = (name: string) => which(name) ?? name;
  const node = realpathSync(process.execPath);
  const zstd = which('zstd');
  const libs = new Set<string>();
  for (const binary of [node, zstd]) {
    if (!binary) continue;
    const { stdout } = await run('ldd', [binary]).catch(() => ({ stdout: '' }));
    for (const m of stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) libs.add(m[1]);
  }
  const libDirs = new Set<string>();
  const symlinks = new Map<string, string>();
  for (const lib of libs) {
    const dir = path.dirname(lib);
    const top = `/${dir.split('/')[1]}`;
    if (lstatSync(top, { throwIfNoEntry: false })?.isSymbolicLink()) symlinks.set(top, readlinkSync(top));
    libDirs.add(realpathSync(dir));
    libDirs.add(path.dirname(realpathSync(lib)));
  }
  const modules = path.join(PROJECT_ROOT, 'node_modules');
  return {
    sh: need('sh'),
    chrt: need('chrt'),
    nice: need('nice'),
    ionice: need('ionice'),
    prlimit: need('prlimit'),
    setpriv: need('setpriv'),
    bwrap: which('bwrap'),
    node,
    zstd,
    libDirs: [...libDirs].sort(),
    symlinks: [...symlinks].map(([at, target]) => ({ at, target })),
    nodeModules: existsSync(modules) ? realpathSync(modules) : null,
  };
}

/** The whole command line, from the settings and tools. Pure. */
export function sandboxCommand(settings: SandboxSettings, tools: SandboxTools, program: string[], procsFiles: string[], asRoot: boolean, seccompFd: number | null = null): string[] {
  const join = procsFiles.length > 0 ? [tools.sh, '-c', JOIN_SCRIPT, 'kiln-sandbox', ...procsFiles, '--'] : [];
  const priority = [tools.chrt, '--idle', '0', tools.nice, '-n', '19', tools.ionice, '-c', '3'];
  const limits = [
    tools.prlimit,
    `--cpu=${cpuSeconds(settings)}`,
    `--fsize=${settings.limits.maxDiskBytes}`,
    `--data=${settings.memoryBytes}`,
    `--nofile=${SANDBOX_OPEN_FILES}`,
    ...(asRoot ? [`--nproc=${NPROC_AS_NOBODY}`] : []),
    '--core=0',
    '--',
  ];
  const privs = [tools.setpriv, '--no-new-privs', ...(settings.mode === 'none' ? ['--pdeathsig', 'KILL'] : []), '--'];
  const node = [tools.node, `--max-old-space-size=${heapMiB(settings.memoryBytes)}`, ...program];
  if (settings.mode === 'none') return [...join, ...priority, ...limits, ...privs, ...node];
  return [...join, ...priority, ...limits, ...privs, ...bwrapArgs(tools, seccompFd), '--', ...node];
}

function bwrapArgs(tools: SandboxTools, seccompFd: number | null): string[] {
  const bind = (p: string) => ['--ro-bind', p, p];
  const args = [
    tools.bwrap ?? 'bwrap',
    '--unshare-user', '--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try',
    '--disable-userns',
    '--die-with-parent',
    '--new-session',
    '--clearenv',
    '--setenv', 'PATH', tools.zstd ? path.dirname(tools.zstd) : '/usr/bin',
    // The private /tmp first: binds made after it stay visible when the program lives under /tmp (a checkout there).
    '--proc', '/proc',
    '--dev', '/dev',
    '--size', String(TMP_BYTES), '--tmpfs', '/tmp',
    ...bind(tools.node),
    ...(tools.zstd ? bind(tools.zstd) : []),
    ...tools.libDirs.flatMap(bind),
    ...tools.symlinks.flatMap(({ target, at }) => ['--symlink', target, at]),
    ...bind(path.join(PROJECT_ROOT, 'package.json')),
    ...bind(path.join(PROJECT_ROOT, 'dist')),
    ...(tools.nodeModules ? ['--ro-bind', tools.nodeModules, path.join(PROJECT_ROOT, 'node_modules')] : []),
    // The root bwrap builds (a tmpfs holding the mount points) becomes read-only: only /tmp and the disk fd are writable.
    '--remount-ro', '/',
    '--chdir', '/',
    ...(seccompFd !== null ? ['--seccomp', String(seccompFd)] : []),
  ];
  return args;
}

export interface Sandboxed {
  child: ChildProcess;
  cgroups: BakeCgroups;
  /** Kills every process of the sandbox at once. */
  kill(): void;
  /** Stops every process of the sandbox (SIGSTOP) until `resume`; see src/jobs/bake-yield.ts. */
  pause(): void;
  resume(): void;
  /** Resolves when the process has exited and the cgroups are gone. */
  done: Promise<SandboxExit>;
}

export interface SandboxExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The memory cgroup's OOM killer ran. */
  oomKilled: boolean;
  /** The tail of stderr (for logs and for telling a V8 heap exhaustion; never shown to tenants). */
  stderr: string;
}

const STDERR_KEEP = 16 * 1024;

/**
 * Starts `program` (a script of this project and its numeric arguments) in
 * the sandbox. stdio: stdin and stdout pipes, stderr kept, and `extra` fds
 * from 3 on.
 */
export async function startSandboxed(settings: SandboxSettings, program: string[], extra: number[] = []): Promise<Sandboxed> {
  const tools = await sandboxTools();
  const asRoot = process.getuid?.() === 0;
  const cgroups = await createCgroups({
    memoryRoot: settings.cgroupMemoryRoot,
    pidsRoot: settings.cgroupPidsRoot,
    memoryBytes: settings.memoryBytes,
    maxTasks: SANDBOX_MAX_TASKS,
    uid: settings.uid,
    gid: settings.gid,
  });
  // bwrap reads the filter from a pipe after the `extra` fds (seccomp.ts).
  const filter = settings.mode === 'bwrap' ? seccompFilter() : null;
  const filterFd = filter ? 3 + extra.length : null;
  const [command, ...args] = sandboxCommand(settings, tools, program, cgroups.procsFiles, asRoot, filterFd);
  const stdio: StdioOptions = ['pipe', 'pipe', 'pipe', ...extra, ...(filter ? ['pipe' as const] : [])];
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      stdio,
      detached: true, // its own process group, killed as one
      env: settings.mode === 'none' ? { PATH: tools.zstd ? path.dirname(tools.zstd) : '/usr/bin' } : { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      cwd: '/',
      ...(settings.uid !== process.getuid?.() ? { uid: settings.uid, gid: settings.gid } : {}),
    });
  } catch (err) {
    await removeCgroups(cgroups);
    throw err;
  }
  if (filter && filterFd !== null) {
    const pipe = child.stdio[filterFd] as Writable;
    pipe.on('error', () => {}); // the chain died before bwrap read it; its exit says why
    pipe.end(filter);
  }
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
  });
  const kill = () => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    // bwrap's --new-session puts the sandboxed processes in a session of their own; they are in the cgroup.
    void cgroupPids(cgroups).then((pids) => {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    });
  };
  // Stops and continues go out one after the other, so a quick pause and resume cannot arrive reversed.
  let signalling = Promise.resolve();
  const signalAll = (signal: 'SIGSTOP' | 'SIGCONT') => {
    signalling = signalling.then(async () => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      const pids = new Set([...(await cgroupPids(cgroups)), ...(await descendantsOf(child.pid))]);
      for (const pid of [child.pid, ...pids]) {
        try {
          process.kill(pid, signal);
        } catch {
          // gone
        }
      }
    });
  };
  const done = new Promise<SandboxExit>((resolve, reject) => {
    child.once('error', (err) => {
      void removeCgroups(cgroups).finally(() => reject(err));
    });
    child.once('close', (code, signal) => {
      void (async () => {
        const oom = (await oomKills(cgroups)) > 0;
        await removeCgroups(cgroups);
        resolve({ code, signal, oomKilled: oom, stderr });
      })().catch(reject);
    });
  });
  return { child, cgroups, kill, pause: () => signalAll('SIGSTOP'), resume: () => signalAll('SIGCONT'), done };
}

/**
 * Every process below `pid`, from /proc/PID/task/TID/children: where there is
 * no cgroup, this is how the processes bwrap started in a session of their own are found.
 */
async function descendantsOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const tasks = await readdir(`/proc/${next}/task`).catch(() => [] as string[]);
    for (const tid of tasks) {
      const text = await readFile(`/proc/${next}/task/${tid}/children`, 'utf8').catch(() => '');
      for (const child of text.split(' ').filter(Boolean).map(Number)) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}
