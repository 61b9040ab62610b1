// bench/registry: Kiln against CNCF distribution 2.8.2 (Debian's docker-registry)
// on this machine, in one run, interleaved (Kiln, distribution, Kiln, …).
//
//   node --import tsx bench/registry.ts [--images small,debian] [--runs N]
//        [--load-runs N] [--skip-load] [--corpus DIR] [--self-check] [--store fs|s3]
//
// --store s3 puts both registries on one throwaway Ceph RGW (test/helpers/rgw.ts):
// Kiln with KILN_S3_*, distribution with its S3 driver (`regionendpoint`), each
// launch on a fresh bucket. With --database postgres too, Kiln runs as it does
// at scale: PostgreSQL (a fresh database per start) + S3.
//
// Prints, for both registries and as the paired ratio Kiln/distribution:
// skopeo push and pull time per corpus image, requests/s and p99 of HEAD blob
// (hey) and GET manifest (wrk) at 64 connections, and peak RSS during pushes.
// See bench/README.md for the method and how to read it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hey, wrk, type LoadResult } from './lib/load.js';
import { makeWarmupLayout, readLayout, skopeoPull, skopeoPush, type Layout } from './lib/oci.js';
import { removeTree, runBench, scratchDir } from './lib/proc.js';
import { peakRssMiB, resetPeakRss, waitIdle } from './lib/procfs.js';
import { startBenchS3, type BenchS3 } from './lib/s3.js';
import { startPostgres, type TestPostgres } from '../test/helpers/postgres.js';
import { distributionStorage, freePort, kilnIsBuilt, kilnOnPostgres, startDistribution, startKiln, startStaticFloor, type Launcher, type Server } from './lib/servers.js';
import { format, loadAverage, pairedRatio, printTable, progress, summarize, verdict, type Target } from './lib/stats.js';

const { values: opts } = parseArgs({
  options: {
    images: { type: 'string', default: 'small,debian,debian-app,bigblob' },
    runs: { type: 'string', default: '5' },
    'load-runs': { type: 'string', default: '5' },
    'skip-load': { type: 'boolean', default: false },
    corpus: { type: 'string', default: '/tmp/corpus' },
    // Runs a second docker-registry in Kiln's place, restarted the way Kiln is.
    // Checks the harness and shows the noise floor: every ratio should be ≈ 1.
    'self-check': { type: 'boolean', default: false },
    // sqlite (the embedded default) or postgres: Kiln on a throwaway PostgreSQL cluster, a fresh database per start.
    database: { type: 'string', default: 'sqlite' },
    store: { type: 'string', default: 'fs' },
  },
});
if (!['sqlite', 'postgres'].includes(opts.database)) throw new Error(`--database must be sqlite or postgres, not ${opts.database}`);
if (opts.store !== 'fs' && opts.store !== 's3') throw new Error(`--store ${opts.store}: use fs or s3`);

const IMAGES = opts.images.split(',').filter(Boolean);
const RUNS = Number(opts.runs);
const LOAD_RUNS = Number(opts['load-runs']);
const LOAD = { connections: 64, seconds: 10 };
const MANIFEST_ACCEPT = 'Accept: application/vnd.oci.image.manifest.v1+json';
const TIME_RATIO: Target = { op: '<=', limit: 0.9 };
const RATE_RATIO: Target = { op: '>=', limit: 1.2 };
const RSS_LIMIT_MIB = 200;
const BIG_IMAGE = 'bigblob';

/**
 * One of the two registries, and how it is emptied before each push run.
 *
 * distribution is emptied the way BASELINES did it: its storage directory is
 * deleted under the running process (it keeps no state in memory without a
 * cache). Kiln keeps state in SQLite, so it is stopped and started again on a
 * new, empty data directory instead. A fresh repository name on a running
 * Kiln would not give an empty registry: its blob store is shared by all
 * repositories, and skopeo remembers where it pushed a blob before and asks
 * for a cross-repository mount, so layers might never be uploaded.
 */
class Side {
  server: Server | undefined;
  private generation = 0;

  constructor(
    readonly label: string,
    private readonly root: string,
    private readonly port: number,
    private readonly launch: Launcher,
    private readonly emptyBy: 'restart' | 'wipe',
  ) {}

  async empty(): Promise<Server> {
    if (this.server && this.emptyBy === 'wipe') {
      await removeTree(distributionStorage(this.server.dataDir));
      return this.server;
    }
    await this.stop();
    const dataDir = path.join(this.root, `${this.label.split(' ')[0]}-${this.generation++}`);
    this.server = await this.launch(this.label, dataDir, this.port);
    return this.server;
  }

  /**
   * Done with this server for now. A restarted Kiln is stopped at once: it
   * would otherwise bake the image it just received while the other side's
   * push is being timed.
   */
  async release(): Promise<void> {
    if (this.emptyBy === 'restart') await this.stop();
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    await this.server.stop();
    await removeTree(this.server.dataDir);
    this.server = undefined;
  }
}

interface Series {
  kiln: number[];
  dist: number[];
}
const series = (): Series => ({ kiln: [], dist: [] });

/**
 * Time skopeo pushes of every image into emptied registries, interleaved.
 * Before each timed push, the emptied registry receives a small throw-away
 * image (warmup) so that a just-restarted Kiln is not measured with a cold
 * JIT; distribution gets the same warm-up so both sides do the same work. The
 * warm-up goes to `cache/warmup`, a build-cache location Kiln never bakes, so
 * no background bake runs during the timed push.
 */
async function pushSeries(sides: [Side, Side], layouts: Map<string, Layout>, warmup: string) {
  const times = new Map<string, Series>();
  const rss = new Map<string, Series>();
  for (const [name, layout] of layouts) {
    const t = series();
    const m = series();
    for (let run = 0; run <= RUNS; run++) {
      for (const [i, side] of sides.entries()) {
        const server = await side.empty();
        await skopeoPush(warmup, server.host, 'cache/warmup');
        resetPeakRss(server.pid);
        const { seconds } = await skopeoPush(layout.dir, server.host, `bench/${name}`);
        const peak = peakRssMiB(server.pid);
        await side.release();
        progress(`push ${name} ${side.label} ${run === 0 ? '(warm-up) ' : ''}${seconds.toFixed(3)} s, peak RSS ${peak.toFixed(1)} MiB`);
        if (run === 0) continue;
        (i === 0 ? t.kiln : t.dist).push(seconds);
        (i === 0 ? m.kiln : m.dist).push(peak);
      }
    }
    times.set(name, t);
    rss.set(name, m);
  }
  return { times, rss };
}

/**
 * Push every image once (untimed), then time pulls into an emptied directory,
 * interleaved. When nginx is installed, the same pull from a static copy of
 * the corpus (`startStaticFloor`) runs in each round too: the client's own
 * share of a pull, which no registry can remove.
 */
async function pullSeries(servers: [Server, Server], floor: Server | undefined, layouts: Map<string, Layout>, root: string) {
  const times = new Map<string, { pulls: Series; floor: number[] }>();
  for (const [name, layout] of layouts) {
    for (const server of servers) await skopeoPush(layout.dir, server.host, `bench/${name}`);
  }
  // Kiln bakes what it just received; pulls are measured once that is done.
  await waitIdle(servers[0].pid, servers[0].label);
  const everyServer = floor ? [...servers, floor] : servers;
  for (const name of layouts.keys()) {
    const t = series();
    const floorTimes: number[] = [];
    for (let run = 0; run <= RUNS; run++) {
      for (const [i, server] of everyServer.entries()) {
        const dest = path.join(root, `pull-${i}`);
        await removeTree(dest);
        const { seconds } = await skopeoPull(server.host, `bench/${name}`, dest);
        progress(`pull ${name} ${server.label} ${run === 0 ? '(warm-up) ' : ''}${seconds.toFixed(3)} s`);
        if (run > 0) [t.kiln, t.dist, floorTimes][i]!.push(seconds);
      }
    }
    times.set(name, { pulls: t, floor: floorTimes });
  }
  return times;
}

interface LoadTest {
  name: string;
  run(host: string, seconds: number): Promise<LoadResult>;
}

/** HEAD blob (hey) and GET manifest (wrk), 64 connections, 10 s each, interleaved per round. */
async function loadSeries(servers: [Server, Server], target: { name: string; layer: string }) {
  const tests: LoadTest[] = [
    {
      name: 'HEAD blob (hey)',
      run: (host, seconds) => hey(`http://${host}/v2/bench/${target.name}/blobs/${target.layer}`, { ...LOAD, seconds, method: 'HEAD' }),
    },
    {
      name: 'GET manifest (wrk)',
      run: (host, seconds) => wrk(`http://${host}/v2/bench/${target.name}/manifests/1`, { ...LOAD, seconds, header: MANIFEST_ACCEPT }),
    },
  ];
  const results = new Map<string, { kiln: LoadResult[]; dist: LoadResult[] }>(tests.map((t) => [t.name, { kiln: [], dist: [] }]));
  // One short untimed run each first: connection set-up, JIT, page cache.
  for (const test of tests) for (const server of servers) await test.run(server.host, 3);
  for (let round = 1; round <= LOAD_RUNS; round++) {
    for (const test of tests) {
      for (const [i, server] of servers.entries()) {
        const r = await test.run(server.host, LOAD.seconds);
        progress(`${test.name} ${server.label} round ${round}: ${r.requestsPerSecond.toFixed(0)} req/s, p99 ${r.p99Ms.toFixed(1)} ms${r.failures ? `, ${r.failures} FAILED` : ''}`);
        results.get(test.name)![i === 0 ? 'kiln' : 'dist'].push(r);
      }
    }
  }
  return results;
}

function row(figure: string, s: Series, digits: number, target?: Target): string[] {
  const ratio = pairedRatio(s.kiln, s.dist);
  return [figure, format(summarize(s.kiln), digits), format(summarize(s.dist), digits), format(ratio, 2), verdict(ratio.median, target)];
}

runBench(async () => {
  if (!opts['self-check'] && !kilnIsBuilt()) throw new Error('Kiln is not built: run `npx tsc -p .` (or use --self-check to test the harness)');
  const layouts = new Map<string, Layout>();
  for (const name of IMAGES) {
    const dir = path.join(opts.corpus, name);
    if (!existsSync(path.join(dir, 'index.json'))) throw new Error(`${dir} is not an OCI layout: run \`sudo /work/shared/bench/make-corpus.sh ${opts.corpus}\``);
    layouts.set(name, await readLayout(dir));
  }

  const root = scratchDir('kiln-bench-registry');
  const warmup = await makeWarmupLayout(path.join(root, 'warmup'));
  const cluster: TestPostgres | undefined = opts.database === 'postgres' && !opts['self-check'] ? await startPostgres() : undefined;
  const onS3: BenchS3 | null =
    opts.store === 's3' ? await startBenchS3(cluster ? { kilnEnv: async () => ({ KILN_DATABASE_URL: await cluster.database() }) } : {}) : null;
  const kilnLabel = opts['self-check']
    ? 'kiln (self-check: distribution)'
    : opts.database === 'postgres'
      ? `kiln (postgres${onS3 ? ' + s3' : ''})`
      : 'kiln';
  const distribution = onS3 ? onS3.distribution : startDistribution;
  const launchKiln = opts['self-check'] ? distribution : onS3 ? onS3.kiln : cluster ? kilnOnPostgres(() => cluster.database()) : startKiln;
  const sides: [Side, Side] = [
    new Side(kilnLabel, root, await freePort(), launchKiln, 'restart'),
    // A bucket is emptied by starting on a new one.
    new Side('distribution', root, await freePort(), distribution, onS3 ? 'restart' : 'wipe'),
  ];
  const loadAtStart = loadAverage();
  try {
    progress(`images ${IMAGES.join(', ')}; ${RUNS} runs + 1 warm-up each, interleaved ${kilnLabel} / distribution`);
    const push = await pushSeries(sides, layouts, warmup);
    const servers: [Server, Server] = [await sides[0].empty(), await sides[1].empty()];
    const floor = await startStaticFloor(path.join(root, 'floor'), await freePort(), [...layouts].map(([name, layout]) => ({ name, layout })));
    if (!floor) progress('nginx is not installed: pulls are measured without the static floor');
    const pull = await pullSeries(servers, floor, layouts, root).finally(() => floor?.stop());
    const loadTarget = layouts.get('debian') ? 'debian' : IMAGES[0]!;
    const load = opts['skip-load'] ? undefined : await loadSeries(servers, { name: loadTarget, layer: layouts.get(loadTarget)!.blobs[1]!.digest });

    const rows: string[][] = [];
    for (const name of layouts.keys()) rows.push(row(`push ${name} (s)`, push.times.get(name)!, 3, TIME_RATIO));
    for (const name of layouts.keys()) rows.push(row(`pull ${name} (s)`, pull.get(name)!.pulls, 3, TIME_RATIO));
    for (const [test, r] of load ?? []) {
      const pick = (f: (x: LoadResult) => number): Series => ({ kiln: r.kiln.map(f), dist: r.dist.map(f) });
      rows.push(row(`${test} req/s`, pick((x) => x.requestsPerSecond), 0, RATE_RATIO));
      rows.push(row(`${test} p99 (ms)`, pick((x) => x.p99Ms), 1));
      const failed = pick((x) => x.failures);
      if ([...failed.kiln, ...failed.dist].some((n) => n > 0)) rows.push(row(`${test} failed requests`, failed, 0));
    }
    for (const [name, m] of push.rss) {
      const r = row(`peak RSS, push ${name} (MiB)`, m, 1);
      // The RSS target is absolute and holds for the worst run, not the median.
      if (name === BIG_IMAGE) r[4] = `Kiln max ≤ ${RSS_LIMIT_MIB} MiB ${Math.max(...m.kiln) <= RSS_LIMIT_MIB ? 'met' : 'MISSED'}`;
      rows.push(r);
    }
    console.log(`\nKiln vs distribution 2.8.2${onS3 ? ', both on S3 (one Ceph RGW, presigned redirects on)' : ''} — ${new Date().toISOString()}, ${RUNS} push/pull runs, ${load ? `${LOAD_RUNS} load rounds of ${LOAD.seconds} s at ${LOAD.connections} connections on ${loadTarget}` : 'load skipped'}`);
    console.log(`Load average (1 min, 2 cores) at start ${loadAtStart}, at end ${loadAverage()}.`);
    console.log('Figures: median (min–max). Ratio: median of the per-pair ratios Kiln/distribution (min–max).\n');
    printTable(['figure', kilnLabel, 'distribution', 'ratio', 'target'], rows);
    if (floor) {
      // The cheapest possible server against distribution, pulled in the same rounds: no registry's pull ratio can go below this.
      console.log('\nFloor: the same skopeo pulls from nginx serving the corpus as static files (sendfile, nothing computed).\n');
      const floorRows = [...pull].map(([name, { pulls, floor: times }]) => [`pull ${name} (s)`, format(summarize(times), 3), format(summarize(pulls.dist), 3), format(pairedRatio(times, pulls.dist), 2)]);
      printTable(['figure', 'static nginx', 'distribution', 'lowest ratio possible'], floorRows);
    }
  } finally {
    for (const side of sides) await side.stop();
    await cluster?.stop();
    await onS3?.stop();
  }
});
