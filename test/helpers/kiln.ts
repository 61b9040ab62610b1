// Starts Kiln servers for tests: in-process for speed, or as a child process
// when a test must kill -9 it. Both listen on 127.0.0.1 with a random port and
// a private temp data dir, and are torn down by the caller's `close`/`stop`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createKiln, type Kiln, type KilnOptions } from '../../src/server/app.js';
import { loadConfig } from '../../src/server/config.js';
import { S3BlobStore } from '../../src/store/s3/s3-blob-store.js';
import { repoRoot } from './paths.js';
import { startPostgres, type TestPostgres } from './postgres.js';
import { startRgw, type Rgw } from './rgw.js';

export { repoRoot, sharedDir, buildkitFixtures } from './paths.js';

export async function tempDir(prefix = 'kiln-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * KILN_TEST_DATABASE=postgres runs every server of a test file on PostgreSQL:
 * one throwaway cluster per test process, one database per data directory
 * (a server restarted on the same directory finds its database again).
 */
export const onPostgres = process.env.KILN_TEST_DATABASE === 'postgres';
let cluster: Promise<TestPostgres> | null = null;
const databases = new Map<string, Promise<string>>();

/** The PostgreSQL database of a test data directory, or undefined on SQLite. */
export async function testDatabaseUrl(dataDir: string): Promise<string | undefined> {
  if (!onPostgres) return undefined;
  const key = path.resolve(dataDir);
  let url = databases.get(key);
  if (!url) {
    cluster ??= startPostgres();
    url = cluster.then((pg) => pg.database());
    databases.set(key, url);
  }
  return url;
}

/** The environment that points a server at the data directory's database (empty on SQLite). */
async function databaseEnv(dataDir: string, env: Record<string, string> | undefined): Promise<Record<string, string>> {
  if (env?.KILN_DATABASE_URL !== undefined) return {};
  const url = await testDatabaseUrl(dataDir);
  return url ? { KILN_DATABASE_URL: url } : {};
}

/**
 * KILN_TEST_STORE=s3 puts every server's bytes in S3: one throwaway Ceph RGW
 * per test process, one bucket per data directory (a server restarted on the
 * same directory finds its bucket again). Blob GETs stream through Kiln
 * (KILN_S3_REDIRECT=false) so that a suite sees Kiln's own answers (headers,
 * ranges, a lost object's 404); the redirect itself is tested with real
 * clients in s3-clients.test.ts. A test that passes its own KILN_S3_BUCKET
 * keeps it.
 */
export const onS3 = process.env.KILN_TEST_STORE === 's3';
let rgw: Promise<Rgw> | null = null;
const buckets = new Map<string, Promise<string>>();

/** The RGW and bucket of a test data directory, or undefined on the filesystem store. */
export async function testBucket(dataDir: string): Promise<{ rgw: Rgw; bucket: string } | undefined> {
  if (!onS3) return undefined;
  const key = path.resolve(dataDir);
  let bucket = buckets.get(key);
  if (!bucket) {
    rgw ??= startRgw().then((started) => {
      // The daemons die with this process (rgw.ts); their directory goes too.
      process.once('exit', () => spawnSync('rm', ['-rf', started.dir]));
      return started;
    });
    bucket = rgw.then((r) => r.createBucket());
    buckets.set(key, bucket);
  }
  return { rgw: await rgw!, bucket: await bucket };
}

/**
 * Stops the RGW of KILN_TEST_STORE=s3, if one was started. Its daemons are
 * children of the test process and would keep it alive: a file run on S3
 * calls this in a top-level `after`.
 */
export async function stopTestRgw(): Promise<void> {
  const started = rgw;
  rgw = null;
  buckets.clear();
  if (started) await (await started).stop();
}

/** The environment that points a server at the data directory's bucket (empty on the filesystem store). */
async function storeEnv(dataDir: string, env: Record<string, string> | undefined): Promise<Record<string, string>> {
  if (env?.KILN_S3_BUCKET !== undefined) return {};
  const s3 = await testBucket(dataDir);
  return s3 ? s3.rgw.kilnEnv(s3.bucket, { KILN_S3_REDIRECT: 'false' }) : {};
}

export interface TestKiln {
  url: string;
  /** `127.0.0.1:PORT`, as clients like skopeo name the registry. */
  host: string;
  kiln: Kiln;
  dataDir: string;
  close(): Promise<void>;
}

/** An in-process server; `env` overrides configuration variables, `ownerOfBuild` stands in for the builds module. */
export async function startKiln(
  options: { env?: Record<string, string>; dataDir?: string; ownerOfBuild?: KilnOptions['ownerOfBuild'] } = {},
): Promise<TestKiln> {
  const owned = !options.dataDir;
  const dataDir = options.dataDir ?? (await tempDir());
  const env = { ...(await databaseEnv(dataDir, options.env)), ...(await storeEnv(dataDir, options.env)), ...options.env };
  const config = loadConfig({ listen: '127.0.0.1:0', dataDir, logLevel: process.env.KILN_TEST_LOG ?? 'error' }, env);
  const kiln = await createKiln(config, { ownerOfBuild: options.ownerOfBuild });
  if (onPostgres && kiln.stores.backend !== 'postgres') throw new Error('KILN_TEST_DATABASE=postgres but the server opened SQLite');
  if (onS3 && !(kiln.stores.blobs instanceof S3BlobStore)) throw new Error('KILN_TEST_STORE=s3 but the server opened the filesystem blob store');
  const url = await kiln.listen();
  return {
    url,
    host: new URL(url).host,
    kiln,
    dataDir,
    async close() {
      await kiln.close();
      if (owned) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface SpawnedKiln {
  url: string;
  host: string;
  proc: ChildProcess;
  dataDir: string;
  /** Sends SIGKILL and waits for the process to be gone. */
  kill9(): Promise<void>;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Runs `kiln serve` as a child process: the compiled CLI (bin/kiln.js) when
 * the tests run from dist/, the TypeScript sources through tsx when they run
 * from source, so a child never runs stale code.
 */
export async function spawnKiln(dataDir: string, env: Record<string, string> = {}, options: { cwd?: string } = {}): Promise<SpawnedKiln> {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fromSource ? ['--import', import.meta.resolve('tsx'), path.join(repoRoot, 'src', 'cli', 'main.ts')] : [path.join(repoRoot, 'bin', 'kiln.js')];
  const database = { ...(await databaseEnv(dataDir, env)), ...(await storeEnv(dataDir, env)) };
  const proc = spawn(process.execPath, [...entry, 'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log-level', 'warn'], {
    env: { ...process.env, ...database, ...env },
    cwd: options.cwd ?? repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`kiln did not start in 20 s: ${stderr}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+) .*database (\w+)/.exec(out);
      if (m && onPostgres && !env.KILN_DATABASE_URL && m[2] !== 'postgres') reject(new Error(`KILN_TEST_DATABASE=postgres but the server opened ${m[2]}`));
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kiln exited with ${code} before listening: ${stderr}`));
    });
  });
  return {
    url,
    host: new URL(url).host,
    proc,
    dataDir,
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      proc.kill('SIGTERM');
      return exited;
    },
  };
}
