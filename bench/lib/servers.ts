// Starting the two registries the benches compare, on loopback only.
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { blobPath, type Layout } from './oci.js';
import { spawnTracked, stopGroup } from './proc.js';
import { descendants, killSurvivors } from './procfs.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const KILN_BIN = path.join(REPO_ROOT, 'bin/kiln.js');
const KILN_COMPILED_MAIN = path.join(REPO_ROOT, 'dist/src/cli/main.js');

export interface Server {
  readonly label: string;
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly pid: number;
  readonly dataDir: string;
  stop(): Promise<void>;
}

export type Launcher = (label: string, dataDir: string, port: number) => Promise<Server>;

/** A port that was free a moment ago (the kernel picks it; we close and reuse it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Status of `GET /v2/`, or undefined while nothing listens. */
function pingV2(host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get(`http://${host}/v2/`, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.setTimeout(1000, () => req.destroy());
    req.once('error', () => resolve(undefined));
  });
}

/** Wait until `GET /v2/` answers 200 or 401 (a registry with auth is still ready), failing early if the child dies. */
async function waitForV2(host: string, child: ChildProcess, logTail: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server on ${host} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${logTail()}`);
    }
    const status = await pingV2(host);
    if (status === 200 || status === 401) return;
    await sleep(50);
  }
  throw new Error(`server on ${host} did not answer GET /v2/ within ${timeoutMs / 1000} s:\n${logTail()}`);
}

function server(label: string, host: string, child: ChildProcess, dataDir: string): Server {
  const pid = child.pid!;
  const stop = async () => {
    // Seen before the stop: once the server is gone, its orphans are no longer its descendants.
    const helpers = descendants(pid);
    await stopGroup(pid);
    killSurvivors(helpers);
  };
  return { label, host, pid, dataDir, stop };
}

/**
 * CNCF distribution as Debian packages it, configured as in BASELINES section A:
 * filesystem storage, deletes enabled, no blob descriptor cache, default logging
 * (to a file, so the log costs the same as in the anchor run).
 */
export const startDistribution: Launcher = async (label, dataDir, port) => {
  const host = `127.0.0.1:${port}`;
  await mkdir(dataDir, { recursive: true });
  const config = path.join(dataDir, 'config.yml');
  await writeFile(
    config,
    ['version: 0.1', 'storage:', '  filesystem:', `    rootdirectory: ${distributionStorage(dataDir)}`, '  delete:', '    enabled: true', 'http:', `  addr: ${host}`, ''].join('\n'),
  );
  const logFile = path.join(dataDir, 'registry.log');
  const log = openSync(logFile, 'a');
  const child = spawnTracked('docker-registry', ['serve', config], log, log);
  closeSync(log); // the child has its own copy
  return distributionServer(label, host, child, dataDir, () => readFileSync(logFile, 'utf8').slice(-2000));
};

/** A started docker-registry, once it answers `GET /v2/`. */
export async function distributionServer(label: string, host: string, child: ChildProcess, dataDir: string, logTail: () => string): Promise<Server> {
  await waitForV2(host, child, logTail);
  return server(label, host, child, dataDir);
}

/** Where distribution keeps its content; deleting this empties the registry (BASELINES wipes `data/docker`). */
export function distributionStorage(dataDir: string): string {
  return path.join(dataDir, 'data');
}

export function kilnIsBuilt(): boolean {
  return existsSync(KILN_COMPILED_MAIN);
}

/** `kiln serve`, ready when it prints its URL and answers `GET /v2/`. */
export const startKiln: Launcher = (label, dataDir, port) => launchKiln(label, dataDir, port, {});

/** `kiln serve` with extra environment (e.g. the KILN_S3_* settings). */
export const kilnLauncher =
  (env: Record<string, string>): Launcher =>
  (label, dataDir, port) =>
    launchKiln(label, dataDir, port, env);

/** `kiln serve` on PostgreSQL: each start gets a database of its own from `database`, as each start gets an empty data dir. */
export function kilnOnPostgres(database: () => Promise<string>): Launcher {
  return async (label, dataDir, port) => launchKiln(label, dataDir, port, { KILN_DATABASE_URL: await database() });
}

async function launchKiln(label: string, dataDir: string, port: number, env: Record<string, string>): Promise<Server> {
  if (!kilnIsBuilt()) throw new Error(`${KILN_COMPILED_MAIN} is missing: run \`cd ${REPO_ROOT} && npx tsc -p .\` first`);
  const host = `127.0.0.1:${port}`;
  const child = spawnTracked('node', [KILN_BIN, 'serve', '--listen', host, '--data-dir', dataDir, '--log-level', 'warn'], 'pipe', 'pipe', env);
  // Keep reading both pipes for the whole life of the server: a full pipe would block it.
  let output = '';
  let announced = false;
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8').on('data', (s: string) => {
      output = (output + s).slice(-4000);
      if (output.includes(`http://${host}`)) announced = true;
    });
  }
  const deadline = Date.now() + 30_000;
  while (!announced && Date.now() < deadline && child.exitCode === null) await sleep(20);
  if (!announced) {
    await stopGroup(child.pid!, 1000);
    throw new Error(`kiln serve did not print http://${host}:\n${output}`);
  }
  await waitForV2(host, child, () => output);
  return server(label, host, child, dataDir);
}

/**
 * The cheapest registry there can be, to show how fast a pull could possibly
 * go: nginx serving the corpus layouts read-only as static files (sendfile,
 * no logs, nothing computed), just enough of /v2 for `skopeo copy` to pull
 * `bench/NAME:1`. Whatever time a pull from it still takes is the client's.
 * Undefined when nginx is not installed.
 */
export async function startStaticFloor(dataDir: string, port: number, layouts: Iterable<{ name: string; layout: Layout }>): Promise<Server | undefined> {
  if (!existsSync(NGINX)) return undefined;
  const host = `127.0.0.1:${port}`;
  await mkdir(dataDir, { recursive: true });
  const locations = [...layouts].flatMap(({ name, layout }) => [
    `    location = /v2/bench/${name}/manifests/1 { default_type ${layout.manifest.mediaType}; alias ${blobPath(layout.dir, layout.manifest.digest)}; }`,
    `    location ~ "^/v2/bench/${name}/blobs/sha256:([0-9a-f]{64})$" { default_type application/octet-stream; alias ${layout.dir}/blobs/sha256/$1; }`,
  ]);
  const config = path.join(dataDir, 'nginx.conf');
  await writeFile(
    config,
    [
      // The benches run as root and the corpus is root's; nginx's default worker user could not read it.
      process.getuid?.() === 0 ? 'user root;' : '',
      'worker_processes 1;',
      'daemon off;',
      `pid ${path.join(dataDir, 'nginx.pid')};`,
      `error_log ${path.join(dataDir, 'error.log')};`,
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      '  sendfile on;',
      '  tcp_nopush on;',
      `  client_body_temp_path ${dataDir};`,
      '  server {',
      `    listen ${host};`,
      "    location = /v2/ { default_type application/json; return 200 '{}'; }",
      ...locations,
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const child = spawnTracked(NGINX, ['-c', config, '-p', dataDir], 'ignore', 'pipe');
  let output = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (output = (output + s).slice(-2000)));
  await waitForV2(host, child, () => output);
  return server('static floor (nginx)', host, child, dataDir);
}

const NGINX = '/usr/sbin/nginx';
