// bench/registry: Kiln against CNCF distribution 2.8.2 (Debian's docker-registry)
// on this machine, in one run, interleaved (Kiln, distribution, …).
//
//   node --import tsx bench/registry.ts [--images small,debian] [--runs N] [--views users,bake-load,idle]
//        [--load-runs N] [--skip-load] [--bake-load-runs N] [--corpus DIR] [--self-check] [--store fs|s3]
//
// --store s3 puts both registries on one throwaway Ceph RGW (test/helpers/rgw.ts):
// Kiln with KILN_S3_*, distribution with its S3 driver (`regionendpoint`), each
// launch on a fresh bucket. With --database postgres too, Kiln runs as it does
// at scale: PostgreSQL (a fresh database per start) + S3.
//
// Three views, each its own table (see bench/README.md for the method):
// * users: as users run Kiln. Each round, on an empty registry, skopeo pushes
//   every image, then pulls every image, with no pause: Kiln bakes what it
//   receives while the later pushes and the pulls run. Paired ratio Kiln/distribution.
// * bake-load: Kiln alone, p99 of GET manifest (wrk, 16 connections) while a
//   bigblob bake runs, against the same server idle, paired per round.
// * idle: the earlier view. Each push into an empty registry with Kiln stopped
//   right after it; pulls and the request-rate load (HEAD blob with hey, GET
//   manifest with wrk, 64 connections) once Kiln has gone idle; peak RSS per push.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { bakeStatus, waitBaked } from './lib/bake-status.js';
import { hey, wrk, type LoadResult } from './lib/load.js';
import { makeWarmupLayout, pushBlobs, putManifest, readLayout, skopeoPull, skopeoPush, type Layout } from './lib/oci.js';
import { removeTree, runBench, scratchDir } from './lib/proc.js';
import { ownPeakRssMiB, peakRssMiB, resetPeakRss, waitIdle } from './lib/procfs.js';
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
    views: { type: 'string', default: 'users,bake-load,idle' },
    'bake-load-runs': { type: 'string', default: '3' },
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

const VIEWS = new Set(opts.views.split(',').filter(Boolean));
for (const v of VIEWS) if (!['users', 'bake-load', 'idle'].includes(v)) throw new Error(`--views: unknown view ${v} (use users, bake-load, idle)`);
const IMAGES = opts.images.split(',').filter(Boolean);
const RUNS = Number(opts.runs);
const LOAD_RUNS = Number(opts['load-runs']);
const BAKE_LOAD_RUNS = Number(opts['bake-load-runs']);
const LOAD = { connections: 64, seconds: 10 };
// The bake-load view: GET manifest at 16 connections, idle for IDLE_SECONDS, and for as long as the bake runs.
const BAKE_LOAD = { connections: 16, idleSeconds: 5, warmupSeconds: 2, maxSeconds: 600 };
const MANIFEST_ACCEPT = 'Accept: application/vnd.oci.image.manifest.v1+json';
// Issue 2's targets (idle view); issue 10's for the users and bake-load views.
const TIME_RATIO: Target = { op: '<=', limit: 0.9 };
const RATE_RATIO: Target = { op: '>=', limit: 1.2 };
const USERS_PUSH_RATIO: Target = { op: '<=', limit: 0.9 };
const USERS_PULL_RATIO: Target = { op: '<=', limit: 1.0 };
const BAKE_P99_RATIO: Target = { op: '<=', limit: 2.0 };
const RSS_LIMIT_MIB = 200;
const BIG_IMAGE = 'bigblob';
// The bake-load view's GET target (the idle view's load target too, when it is among --images).
const LOAD_IMAGE = 'debian';

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

const elapsed = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

/**
 * The users view. Each round, on an emptied registry (after the same warm-up
 * image as the idle view), skopeo pushes every image in turn, then pulls every
 * image in turn, all timed, with no waiting in between: Kiln starts baking each
 * image when its manifest arrives, so its bakes run during the later pushes and
 * the pulls, as they do for users. Kiln is stopped (its bakes with it) before
 * the other side's round, so no bake overlaps distribution's commands.
 * Rounds alternate the order (Kiln first, then distribution first, …), and
 * pairs are formed by round.
 */
async function usersSeries(sides: [Side, Side], layouts: Map<string, Layout>, warmup: string, root: string, kilnBakes: boolean) {
  const push = new Map<string, Series>([...layouts.keys()].map((n) => [n, series()]));
  const pull = new Map<string, Series>([...layouts.keys()].map((n) => [n, series()]));
  const pushAll = series();
  const pullAll = series();
  const rss = series();
  const ownRss = series();
  const readyAtEnd: number[] = [];
  for (let run = 0; run <= RUNS; run++) {
    const order = run % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) {
      const side = sides[i]!;
      const kiln = i === 0;
      const pulls = path.join(root, 'pulls');
      await removeTree(pulls);
      await mkdir(pulls);
      const server = await side.empty();
      await skopeoPush(warmup, server.host, 'cache/warmup');
      // A just-started Kiln also starts its bake workers (and checks their sandbox): a long-running one has done that.
      await waitIdle(server.pid, server.label, 60, true);
      resetPeakRss(server.pid);
      const t0 = process.hrtime.bigint();
      const took: string[] = [];
      for (const [name, layout] of layouts) {
        const r = await skopeoPush(layout.dir, server.host, `bench/${name}`);
        took.push(`push ${name} ${r.seconds.toFixed(3)}`);
        if (run > 0) push.get(name)![kiln ? 'kiln' : 'dist'].push(r.seconds);
      }
      const pushed = elapsed(t0);
      const t1 = process.hrtime.bigint();
      for (const name of layouts.keys()) {
        const r = await skopeoPull(server.host, `bench/${name}`, path.join(pulls, name));
        took.push(`pull ${name} ${r.seconds.toFixed(3)}`);
        if (run > 0) pull.get(name)![kiln ? 'kiln' : 'dist'].push(r.seconds);
      }
      const pulled = elapsed(t1);
      const peak = peakRssMiB(server.pid);
      const own = ownPeakRssMiB(server.pid);
      let ready: number | undefined;
      if (kiln && kilnBakes) {
        ready = 0;
        for (const layout of layouts.values()) if ((await bakeStatus(server.host, layout.manifest.digest)) === 'ready') ready++;
      }
      await side.release();
      progress(
        `users ${side.label} ${run === 0 ? '(warm-up) ' : ''}${took.join(', ')} s; peak RSS ${peak.toFixed(1)} MiB (server process alone ${own.toFixed(1)})` +
          (ready === undefined ? '' : `; ${ready}/${layouts.size} baked by the end of the pulls`),
      );
      if (run === 0) continue;
      (kiln ? pushAll.kiln : pushAll.dist).push(pushed);
      (kiln ? pullAll.kiln : pullAll.dist).push(pulled);
      (kiln ? rss.kiln : rss.dist).push(peak);
      (kiln ? ownRss.kiln : ownRss.dist).push(own);
      if (ready !== undefined) readyAtEnd.push(ready);
    }
  }
  return { push, pull, pushAll, pullAll, rss, ownRss, readyAtEnd };
}

interface BakeLoadRound {
  idle: LoadResult;
  bake: LoadResult;
  bakeSeconds: number;
}

/**
 * The bake-load view, Kiln alone. Each round starts Kiln on a new data dir,
 * pushes the GET target (debian) and waits for its bake, uploads bigblob's
 * blobs without its manifest (nothing to bake yet), and waits for Kiln to go
 * idle. After a 2 s untimed wrk run, it measures GET manifest at 16
 * connections twice: idle for 5 s, and from the bigblob manifest PUT until
 * bigblob is `ready` (wrk is stopped with SIGINT then). Odd rounds measure
 * idle first, even rounds the bake first (then wait for idle again).
 */
async function bakeLoadSeries(launch: Launcher, root: string, port: number, target: Layout, big: Layout): Promise<BakeLoadRound[]> {
  const rounds: BakeLoadRound[] = [];
  for (let round = 1; round <= BAKE_LOAD_RUNS; round++) {
    const server = await launch('kiln', path.join(root, `bake-load-${round}`), port);
    try {
      await pushBlobs(server.host, `bench/${LOAD_IMAGE}`, target);
      await putManifest(server.host, `bench/${LOAD_IMAGE}`, '1', target);
      await waitBaked(server.host, target.manifest.digest);
      await pushBlobs(server.host, `bench/${BIG_IMAGE}`, big);
      await waitIdle(server.pid, server.label);
      const url = `http://${server.host}/v2/bench/${LOAD_IMAGE}/manifests/1`;
      const get = { connections: BAKE_LOAD.connections, header: MANIFEST_ACCEPT };
      await wrk(url, { ...get, seconds: BAKE_LOAD.warmupSeconds });
      const idleRun = () => wrk(url, { ...get, seconds: BAKE_LOAD.idleSeconds });
      const bakeRun = async () => {
        await putManifest(server.host, `bench/${BIG_IMAGE}`, '1', big);
        const t0 = process.hrtime.bigint();
        const baked = waitBaked(server.host, big.manifest.digest).then(() => elapsed(t0));
        const load = await wrk(url, { ...get, seconds: BAKE_LOAD.maxSeconds, until: baked });
        return { load, bakeSeconds: await baked };
      };
      let idle: LoadResult;
      let bake: { load: LoadResult; bakeSeconds: number };
      if (round % 2 === 1) {
        idle = await idleRun();
        bake = await bakeRun();
      } else {
        bake = await bakeRun();
        await waitIdle(server.pid, server.label);
        idle = await idleRun();
      }
      progress(
        `bake-load round ${round}: idle p99 ${idle.p99Ms.toFixed(1)} ms (${idle.requestsPerSecond.toFixed(0)} req/s); ` +
          `during the bigblob bake p99 ${bake.load.p99Ms.toFixed(1)} ms (${bake.load.requestsPerSecond.toFixed(0)} req/s), bake ${bake.bakeSeconds.toFixed(3)} s` +
          (idle.failures + bake.load.failures ? `, ${idle.failures + bake.load.failures} FAILED` : ''),
      );
      rounds.push({ idle, bake: bake.load, bakeSeconds: bake.bakeSeconds });
    } finally {
      await server.stop();
      await removeTree(server.dataDir);
    }
  }
  return rounds;
}

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
  const ownRss = new Map<string, Series>();
  for (const [name, layout] of layouts) {
    const t = series();
    const m = series();
    const o = series();
    for (let run = 0; run <= RUNS; run++) {
      for (const [i, side] of sides.entries()) {
        const server = await side.empty();
        await skopeoPush(warmup, server.host, 'cache/warmup');
        // As in the users view: a just-started Kiln is still starting its bake workers.
        await waitIdle(server.pid, server.label, 60, true);
        resetPeakRss(server.pid);
        const { seconds } = await skopeoPush(layout.dir, server.host, `bench/${name}`);
        const peak = peakRssMiB(server.pid);
        const own = ownPeakRssMiB(server.pid);
        await side.release();
        progress(`push ${name} ${side.label} ${run === 0 ? '(warm-up) ' : ''}${seconds.toFixed(3)} s, peak RSS ${peak.toFixed(1)} MiB (server process alone ${own.toFixed(1)})`);
        if (run === 0) continue;
        (i === 0 ? t.kiln : t.dist).push(seconds);
        (i === 0 ? m.kiln : m.dist).push(peak);
        (i === 0 ? o.kiln : o.dist).push(own);
      }
    }
    times.set(name, t);
    rss.set(name, m);
    ownRss.set(name, o);
  }
  return { times, rss, ownRss };
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
  const readCorpus = async (name: string) => {
    const dir = path.join(opts.corpus, name);
    if (!existsSync(path.join(dir, 'index.json'))) throw new Error(`${dir} is not an OCI layout: run \`sudo ../shared/bench/make-corpus.sh ${opts.corpus}\` from the project root`);
    return readLayout(dir);
  };
  const layouts = new Map<string, Layout>();
  for (const name of IMAGES) layouts.set(name, await readCorpus(name));

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
  const where = onS3 ? ', both on S3 (one Ceph RGW, presigned redirects on)' : '';
  const tables: (() => void)[] = [];
  try {
    progress(`images ${IMAGES.join(', ')}; views ${[...VIEWS].join(', ')}; ${RUNS} runs + 1 warm-up each, interleaved ${kilnLabel} / distribution`);

    if (VIEWS.has('users')) {
      const loadAtStart = loadAverage();
      const u = await usersSeries(sides, layouts, warmup, root, !opts['self-check']);
      for (const side of sides) await side.stop();
      const at = new Date().toISOString();
      const loadAtEnd = loadAverage();
      tables.push(() => {
        console.log(`\nAs users run it: bakes on, every image pushed, then every image pulled, no waiting — Kiln vs distribution 2.8.2${where} — ${at}, ${RUNS} rounds + 1 warm-up, order alternating`);
        console.log(`Load average (1 min, 2 cores) at start ${loadAtStart}, at end ${loadAtEnd}.`);
        console.log('Figures: median (min–max). Ratio: median of the per-round ratios Kiln/distribution (min–max).\n');
        const rows: string[][] = [];
        for (const [name, t] of u.push) rows.push(row(`push ${name} (s)`, t, 3, USERS_PUSH_RATIO));
        rows.push(row(`push, all ${layouts.size} in turn (s)`, u.pushAll, 3, USERS_PUSH_RATIO));
        for (const [name, t] of u.pull) rows.push(row(`pull ${name} (s)`, t, 3, USERS_PULL_RATIO));
        rows.push(row(`pull, all ${layouts.size} in turn (s)`, u.pullAll, 3, USERS_PULL_RATIO));
        rows.push(row('peak RSS over the round, process tree (MiB)', u.rss, 1));
        rows.push(row('the same, server process alone (MiB)', u.ownRss, 1));
        printTable(['figure', kilnLabel, 'distribution', 'ratio', 'target'], rows);
        if (u.readyAtEnd.length > 0) console.log(`\nImages Kiln had baked when its last pull ended, per round: ${u.readyAtEnd.map((n) => `${n}/${layouts.size}`).join(', ')}.`);
      });
    }

    if (VIEWS.has('bake-load') && opts['self-check']) progress('bake-load: skipped in --self-check (distribution does not bake)');
    else if (VIEWS.has('bake-load')) {
      const loadAtStart = loadAverage();
      const target = layouts.get(LOAD_IMAGE) ?? (await readCorpus(LOAD_IMAGE));
      const big = layouts.get(BIG_IMAGE) ?? (await readCorpus(BIG_IMAGE));
      const rounds = await bakeLoadSeries(launchKiln, root, await freePort(), target, big);
      const at = new Date().toISOString();
      const loadAtEnd = loadAverage();
      tables.push(() => {
        console.log(`\nGET manifest (wrk, ${BAKE_LOAD.connections} connections) on ${kilnLabel}${where}: idle against during a ${BIG_IMAGE} bake — ${at}, ${BAKE_LOAD_RUNS} rounds, each on a new data dir`);
        console.log(`Load average (1 min, 2 cores) at start ${loadAtStart}, at end ${loadAtEnd}.`);
        console.log(`Figures: median (min–max). Idle: ${BAKE_LOAD.idleSeconds} s; during: from the manifest PUT until \`ready\`. Ratio: median of the per-round ratios during/idle.\n`);
        const pick = (f: (x: LoadResult) => number): Series => ({ kiln: rounds.map((r) => f(r.bake)), dist: rounds.map((r) => f(r.idle)) });
        const rows = [
          row('GET manifest p99 (ms)', pick((x) => x.p99Ms), 1, BAKE_P99_RATIO),
          row('GET manifest req/s', pick((x) => x.requestsPerSecond), 0),
        ];
        const failed = pick((x) => x.failures);
        if ([...failed.kiln, ...failed.dist].some((n) => n > 0)) rows.push(row('failed requests', failed, 0));
        rows.push([`${BIG_IMAGE} bake under that load, PUT→ready (s)`, format(summarize(rounds.map((r) => r.bakeSeconds)), 3), '', '', '']);
        printTable(['figure', `during the ${BIG_IMAGE} bake`, 'idle', 'ratio', 'target'], rows);
      });
    }

    if (VIEWS.has('idle')) {
      const loadAtStart = loadAverage();
      const push = await pushSeries(sides, layouts, warmup);
      const servers: [Server, Server] = [await sides[0].empty(), await sides[1].empty()];
      const floor = await startStaticFloor(path.join(root, 'floor'), await freePort(), [...layouts].map(([name, layout]) => ({ name, layout })));
      if (!floor) progress('nginx is not installed: pulls are measured without the static floor');
      const pull = await pullSeries(servers, floor, layouts, root).finally(() => floor?.stop());
      const loadTarget = layouts.get(LOAD_IMAGE) ? LOAD_IMAGE : IMAGES[0]!;
      const load = opts['skip-load'] ? undefined : await loadSeries(servers, { name: loadTarget, layer: layouts.get(loadTarget)!.blobs[1]!.digest });
      const at = new Date().toISOString();
      const loadAtEnd = loadAverage();
      tables.push(() => {
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
        // Kiln is several processes now (the API and its bake workers); the tree's sum above, the API alone here.
        const own = push.ownRss.get(BIG_IMAGE);
        if (own) {
          const r = row(`peak RSS, push ${BIG_IMAGE}, server process alone (MiB)`, own, 1);
          r[4] = `Kiln max ≤ ${RSS_LIMIT_MIB} MiB ${Math.max(...own.kiln) <= RSS_LIMIT_MIB ? 'met' : 'MISSED'}`;
          rows.push(r);
        }
        console.log(`\nIdle view: each push into an empty registry, Kiln stopped right after it; pulls and load once Kiln is idle — Kiln vs distribution 2.8.2${where} — ${at}, ${RUNS} push/pull runs, ${load ? `${LOAD_RUNS} load rounds of ${LOAD.seconds} s at ${LOAD.connections} connections on ${loadTarget}` : 'load skipped'}`);
        console.log(`Load average (1 min, 2 cores) at start ${loadAtStart}, at end ${loadAtEnd}.`);
        console.log('Figures: median (min–max). Ratio: median of the per-pair ratios Kiln/distribution (min–max).\n');
        printTable(['figure', kilnLabel, 'distribution', 'ratio', 'target'], rows);
        if (floor) {
          // The cheapest possible server against distribution, pulled in the same rounds: no registry's pull ratio can go below this.
          console.log('\nFloor: the same skopeo pulls from nginx serving the corpus as static files (sendfile, nothing computed).\n');
          const floorRows = [...pull].map(([name, { pulls, floor: times }]) => [`pull ${name} (s)`, format(summarize(times), 3), format(summarize(pulls.dist), 3), format(pairedRatio(times, pulls.dist), 2)]);
          printTable(['figure', 'static nginx', 'distribution', 'lowest ratio possible'], floorRows);
        }
      });
    }
    for (const print of tables) print();
  } finally {
    for (const side of sides) await side.stop();
    await cluster?.stop();
    await onS3?.stop();
  }
});
