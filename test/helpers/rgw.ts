// A throwaway Ceph RADOS Gateway (a real S3 server) for tests and benches:
// one monitor, one OSD whose data lives in RAM (memstore), one radosgw, all on
// 127.0.0.1 with free ports, everything under a private temp dir that `stop`
// removes. Up in about 4 s. The settings and why each one is there follow the
// notes in ../shared/tools/s3/README.md.
//
// The daemons run in the foreground as children of this process, so their pids
// are ours to signal and an exiting test process takes them down with it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3StoreSettings } from '../../src/store/s3/s3-blob-store.js';

export const RGW_BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'];

/** Why an RGW cannot start here, or null when every binary is installed. */
export function rgwMissing(): string | null {
  const missing = RGW_BINARIES.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
  return missing.length === 0 ? null : `Ceph RGW not installed (missing ${missing.join(', ')}; scripts/install-deps.sh test installs ceph-mon ceph-osd radosgw)`;
}

export interface Rgw {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The cluster's directory (config, logs, OSD data). */
  dir: string;
  /** An S3 client for the test's own checks (same checksum settings as Kiln's). */
  client(): S3Client;
  /** Creates a fresh bucket and returns its name. */
  createBucket(prefix?: string): Promise<string>;
  /** Environment for a Kiln process storing in `bucket`. */
  kilnEnv(bucket: string, extra?: Record<string, string>): Record<string, string>;
  /** Runs radosgw-admin against this cluster (e.g. to suspend the user). */
  admin(args: string[]): string;
  /** PID of radosgw (tests stop it to make the store fail). */
  readonly rgwPid: number;
  /** Stops every daemon (radosgw first: it needs the OSD to shut down cleanly) and removes the directory. */
  stop(): Promise<void>;
}

/** Store settings for tests: 5 MiB parts (S3's minimum), so modest test data crosses part boundaries. */
export function s3Settings(bucket: string, overrides: Partial<S3StoreSettings> = {}): S3StoreSettings {
  return { bucket, prefix: 'kiln/', redirect: true, redirectTtlSeconds: 60, partBytes: 5 * 1024 * 1024, uploadMemoryBytes: 32 * 1024 * 1024, ...overrides };
}

const TIMEOUT_MS = 90_000;
const POOLS = ['.rgw.root', 'default.rgw.control', 'default.rgw.meta', 'default.rgw.log', 'default.rgw.buckets.index', 'default.rgw.buckets.data', 'default.rgw.buckets.non-ec'];

export async function startRgw(options: { memstoreBytes?: number } = {}): Promise<Rgw> {
  const missing = rgwMissing();
  if (missing) throw new Error(missing);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-rgw-'));
  const conf = path.join(dir, 'ceph.conf');
  const children: ChildProcess[] = [];
  const killAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', killAll);
  try {
    const [monPort, s3Port] = [await freePort(), await freePort()];
    const fsid = randomUUID();
    const osdUuid = randomUUID();
    const accessKeyId = randomBytes(10).toString('hex').toUpperCase();
    const secretAccessKey = randomBytes(20).toString('hex');
    for (const sub of ['mon/ceph-a', 'osd/ceph-0', 'run', 'log', 'rgw']) await mkdir(path.join(dir, sub), { recursive: true });
    await writeFile(conf, cephConf({ dir, fsid, monPort, s3Port, memstoreBytes: options.memstoreBytes ?? 8 * 1024 ** 3 }));

    run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, path.join(dir, 'monmap')], dir);
    run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap')], dir);
    children.push(daemon('ceph-mon', ['-c', conf, '-f', '-i', 'a'], dir, 'mon'));

    // Registering the OSD and creating all RGW pools in one CLI session: radosgw creating them one by one costs ~7 s.
    const commands = [`osd new ${osdUuid} 0`, ...POOLS.flatMap((p) => [`osd pool create ${p}`, `osd pool application enable ${p} rgw`])].join('\n');
    run('ceph', ['-c', conf, '--connect-timeout', '60'], dir, commands);

    run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid], dir);
    children.push(daemon('ceph-osd', ['-c', conf, '-f', '-i', '0'], dir, 'osd'));
    await waitUntil('osd.0 up', () => /^osd\.0 up/m.test(tryRun('ceph', ['-c', conf, 'osd', 'dump'], dir)), children);

    const rgw = daemon('radosgw', ['-c', conf, '-f', '-n', 'client.rgw.a'], dir, 'rgw');
    children.push(rgw);
    const endpoint = `http://127.0.0.1:${s3Port}`;
    await waitUntil('radosgw serving', async () => (await fetch(endpoint).catch(() => null))?.status === 200, children);

    const admin = (args: string[]) => run('radosgw-admin', ['-c', conf, ...args], dir);
    admin(['user', 'create', '--uid=test', '--display-name=test user', `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`]);

    const region = 'us-east-1';
    const client = () =>
      new S3Client({
        endpoint,
        region,
        forcePathStyle: true,
        credentials: { accessKeyId, secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
    let buckets = 0;
    return {
      endpoint,
      region,
      accessKeyId,
      secretAccessKey,
      dir,
      client,
      rgwPid: rgw.pid!,
      async createBucket(prefix = 'kiln-test') {
        const name = `${prefix}-${process.pid}-${++buckets}-${randomBytes(3).toString('hex')}`;
        const c = client();
        try {
          await c.send(new CreateBucketCommand({ Bucket: name }));
        } finally {
          c.destroy();
        }
        return name;
      },
      kilnEnv(bucket, extra = {}) {
        return {
          KILN_S3_BUCKET: bucket,
          KILN_S3_ENDPOINT: endpoint,
          KILN_S3_REGION: region,
          KILN_S3_FORCE_PATH_STYLE: 'true',
          AWS_ACCESS_KEY_ID: accessKeyId,
          AWS_SECRET_ACCESS_KEY: secretAccessKey,
          ...extra,
        };
      },
      admin,
      async stop() {
        process.removeListener('exit', killAll);
        await stopInOrder([rgw], 6_000);
        await stopInOrder(children.filter((c) => c !== rgw), 10_000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    const logs = tailLogs(dir);
    killAll();
    process.removeListener('exit', killAll);
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}

function cephConf(o: { dir: string; fsid: string; monPort: number; s3Port: number; memstoreBytes: number }): string {
  const d = o.dir;
  return `[global]
fsid = ${o.fsid}
mon_host = v2:127.0.0.1:${o.monPort}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_msgr1 = false
# no cephx keys in a throwaway cluster
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# radosgw defaults to 'secure', which auth=none cannot provide: it loops on -13 (EACCES) for 300 s
ms_mon_client_mode = crc secure
run_dir = ${d}/run
admin_socket = ${d}/run/$name.asok
pid_file = ${d}/run/$name.pid
log_file = ${d}/log/$name.log
crash_dir = ${d}/crash
# commit monitor changes every 50 ms instead of every second: pool creation and the first PUT are ~10x faster
paxos_propose_interval = 0.05
# one OSD on one host
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000

[mon]
mon_data = ${d}/mon/$cluster-$id

[osd]
osd_data = ${d}/osd/$cluster-$id
# data in RAM, lost on stop: nothing to clean up on disk
osd_objectstore = memstore
memstore_device_bytes = ${o.memstoreBytes}
# exit on SIGTERM at once instead of waiting up to 5 s for the monitor to acknowledge
osd_fast_shutdown_notify_mon = false

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:${o.s3Port}
rgw_data = ${d}/rgw
# memstore frees deleted objects only after RGW's garbage collection: run it often
rgw_gc_obj_min_wait = 10
rgw_gc_processor_period = 10
# give up on in-flight work 5 s after SIGTERM (default 120 s)
rgw_exit_timeout_secs = 5
`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}

/** Runs a setup command to completion; throws with its output when it fails. */
function run(cmd: string, args: string[], dir: string, input?: string): string {
  const r = spawnSync(cmd, args, { cwd: dir, input, encoding: 'utf8', timeout: TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || r.stdout).slice(-2000)}`);
  return r.stdout;
}

function tryRun(cmd: string, args: string[], dir: string): string {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout : '';
}

function daemon(cmd: string, args: string[], dir: string, name: string): ChildProcess {
  const out = createWriteStream(path.join(dir, 'log', `${name}.out`));
  const child = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  return child;
}

async function waitUntil(what: string, ready: () => boolean | Promise<boolean>, children: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const dead = children.find((c) => c.exitCode !== null || c.signalCode !== null);
    if (dead) throw new Error(`${dead.spawnfile} exited (${dead.exitCode ?? dead.signalCode}) while waiting for ${what}`);
    if (await ready()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when every process has exited. */
async function stopInOrder(procs: ChildProcess[], graceMs: number): Promise<void> {
  const live = procs.filter((c) => c.exitCode === null && c.signalCode === null);
  const exited = live.map((c) => new Promise<void>((resolve) => c.once('exit', () => resolve())));
  for (const c of live) c.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }, graceMs);
  await Promise.all(exited);
  clearTimeout(timer);
}

function tailLogs(dir: string): string {
  const lines: string[] = [];
  for (const name of ['mon.a.log', 'osd.0.log', 'client.rgw.a.log', 'mon.out', 'osd.out', 'rgw.out']) {
    const file = path.join(dir, 'log', name);
    if (!existsSync(file)) continue;
    lines.push(`--- ${name}`, ...readFileSync(file, 'utf8').trimEnd().split('\n').slice(-15));
  }
  return lines.join('\n');
}
