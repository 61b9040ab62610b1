// A private Docker daemon for tests: its own data and exec roots, socket and
// client config under `work`, no iptables, no bridge, vfs storage. It also
// runs its own containerd, whose socket `ctr` can use.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestDocker {
  /** Environment for the `docker` CLI: DOCKER_HOST and a private DOCKER_CONFIG. */
  env: NodeJS.ProcessEnv;
  /** The daemon's containerd socket, for `ctr -a`. */
  containerdSocket: string;
  stop(): Promise<void>;
}

/** Whether dockerd can be tried here; the reason when not. */
export async function dockerUnavailable(): Promise<string | null> {
  for (const tool of ['dockerd', 'docker']) {
    try {
      await run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      return `${tool} is not installed (scripts/install-deps.sh test installs docker.io)`;
    }
  }
  if (process.getuid?.() !== 0) return 'dockerd needs root';
  return null;
}

export async function startDocker(work: string): Promise<TestDocker> {
  const root = path.join(work, 'docker');
  const socket = path.join(root, 'docker.sock');
  const execRoot = path.join(root, 'exec');
  await mkdir(path.join(root, 'config'), { recursive: true });
  const proc: ChildProcess = spawn(
    'dockerd',
    [
      '--data-root', path.join(root, 'data'),
      '--exec-root', execRoot,
      '--pidfile', path.join(root, 'docker.pid'),
      '-H', `unix://${socket}`,
      '--iptables=false', '--ip6tables=false', '--bridge=none', '--storage-driver=vfs',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(root, 'config') };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`dockerd exited early: ${log}`);
    try {
      await run('docker', ['version', '--format', '{{.Server.Version}}'], { env, timeout: 10_000 });
      break;
    } catch {
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`dockerd did not answer within 60 s: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const containerdSocket = path.join(execRoot, 'containerd', 'containerd.sock');
  if (!existsSync(containerdSocket)) throw new Error(`dockerd runs no containerd at ${containerdSocket}`);
  return {
    env,
    containerdSocket,
    async stop() {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
