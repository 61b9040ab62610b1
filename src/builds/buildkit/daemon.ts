// One ephemeral buildkitd: started for one build in a directory of its own
// (an empty --root, its socket, its buildkitd.toml), stopped and wiped after.
//
// Stopping: the build's buildctl is gone by then (a disconnected client
// cancels its build, which kills the RUN container); the daemon gets SIGTERM,
// then SIGKILL after a grace period. Whatever it left behind is removed:
// processes of its containers (found through the cgroups BuildKit gives each
// container, named after the container's directory under the root), mounts
// under the root (deepest first, lazily), and the directory itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rm, writeFile, mkdir, chmod } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BuildError } from '../errors.js';
import { captureCommand, LineSplitter } from '../process.js';

export interface DaemonTools {
  buildkitd: string;
  buildctl: string;
}

export interface StartOptions {
  tools: DaemonTools;
  /** Private, empty directory for the daemon (0700); removed by stop(). */
  dir: string;
  /** buildkitd.toml text. */
  config: string;
  /** How long the daemon may take to answer (KILN_BUILDKIT_START_TIMEOUT_SECONDS). */
  startTimeoutMs: number;
  signal: AbortSignal;
  /** The daemon's own log lines (for the server log; they never reach a tenant). */
  onLog?: (line: string) => void;
}

export interface StopReport {
  /** Container processes that outlived the daemon and were killed. */
  killedProcesses: number;
  /** Mount points left under the root and unmounted. */
  unmounted: string[];
}

export interface RunningDaemon {
  /** `unix://…`, for buildctl --addr. */
  addr: string;
  root: string;
  pid: number;
  /** Stops the daemon and removes everything it made; safe to call twice. */
  stop(): Promise<StopReport>;
}

const STOP_GRACE_MS = 10_000;
// Unix socket paths are limited to 108 bytes including the terminator.
const MAX_SOCKET_PATH = 100;

export async function startEphemeralDaemon(options: StartOptions): Promise<RunningDaemon> {
  const { dir, tools } = options;
  const root = path.join(dir, 'root');
  const socket = path.join(dir, 'buildkitd.sock');
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new BuildError('build-failed', `the BuildKit socket path would be ${Buffer.byteLength(socket)} bytes, more than a Unix socket allows; use a data dir with a shorter path`);
  }
  await mkdir(root, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const configFile = path.join(dir, 'buildkitd.toml');
  await writeFile(configFile, options.config, { mode: 0o600 });
  const addr = `unix://${socket}`;

  const child = spawn(tools.buildkitd, ['--root', root, '--addr', addr, '--config', configFile], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    const splitter = new LineSplitter();
    stream.on('data', (chunk: Buffer) => {
      for (const line of splitter.push(chunk)) {
        tail.push(line);
        if (tail.length > 10) tail.shift();
        options.onLog?.(line);
      }
    });
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined);

  let stopped: Promise<StopReport> | null = null;
  const daemon: RunningDaemon = {
    addr,
    root,
    pid: child.pid ?? -1,
    stop: () => (stopped ??= stopDaemon(child, exited, dir, root)),
  };
  try {
    await waitUntilReady(tools.buildctl, addr, child, exited, options, tail);
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return daemon;
}

async function waitUntilReady(buildctl: string, addr: string, child: ChildProcess, exited: Promise<void>, options: StartOptions, tail: string[]): Promise<void> {
  const deadline = Date.now() + options.startTimeoutMs;
  let gone = false;
  void exited.then(() => (gone = true));
  for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
    options.signal.throwIfAborted();
    if (gone || child.exitCode !== null) {
      throw new BuildError('build-failed', `buildkitd exited before it was ready${tail.length ? `: ${tail.slice(-3).join(' | ')}` : ''}`);
    }
    const ready = await captureCommand(buildctl, ['--addr', addr, 'debug', 'workers'], 5_000).then(
      () => true,
      () => false,
    );
    if (ready) return;
    if (Date.now() > deadline) {
      throw new BuildError('build-failed', `buildkitd did not answer within ${Math.round(options.startTimeoutMs / 1000)} s (KILN_BUILDKIT_START_TIMEOUT_SECONDS)`);
    }
    await sleep(wait, undefined, { signal: options.signal }).catch(() => undefined);
  }
}

async function stopDaemon(child: ChildProcess, exited: Promise<void>, dir: string, root: string): Promise<StopReport> {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    signalGroup(child.pid, 'SIGTERM');
    const graceful = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS, false, { ref: false })]);
    if (!graceful) {
      signalGroup(child.pid, 'SIGKILL');
      await exited;
    }
  }
  const killedProcesses = await killContainerProcesses(root);
  const unmounted = await unmountUnder(root);
  await rm(dir, { recursive: true, force: true });
  return { killedProcesses, unmounted };
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

// BuildKit's runc executor names each container after its directory under
// <root>/runc-*/executor/ and puts it in the cgroup buildkit/<id>.
async function killContainerProcesses(root: string): Promise<number> {
  const ids: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory() || !entry.name.startsWith('runc-')) continue;
    for (const c of await readdir(path.join(root, entry.name, 'executor'), { withFileTypes: true }).catch(() => [])) {
      if (c.isDirectory() && /^[a-z0-9]+$/.test(c.name)) ids.push(c.name);
    }
  }
  let killed = 0;
  for (const id of ids) {
    for (const procs of [`/sys/fs/cgroup/pids/buildkit/${id}/cgroup.procs`, `/sys/fs/cgroup/buildkit/${id}/cgroup.procs`]) {
      const text = await readFile(procs, 'utf8').catch(() => '');
      for (const pid of text.split('\n').filter((l) => /^\d+$/.test(l))) {
        try {
          process.kill(Number(pid), 'SIGKILL');
          killed += 1;
        } catch {
          // exited meanwhile
        }
      }
    }
  }
  return killed;
}

/** Mount points at or under `root`, deepest first (`/proc/self/mountinfo` escapes spaces and the like as octal). */
export function mountsUnder(mountinfo: string, root: string): string[] {
  const points: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    if (point === root || point.startsWith(`${root}/`)) points.push(point);
  }
  return points.sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length);
}

async function unmountUnder(root: string): Promise<string[]> {
  const points = mountsUnder(await readFile('/proc/self/mountinfo', 'utf8'), root);
  const done: string[] = [];
  for (const point of points) {
    // The paths are BuildKit's own under our root; they go to umount as arguments, never as shell text.
    const ok = await captureCommand('umount', ['-l', point]).then(
      () => true,
      () => false,
    );
    if (ok) done.push(point);
  }
  return done;
}
