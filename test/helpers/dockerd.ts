// A private Docker daemon for tests: its own data and exec roots and socket
// under a temp dir, no iptables, no bridge, vfs storage; the client reads no
// host configuration (DOCKER_CONFIG points into the temp dir). Docker treats
// registries on 127.0.0.0/8 as insecure, so it talks plain HTTP to Kiln on
// loopback without extra flags.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export function dockerMissing(): string | null {
  for (const bin of ['dockerd', 'docker', 'containerd']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed (scripts/install-deps.sh test installs docker.io)`;
  }
  return null;
}

export interface Dockerd {
  /** Runs the docker CLI against this daemon; rejects with its output on failure. */
  docker(args: string[], options?: { timeoutMs?: number }): Promise<string>;
  stop(): Promise<void>;
}

export async function startDockerd(): Promise<Dockerd> {
  // Short: unix socket paths under it must stay below 108 bytes.
  const dir = await mkdtemp('/tmp/kiln-dockerd-');
  const sock = path.join(dir, 'docker.sock');
  await mkdir(path.join(dir, 'config'));
  await writeFile(path.join(dir, 'daemon.json'), '{}');
  const log = createWriteStream(path.join(dir, 'dockerd.log'));
  const daemon = spawn(
    'dockerd',
    [
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '--storage-driver=vfs',
      '--data-root', path.join(dir, 'data'),
      '--exec-root', path.join(dir, 'exec'),
      '--pidfile', path.join(dir, 'docker.pid'),
      '--config-file', path.join(dir, 'daemon.json'),
      '-H', `unix://${sock}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  daemon.stdout!.pipe(log);
  daemon.stderr!.pipe(log);
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
  const killOnExit = () => daemon.kill('SIGKILL');
  process.once('exit', killOnExit);
  const env = { PATH: process.env.PATH, HOME: dir, DOCKER_CONFIG: path.join(dir, 'config') };
  const docker = async (args: string[], options: { timeoutMs?: number } = {}) => {
    try {
      const { stdout } = await run('docker', ['-H', `unix://${sock}`, ...args], { env, timeout: options.timeoutMs ?? 180_000, maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`docker ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
    }
  };
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      const timer = setTimeout(() => daemon.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (daemon.exitCode !== null) {
      await stop();
      throw new Error(`dockerd exited with ${daemon.exitCode} while starting`);
    }
    if (await docker(['version'], { timeoutMs: 5_000 }).then(() => true, () => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error('dockerd did not answer within 60 s');
    }
    await sleep(200);
  }
  return { docker, stop };
}
