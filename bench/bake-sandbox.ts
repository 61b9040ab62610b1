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
// (nice 0) and counts its iterations alone, then beside a second loop that
// runs at normal priority, at nice 19, as SCHED_IDLE, or through the
// sandbox's own chain (chrt --idle 0, nice 19, ionice -c 3); the figure is
// the share of its iterations alone it keeps (0.5: no priority; 1: all).
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { bakeImage, type BakeInput } from '../src/convert/bake.js';
import { layoutBlobOpener } from '../src/convert/testing.js';
import { loadSandboxSettings, sandboxedBake } from '../src/jobs/sandbox/index.js';
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

if (values.priority) await priority();
else await bakes();

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

/** A busy loop pinned to one CPU, run as `prefix… node -e`: prints "ready" once looping, then its iterations after `seconds` (or never, with 0). */
function busy(prefix: string[], seconds: number): { ready: Promise<void>; done: Promise<number>; stop(): void } {
  const script = `console.log('ready');const end=${seconds}>0?Date.now()+${seconds * 1000}:Infinity;let n=0;while(Date.now()<end){for(let i=0;i<1e5;i++)n+=i%7;}console.log(Math.round(n/1e5))`;
  const argv = ['taskset', '-c', values.cpu, ...prefix, process.execPath, '-e', script];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (out.startsWith('ready\n')) onReady();
  });
  const done = new Promise<number>((resolve, reject) => child.on('close', (code) => (code === 0 ? resolve(Number(out.slice('ready\n'.length).trim())) : reject(new Error(`${argv.join(' ')}: exit ${code}`)))));
  return { ready, done, stop: () => child.kill('SIGKILL') };
}

async function priority(): Promise<void> {
  const seconds = Number(values.seconds);
  const start = loadAverage();
  const rows: string[][] = [];
  const rivals: Array<[string, string[]]> = [
    ['nice 0', []],
    ['nice 19', ['nice', '-n', '19']],
    ['SCHED_IDLE', ['chrt', '--idle', '0']],
    ['the sandbox chain (chrt --idle 0, nice 19, ionice -c 3)', ['chrt', '--idle', '0', 'nice', '-n', '19', 'ionice', '-c', '3']],
  ];
  for (const [label, prefix] of rivals) {
    const alone = await busy([], seconds).done;
    // The rival is looping before the API starts (a starved rival would otherwise only start once the API is done).
    const rival = busy(prefix, 0);
    await rival.ready;
    const beside = await busy([], seconds).done;
    rival.stop();
    await rival.done.catch(() => 0);
    progress(`API ${beside} iterations beside a loop at ${label}, ${alone} alone`);
    rows.push([label, String(alone), String(beside), (beside / alone).toFixed(2)]);
  }
  console.log(`load average ${start} → ${loadAverage()}\n`);
  printTable(['rival loop on the same CPU', 'API loop alone', 'API loop beside the rival', 'share kept'], rows);
}
