// bench/soak: the long versions of the GC and crash tests, plus how the
// collector scales. Not a test in CI; it prints figures.
//
//   node --import tsx bench/soak.ts [--scale N] [--crash-rounds N] [--conc-workers N --conc-pushes N] [--fuzz-runs N] [--only scale,crash,conc,fuzz]
//
// scale   builds a store of N images in-process (config + 2 layers each, one
//         layer shared by 10 images, fsync off), untags 30 %, then times a dry
//         run and a sweep: duration, rows, bytes, and the longest event-loop
//         stall while it ran (the mark-and-delete transaction is synchronous).
// crash   test/gc-crash.test.ts with KILN_CRASH_ROUNDS (default 50).
// conc    test/gc-concurrency.test.ts with more workers and pushes.
// fuzz    src/oci/manifest-fuzz.test.ts with KILN_FUZZ_RUNS.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GarbageCollector } from '../src/gc/collector.js';
import { parseDigest } from '../src/oci/digest.js';
import { RegistryService } from '../src/registry/service.js';
import { DataDir } from '../src/store/data-dir.js';
import { FsBlobStore } from '../src/store/fs/blob-store.js';
import { openSqlite } from '../src/store/sqlite/db.js';
import { SqliteGcStore } from '../src/store/sqlite/gc-store.js';
import { SqliteMetadataStore } from '../src/store/sqlite/metadata-store.js';

const { values: opts } = parseArgs({
  options: {
    scale: { type: 'string', default: '20000' },
    'crash-rounds': { type: 'string', default: '50' },
    'conc-workers': { type: 'string', default: '16' },
    'conc-pushes': { type: 'string', default: '40' },
    'fuzz-runs': { type: 'string', default: '50000' },
    only: { type: 'string', default: 'scale,crash,conc,fuzz' },
  },
});
const only = new Set(opts.only.split(','));
const here = path.dirname(fileURLToPath(import.meta.url));
const fromSource = import.meta.url.endsWith('.ts');
const root = fromSource ? path.resolve(here, '..') : path.resolve(here, '..', '..');

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function scale(images: number): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-soak-scale-'));
  try {
    const dirs = new DataDir(dir);
    await dirs.ensure();
    const db = openSqlite(dirs.database);
    db.pragma('synchronous = OFF');
    const meta = new SqliteMetadataStore(db);
    const store = new SqliteGcStore(db);
    const blobs = new FsBlobStore(dirs, { durable: false });
    await blobs.init();
    const registry = new RegistryService(blobs, meta);
    const t0 = Date.now();
    const push = async (repo: string, b: Buffer) => {
      const id = await registry.startUpload(repo);
      await registry.finishUpload(repo, id, parseDigest(sha(b)), Readable.from([b]), b.length);
    };
    let shared = randomBytes(2048);
    for (let i = 0; i < images; i++) {
      const repo = `soak/r${i % 50}`;
      if (i % 10 === 0) shared = randomBytes(2048);
      const config = Buffer.from(JSON.stringify({ i, r: randomBytes(4).toString('hex') }));
      const layer = randomBytes(1024);
      for (const b of [config, layer, shared]) await push(repo, b);
      const doc = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.kiln.test.config.v1+json', digest: sha(config), size: config.length },
        layers: [layer, shared].map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(l), size: l.length })),
      };
      await registry.putManifest(repo, `t${i}`, Buffer.from(JSON.stringify(doc)), doc.mediaType);
      if (i % 10 < 3) await registry.deleteManifest(repo, `t${i}`);
      if (i % 2000 === 1999) process.stderr.write(`  scale: ${i + 1}/${images} images pushed\n`);
    }
    const fill = Date.now() - t0;
    const gc = new GarbageCollector({
      dirs,
      store,
      blobs,
      pins: registry.pins,
      config: { graceMs: 0, intervalMs: 0, cacheMaxAgeMs: null, keepGlobalCache: true, uploadTtlMs: 86_400_000 },
      online: true,
    });
    const rows = (db.prepare('SELECT (SELECT count(*) FROM manifests) AS m, (SELECT count(*) FROM blobs) AS b, (SELECT count(*) FROM repo_blobs) AS l').get() as { m: number; b: number; l: number });
    process.stdout.write(`\n## GC scale (${images} images pushed in ${(fill / 1000).toFixed(1)} s; ${rows.m} manifest rows, ${rows.b} blob rows, ${rows.l} repo links)\n\n`);
    process.stdout.write('| run | duration | longest event-loop stall | manifests | blobs | bytes |\n|---|---|---|---|---|---|\n');
    for (const dryRun of [true, false, false]) {
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      const r = await gc.run({ dryRun, trigger: 'cli' });
      h.disable();
      process.stdout.write(
        `| ${dryRun ? 'dry run' : 'sweep'} | ${r.durationMs} ms | ${(h.max / 1e6).toFixed(1)} ms | ${r.deleted.manifests} | ${r.deleted.blobs} | ${r.bytesFreed.total} |\n`,
      );
    }
    db.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function runTest(file: string, env: Record<string, string>): Promise<number> {
  const target = fromSource ? path.join(root, file) : path.join(root, 'dist', file.replace(/\.ts$/, '.js'));
  const args = fromSource ? ['--import', 'tsx', '--test', '--test-reporter=spec', target] : ['--test', '--test-reporter=spec', target];
  process.stdout.write(`\n## ${file} ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}\n\n`);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let all = '';
    child.stdout.on('data', (d: Buffer) => {
      all += d.toString();
      for (const line of d.toString().split('\n')) if (/^#|✔|✖|ℹ (pass|fail)/.test(line.trim())) process.stdout.write(`${line}\n`);
    });
    child.on('close', (code) => {
      // On failure, the whole report (assertion, values, stack) follows.
      if (code !== 0) process.stdout.write(`\n${all}\n`);
      process.stdout.write(`(${((Date.now() - started) / 1000).toFixed(0)} s, exit ${code})\n`);
      resolve(code ?? 1);
    });
  });
}

let failed = 0;
if (only.has('scale')) await scale(Number(opts.scale));
if (only.has('fuzz')) failed += (await runTest('src/oci/manifest-fuzz.test.ts', { KILN_FUZZ_RUNS: opts['fuzz-runs'] })) === 0 ? 0 : 1;
if (only.has('conc')) {
  failed += (await runTest('test/gc-concurrency.test.ts', { KILN_GC_CONC_WORKERS: opts['conc-workers'], KILN_GC_CONC_PUSHES: opts['conc-pushes'] })) === 0 ? 0 : 1;
}
if (only.has('crash')) failed += (await runTest('test/gc-crash.test.ts', { KILN_CRASH_ROUNDS: opts['crash-rounds'] })) === 0 ? 0 : 1;
process.exitCode = failed > 0 ? 1 : 0;
