// What the bake sandbox costs, and what its lower priority gives the API.
//
//   node --import tsx bench/bake-sandbox.ts /tmp/corpus [--images small,debian-app] [--runs 5] [--work /tmp/bench-sandbox]
//   node --import tsx bench/bake-sandbox.ts --priority [--seconds 4]
//
// Bakes: bakeImage() in this process (the anchor) and sandboxedBake() with
// KILN_BAKE_SANDBOX=bwrap and =none, interleaved after one warm-up round; the
// ratio is the median of per-round ratios sandboxed / in-process. Wall time
// under load says little (the sandbox runs as SCHED_IDLE, so any other work
// on the machine comes first); CPU time does not depend on priority: this
// process's own, plus its reaped children's (utime+stime of the whole
// sandbox, from /proc/self/stat).
//
// --priority: on one pinned CPU, a CPU-bound loop stands in for the API
// (nice 0) beside a second loop at normal priority, nice 19, SCHED_IDLE, the
// sandbox's chain (chrt --idle 0, nice 19, ionice -c 3), the chain in a new
// session, and a loop started by the real launcher (as root: in the bake's
// cgroups); the figure is the API's share of the CPU time the two got over
// the window (from /proc/PID/stat), which other load on the machine barely
// moves (0.5: no priority; 1: all of it).
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { bakeImage, type BakeInput } from '../src/convert/bake.js';
import { layoutBlobOpener } from '../src/convert/testing.js';
import { loadSandboxSettings, sandboxedBake } from '../src/jobs/sandbox/index.js';
import { cgroupPids } from '../src/jobs/sandbox/cgroup.js';
import { startSandboxed } from '../src/jobs/sandbox/launcher.js';
import { parseManifest } from '../src/oci/manifest.js';
import { format, loadAverage, pairedRatio, printTable, progress, summarize } from './lib/stats.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    images: { type: 'string', default: 'small,debian-app' },
    runs: { type: 'string', default: '5' },
    work: { type: 'string', default: '/tmp/bench-sandbox' },
    priority: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '4' },
    cpu: { type: 'string', default: '1' },
  },
});

async function bakes(): Promise<void> {
  const corpus = positionals[0];
  if (!corpus) {
    console.error('usage: node --import tsx bench/bake-sandbox.ts CORPUS_DIR [--images a,b] [--runs N] | --priority');
    process.exit(2);
  }
  const runs = Number(values.runs);
  const work = path.resolve(values.work);
  await mkdir(work, { recursive: true });
  const start = loadAverage();
  const rows: string[][] = [];
  try {
    for (const name of values.images.split(',')) {
      const dir = path.join(corpus, name);
      const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string }> };
      const blob = (digest: string) => path.join(dir, 'blobs', ...digest.split(':'));
      const manifest = parseManifest(await readFile(blob(index.manifests[0].digest)), index.manifests[0].mediaType);
      if (manifest.kind !== 'image') throw new Error(`${name} is an index`);
      const configBytes = await readFile(blob(manifest.config.digest));
      const input = async (): Promise<BakeInput> => {
        const job = await mkdtemp(path.join(work, 'job-'));
        return { manifest, configBytes, openBlob: layoutBlobOpener(dir), workDir: path.join(job, 'work'), outputDir: path.join(job, 'out') };
      };
      const kinds = {
        direct: async () => bakeImage(await input()),
        bwrap: async () => sandboxedBake(await input(), loadSandboxSettings({ ...process.env, KILN_BAKE_SANDBOX: 'bwrap' })),
        none: async () => sandboxedBake(await input(), loadSandboxSettings({ ...process.env, KILN_BAKE_SANDBOX: 'none' })),
      };
      const times: Record<keyof typeof kinds, number[]> = { direct: [], bwrap: [], none: [] };
      const cpu: Record<keyof typeof kinds, number[]> = { direct: [], bwrap: [], none: [] };
      for (let round = 0; round <= runs; round++) {
        for (const kind of Object.keys(kinds) as Array<keyof typeof kinds>) {
          const c0 = await cpuSeconds();
          const t0 = process.hrtime.bigint();
          await kinds[kind]();
          const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
          const used = (await cpuSeconds()) - c0;
          progress(`${name} ${kind} ${round === 0 ? 'warm-up' : `run ${round}`}: ${seconds.toFixed(3)} s, ${used.toFixed(2)} s CPU`);
          if (round > 0) {
            times[kind].push(seconds);
            cpu[kind].push(used);
          }
        }
        await rm(work, { recursive: true, force: true });
        await mkdir(work, { recursive: true });
      }
      for (const kind of ['bwrap', 'none'] as const) {
        rows.push([
          name,
          kind,
          format(summarize(times.direct), 3),
          format(summarize(times[kind]), 3),
          format(pairedRatio(times[kind], times.direct), 2),
          format(summarize(cpu.direct), 2),
          format(summarize(cpu[kind]), 2),
          format(pairedRatio(cpu[kind], cpu.direct), 2),
        ]);
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  console.log(`load average ${start} → ${loadAverage()}\n`);
  printTable(['image', 'sandbox', 'bakeImage s', 'sandboxedBake s', 'wall ratio', 'bakeImage CPU s', 'sandboxedBake CPU s', 'CPU ratio'], rows);
}

/** CPU seconds of this process and of its children that have been waited for (utime, stime, cutime, cstime). */
async function cpuSeconds(): Promise<number> {
  const fields = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1].split(' ');
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return ticks / 100; // USER_HZ is 100 on Linux
}

const LOOP = 'console.log("ready");let n=0;for(;;){for(let i=0;i<1e5;i++)n+=i%7;}';

/** utime + stime of a process, in seconds. */
async function cpuOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A busy loop pinned to one CPU, run as `prefix… node -e`; resolves once it loops. */
async function busy(prefix: string[]): Promise<{ pid: number; stop(): Promise<void> }> {
  const child = spawn('taskset', ['-c', values.cpu, ...prefix, process.execPath, '-e', LOOP], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout, 'data');
  return { pid: child.pid as number, stop: async () => { child.kill('SIGKILL'); await once(child, 'close'); } };
}

async function priority(): Promise<void> {
  const seconds = Number(values.seconds);
  const start = loadAverage();
  const rows: string[][] = [];
  /** The API loop's share of the CPU time the two loops got over the window (0.5: no priority; 1: all of it). */
  const measure = async (label: string, rival: () => Promise<{ pid: number; stop(): Promise<void> }>) => {
    const api = await busy([]);
    const other = await rival();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [a0, r0] = [await cpuOf(api.pid), await cpuOf(other.pid)];
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const [a1, r1] = [await cpuOf(api.pid), await cpuOf(other.pid)];
    await other.stop();
    await api.stop();
    const [da, dr] = [a1 - a0, r1 - r0];
    progress(`${label}: API ${da.toFixed(2)} s CPU, rival ${dr.toFixed(2)} s`);
    rows.push([label, da.toFixed(2), dr.toFixed(2), (da / (da + dr)).toFixed(3)]);
  };
  for (const [label, prefix] of [
    ['nice 0', []],
    ['nice 19', ['nice', '-n', '19']],
    ['SCHED_IDLE', ['chrt', '--idle', '0']],
    ['chrt --idle 0, nice 19, ionice -c 3 (the sandbox chain)', ['chrt', '--idle', '0', 'nice', '-n', '19', 'ionice', '-c', '3']],
    ['the same chain in a new session (setsid: its own autogroup)', ['setsid', 'chrt', '--idle', '0', 'nice', '-n', '19']],
  ] as Array<[string, string[]]>) {
    await measure(label, () => busy(prefix));
  }
  // The real launcher: the bench's threads are pinned, and what it spawns inherits that.
  spawnSync('taskset', ['-a', '-p', '-c', values.cpu, String(process.pid)], { stdio: 'ignore' });
  const settings = loadSandboxSettings({ ...process.env, KILN_BAKE_SANDBOX: 'bwrap' });
  for (const [label, script] of [
    ['a bake process (startSandboxed, bwrap), autogroup left at nice 0', LOOP],
    ['a bake process (startSandboxed, bwrap), autogroup at nice 19 as bake-entry sets it', `require("fs").writeFileSync("/proc/self/autogroup","19");${LOOP}`],
  ]) {
    await measure(label, async () => {
      const box = await startSandboxed(settings, ['-e', script]);
      await once(box.child.stdout as NodeJS.ReadableStream, 'data');
      const pids = await cgroupPids(box.cgroups);
      const node = [];
      for (const pid of pids) if ((await readFile(`/proc/${pid}/cmdline`, 'utf8')).startsWith(`${process.execPath}\0`)) node.push(pid);
      return { pid: node[0], stop: async () => { box.kill(); await box.done; } };
    });
  }
  console.log(`load average ${start} → ${loadAverage()}\n`);
  printTable(['rival loop on the API loop\'s CPU', 'API CPU s', 'rival CPU s', "API's share"], rows);
}

if (values.priority) await priority();
else await bakes();
