// `kiln images`, `kiln images inspect`, `kiln bake`, `kiln push`: clients of a running server.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import type { Command } from 'commander';
import { parseImageRef } from '../images/refs.js';
import type { ImageDetail, ImageView } from '../images/service.js';
import { clientFromEnv } from './api-client.js';
import { readImageSource } from './image-source.js';
import { pushImage } from './push.js';
import { formatBytes } from '../util/format-bytes.js';

const POLL_MS = 250;

export function registerImageCommands(program: Command): void {
  const urlOption = ['--url <url>', 'Kiln base URL (env KILN_URL, default http://127.0.0.1:5000)'] as const;

  const images = program.command('images').description('list baked images').option(...urlOption);
  images.action(async (opts: { url?: string }) => {
    const client = clientFromEnv(opts.url);
    const list: ImageView[] = [];
    // The server pages the listing; follow its `next` to the end.
    for (let next: string | null = '/api/v1/images'; next !== null; ) {
      const page: { images: ImageView[]; next?: string | null } = await client.json(next);
      list.push(...page.images);
      next = page.next ?? null;
    }
    const rows = list.map((i) => [i.ref, i.digest.slice(0, 19), i.status, progressText(i), i.diskSize === null ? '-' : formatBytes(i.diskSize)]);
    printTable(['REF', 'DIGEST', 'STATUS', 'PROGRESS', 'DISK'], rows);
    for (const failed of list.filter((i) => i.error)) process.stderr.write(`${failed.ref}: ${failed.error}\n`);
  });
  images
    .command('inspect <ref>')
    .description('show an image: status, run config, disk')
    .option(...urlOption)
    .action(async (ref: string, opts: { url?: string }) => {
      const detail = await clientFromEnv(opts.url ?? images.opts().url).json<ImageDetail>(`/api/v1/images/${ref}`);
      process.stdout.write(`${JSON.stringify(detail, null, 2)}\n`);
    });

  program
    .command('bake <ref>')
    .description('bake an image into a disk now and wait for it')
    .option(...urlOption)
    .action(async (ref: string, opts: { url?: string }) => {
      const client = clientFromEnv(opts.url);
      const started = await client.json<ImageView>('/api/v1/images/bake', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ref }),
      });
      // Through the name the bake was asked for: a bare digest may answer through another repo's name.
      const polled = started.repo === '' ? started.digest : started.ref;
      const final = await waitForBake(() => client.json<ImageView>(`/api/v1/images/${polled}`));
      if (final.status === 'failed') throw new Error(`bake of ${ref} failed: ${final.error}`);
      process.stdout.write(`${final.ref} ready: ${formatBytes(final.diskSize ?? 0)} disk at /api/v1/images/${final.digest}/disk\n`);
    });

  program
    .command('push <source> <ref>')
    .description('push an OCI layout directory or a docker-archive tar as repo:tag')
    .option(...urlOption)
    .action(async (source: string, refText: string, opts: { url?: string }) => {
      const ref = parseImageRef(refText);
      if (ref.kind !== 'tag') throw new Error('push needs repo:tag');
      const scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-push-'));
      try {
        const image = await readImageSource(source, ref.tag, scratch);
        const total = image.blobs.reduce((n, b) => n + b.size, 0);
        const bar = progressBar('push');
        bar.start(total, 0);
        const digest = await pushImage(clientFromEnv(opts.url), ref.repo, ref.tag, image, { total, onBytes: (n) => bar.increment(n) });
        bar.stop();
        process.stdout.write(`pushed ${ref.repo}:${ref.tag}@${digest}\n`);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });
}

/** Polls until the bake ends, drawing a progress bar over compressed layer bytes. */
async function waitForBake(fetchView: () => Promise<ImageView>): Promise<ImageView> {
  const bar = progressBar('bake');
  let started = false;
  try {
    for (;;) {
      const view = await fetchView();
      if (!started && view.progress.bytesTotal > 0) {
        bar.start(view.progress.bytesTotal, 0);
        started = true;
      }
      if (started) bar.update(view.status === 'ready' ? view.progress.bytesTotal : view.progress.bytesDone);
      if (view.status === 'ready' || view.status === 'failed') return view;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    bar.stop();
  }
}

function progressBar(label: string): SingleBar {
  return new SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} bytes`, noTTYOutput: false, stream: process.stderr, hideCursor: true },
    Presets.shades_classic,
  );
}

function progressText(view: ImageView): string {
  if (view.status === 'ready') return '100%';
  if (view.progress.bytesTotal === 0) return '-';
  return `${Math.floor((100 * view.progress.bytesDone) / view.progress.bytesTotal)}%`;
}


function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
}
