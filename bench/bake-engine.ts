// Bake engine vs the anchor pipeline (umoci unpack + mkfs.ext4 -d), same image, same run.
//
//   node --import tsx bench/bake-engine.ts /tmp/corpus [--images debian,debian-app,bigblob] [--runs 5]
//       [--work /tmp/bench-bake] [--anchor-rootfs DIR]
//
// Runs are interleaved (kiln, anchor, kiln, anchor, …) after one untimed warm-up
// pair; the ratio is the median of the per-pair ratios kiln / anchor. The anchor
// time is `umoci unpack` plus `mkfs.ext4 -d` (the `du` that sizes its image is
// not counted). As in BASELINES.md, the anchor's rootfs goes in the work
// directory (on /tmp) unless --anchor-rootfs points elsewhere (e.g. a tmpfs),
// both disks go in the work directory, and outputs are deleted only after
// each image's series (deleting between runs slows the next run's file
// creation on an ext4 mounted with `discard`).
// Kiln's time is one bakeImage() call: reading blobs from the layout, verifying,
// decompressing, writing the ext4 image directly from the tree (fsync included),
// config.json.
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { bakeImage } from '../src/convert/bake.js';
import { parseManifest, type ImageManifest } from '../src/oci/manifest.js';

const TARGETS: Record<string, number> = { 'debian-app': 0.5, debian: 1.0, bigblob: 1.0 };

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    images: { type: 'string', default: 'debian,debian-app,bigblob' },
    runs: { type: 'string', default: '5' },
    work: { type: 'string', default: '/tmp/bench-bake' },
    'anchor-rootfs': { type: 'string' },
    tag: { type: 'string', default: '1' },
  },
});
const corpus = positionals[0];
if (!corpus) {
  console.error('usage: node --import tsx bench/bake-engine.ts CORPUS_DIR [--images a,b] [--runs N] [--work DIR]');
  process.exit(2);
}
const runs = Number(values.runs);
const workRoot = path.resolve(values.work);
const anchorRoot = path.resolve(values['anchor-rootfs'] ?? values.work);
await mkdir(workRoot, { recursive: true });
await mkdir(anchorRoot, { recursive: true });
const anchorOnTmpfs = (await statfs(anchorRoot)).type === 0x01021994;
/** Everything a series wrote, removed when the series is over. */
const leftovers: string[] = [];

interface Layout {
  dir: string;
  manifest: ImageManifest;
  configBytes: Buffer;
}

async function loadLayout(dir: string, tag: string): Promise<Layout> {
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string; annotations?: Record<string, string> }> };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`${dir} has no tag ${tag}`);
  const manifest = parseManifest(await readFile(blobPath(dir, entry.digest)), entry.mediaType);
  if (manifest.kind !== 'image') throw new Error(`${dir}:${tag} is an index`);
  return { dir, manifest, configBytes: await readFile(blobPath(dir, manifest.config.digest)) };
}

function blobPath(dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return path.join(dir, 'blobs', algorithm, hex);
}

async function timeKiln(layout: Layout): Promise<{ seconds: number; cpu: number; disk: string }> {
  const work = await mkdtemp(path.join(workRoot, 'kiln-'));
  leftovers.push(work);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const result = await bakeImage({
    manifest: layout.manifest,
    configBytes: layout.configBytes,
    openBlob: async (digest) => createReadStream(blobPath(layout.dir, digest), { highWaterMark: 1 << 20 }),
    workDir: path.join(work, 'job'),
    outputDir: path.join(work, 'images', 'out'),
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const used = process.cpuUsage(cpu0);
  return { seconds, cpu: (used.user + used.system) / 1e6, disk: result.diskPath };
}

async function timeAnchor(name: string): Promise<{ seconds: number; unpack: number; mkfs: number }> {
  const bundleDir = await mkdtemp(path.join(anchorRoot, 'anchor-'));
  const diskDir = await mkdtemp(path.join(workRoot, 'anchor-disk-'));
  leftovers.push(bundleDir, diskDir);
  const t0 = process.hrtime.bigint();
  await run('umoci', ['unpack', '--image', `${path.join(corpus, name)}:${values.tag}`, path.join(bundleDir, 'bundle')]);
  const unpack = Number(process.hrtime.bigint() - t0) / 1e9;
  const rootfs = path.join(bundleDir, 'bundle', 'rootfs');
  const du = spawnSync('du', ['-sb', rootfs], { encoding: 'utf8' });
  // BASELINES sizes the anchor disk at 1.5 × du, at least 10 MiB; on tmpfs that is too small
  // for debian-app (directories count ~0 there), so never below twice the unpacked size there.
  const factor = anchorOnTmpfs ? 2 : 1.5;
  const size = Math.max(10485760, Math.floor(Number(du.stdout.split('\t')[0]) * factor));
  const disk = path.join(diskDir, 'disk.ext4');
  spawnSync('truncate', ['-s', String(size), disk]);
  const t1 = process.hrtime.bigint();
  await run('mkfs.ext4', ['-q', '-b', '4096', '-O', '^has_journal', '-d', rootfs, '-F', disk]);
  const mkfs = Number(process.hrtime.bigint() - t1) / 1e9;
  return { seconds: unpack + mkfs, unpack, mkfs };
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exit ${code}: ${stderr}`))));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const fmt = (xs: number[]) => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`;

async function main(): Promise<void> {
  const rows: string[] = [];
  for (const name of values.images.split(',')) {
    const layout = await loadLayout(path.join(corpus, name), values.tag);
    const kiln: number[] = [];
    const kilnCpu: number[] = [];
    const anchor: number[] = [];
    const unpack: number[] = [];
    const mkfs: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i <= runs; i++) {
      const k = await timeKiln(layout);
      if (i === 0) {
        // Check the warm-up disk once: a fast wrong answer is no answer.
        const fsck = spawnSync('e2fsck', ['-fn', k.disk], { encoding: 'utf8' });
        if (fsck.status !== 0) throw new Error(`e2fsck found problems in the ${name} disk:\n${fsck.stdout}${fsck.stderr}`);
      }
      const a = await timeAnchor(name);
      if (i === 0) continue; // warm-up pair
      kiln.push(k.seconds);
      kilnCpu.push(k.cpu);
      anchor.push(a.seconds);
      unpack.push(a.unpack);
      mkfs.push(a.mkfs);
      ratios.push(k.seconds / a.seconds);
      process.stderr.write(`${name} run ${i}: kiln ${k.seconds.toFixed(3)} s, anchor ${a.seconds.toFixed(3)} s (unpack ${a.unpack.toFixed(3)} + mkfs ${a.mkfs.toFixed(3)}), ratio ${(k.seconds / a.seconds).toFixed(2)}\n`);
    }
    for (const dir of leftovers.splice(0)) await rm(dir, { recursive: true, force: true });
    const ratio = median(ratios);
    const target = TARGETS[name];
    rows.push(`| ${name} | ${fmt(kiln)} | ${median(kilnCpu).toFixed(2)} | ${fmt(anchor)} | ${median(unpack).toFixed(3)} + ${median(mkfs).toFixed(3)} | **${ratio.toFixed(2)}** | ${target === undefined ? '—' : `≤ ${target} ${ratio <= target ? 'met' : 'MISSED'}`} |`);
  }
  console.log(`\nbake engine vs umoci unpack + mkfs.ext4 -d (anchor rootfs in ${anchorRoot}); N = ${runs} interleaved pairs after 1 warm-up; seconds, median (min–max)\n`);
  console.log('| image | kiln bakeImage s | kiln cpu s (main process) | anchor s | anchor unpack + mkfs s | ratio (paired median) | target |');
  console.log('|---|---|---:|---|---|---:|---|');
  for (const row of rows) console.log(row);
}

await main();
