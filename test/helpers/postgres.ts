// A throwaway PostgreSQL cluster for one test file: initdb into a temp dir,
// started with pg_ctl on a random loopback port (as the `postgres` user when
// the tests run as root, since PostgreSQL refuses to run as root), one fresh
// database per call of `database()`, stopped and removed by `stop()` (or at
// process exit, should the file crash).
import { spawn, spawnSync } from 'node:child_process';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface TestPostgres {
  /** Creates an empty database and answers its postgres:// URL. */
  database(name?: string): Promise<string>;
  stop(): Promise<void>;
}

/** Where Debian's postgresql package keeps initdb and pg_ctl (newest version first); null when it is not installed. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = spawnSync('ls', [root], { encoding: 'utf8' }).stdout.split('\n').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (existsSync(path.join(root, v, 'bin', 'pg_ctl'))) return path.join(root, v, 'bin');
  return null;
}

/** Why PostgreSQL tests cannot run here, or null when they can. */
export function postgresMissing(): string | null {
  return postgresBinDir() ? null : 'PostgreSQL is not installed (scripts/install-deps.sh test installs the postgresql package)';
}

function runAs(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const line = spawnSync('getent', ['passwd', 'postgres'], { encoding: 'utf8' }).stdout.trim();
  const [, , uid, gid] = line.split(':');
  if (!uid || !gid) throw new Error('tests run as root but there is no postgres user to run PostgreSQL as (install the postgresql package)');
  return { uid: Number(uid), gid: Number(gid) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[], user: { uid: number; gid: number } | null): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}), env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(cmd)} exited with ${code}: ${out}`))));
  });
}

let counter = 0;

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(postgresMissing()!);
  const user = runAs();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-pg-'));
  if (user) await chown(dir, user.uid, user.gid);
  const data = path.join(dir, 'data');
  await run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync'], user);
  const port = await freePort();
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    "-c listen_addresses='127.0.0.1'",
    '-c max_connections=300',
    // A test cluster: durability of PostgreSQL itself is not under test.
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
  ].join(' ');
  const pgCtl = path.join(bin, 'pg_ctl');
  try {
    await run(pgCtl, ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', '-o', options, 'start'], user);
  } catch (err) {
    const log = await readFile(path.join(dir, 'server.log'), 'utf8').catch(() => '');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  const base = `postgres://postgres@127.0.0.1:${port}`;
  // Should the test process end without stop(), the cluster goes with it.
  const onExit = () => {
    spawnSync(pgCtl, ['-D', data, '-m', 'immediate', 'stop'], { stdio: 'ignore', ...(user ?? {}) });
    spawnSync('rm', ['-rf', dir]);
  };
  process.once('exit', onExit);
  let stopped = false;
  return {
    async database(name) {
      const db = name ?? `kiln_${process.pid}_${++counter}`;
      const admin = new pg.Client({ connectionString: `${base}/postgres` });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${db}"`);
      } finally {
        await admin.end();
      }
      return `${base}/${db}`;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', onExit);
      await run(pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop'], user).catch(() => run(pgCtl, ['-D', data, '-m', 'immediate', 'stop'], user));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
