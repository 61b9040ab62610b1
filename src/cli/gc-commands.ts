// `kiln gc` and `kiln fsck`.
//
// `kiln gc --url URL` asks a running server (POST /api/v1/gc, admin API key in
// KILN_TOKEN): the server's collector is the one that knows its in-flight
// requests. Without --url, `kiln gc` works on the stores itself. On SQLite it
// refuses while a server holds the data directory (pid lock): stop the server
// first, or use --url. On PostgreSQL it is one more collector beside the
// servers (the database coordinates them). `kiln fsck` works on the stores
// directly; on SQLite with the server stopped.
import type { Command } from 'commander';
import { loadGcConfig, parseGcDuration } from '../gc/config.js';
import type { GcReport } from '../gc/collector.js';
import { formatFsckReport, fsck } from '../gc/fsck.js';
import { formatBytes } from '../util/format-bytes.js';
import { openOffline } from '../gc/offline.js';
import { databaseUrlFrom } from '../server/config.js';
import { DataDirInUseError } from '../store/dir-lock.js';
import { loadS3Config } from '../store/s3/config.js';
import { clientFromEnv } from './api-client.js';

interface GcOptions {
  dryRun?: boolean;
  dataDir?: string;
  databaseUrl?: string;
  url?: string;
  grace?: string;
  json?: boolean;
}

export function registerGcCommands(program: Command): void {
  program
    .command('gc')
    .description('delete unreferenced manifests, blobs, disks and stale uploads (offline on --data-dir, or on a running server with --url)')
    .option('--dry-run', 'report what would be deleted, delete nothing')
    .option('--data-dir <dir>', 'data directory to collect while no server runs (env KILN_DATA_DIR, default ./kiln-data)')
    .option('--database-url <url>', 'the PostgreSQL database of the deployment (env KILN_DATABASE_URL); servers may keep running')
    .option('--url <url>', 'collect on a running server instead (POST /api/v1/gc; needs an admin key in KILN_TOKEN)')
    .option('--grace <duration>', 'offline only: keep unreferenced content younger than this (default KILN_GC_GRACE or 1h)')
    .option('--json', 'print the full report as JSON')
    .action(async (opts: GcOptions) => {
      let report: GcReport;
      if (opts.url) {
        if (opts.grace !== undefined) throw new Error('--grace applies to offline runs; a server uses its KILN_GC_GRACE');
        report = await clientFromEnv(opts.url).json<GcReport>('/api/v1/gc', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ dryRun: opts.dryRun ?? false }),
        });
      } else {
        const config = loadGcConfig(process.env);
        const dataDir = opts.dataDir ?? process.env.KILN_DATA_DIR ?? './kiln-data';
        const opened = await openOffline(dataDir, 'kiln gc', databaseUrlFrom(opts.databaseUrl)).catch((err: unknown) => {
          if (err instanceof DataDirInUseError) {
            throw new Error(`${err.message}; to collect on the running server use \`kiln gc --url <its URL>\``);
          }
          throw err;
        });
        try {
          const graceMs = opts.grace === undefined ? undefined : parseGcDuration(opts.grace, '--grace');
          report = await opened.collector(config).run({ dryRun: opts.dryRun ?? false, trigger: 'cli', graceMs });
        } finally {
          await opened.close();
        }
      }
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatGcReport(report));
      if (report.errors.length > 0) process.exitCode = 1;
    });

  program
    .command('fsck')
    .description('verify blobs, manifests, tags and baked disks against the database; quarantine corrupt blobs (server must be stopped)')
    .option('--data-dir <dir>', 'data directory (env KILN_DATA_DIR, default ./kiln-data)')
    .option('--database-url <url>', 'the PostgreSQL database of the deployment (env KILN_DATABASE_URL)')
    .option('--no-quarantine', 'only report corrupt blobs, do not move them aside')
    .option('--deep', 're-hash every blob (the default on the data directory; on S3 the default lists every object and checks its size)')
    .option('--no-deep', 'only list blobs and check their sizes')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { dataDir?: string; databaseUrl?: string; quarantine: boolean; deep?: boolean; json?: boolean }) => {
      const dataDir = opts.dataDir ?? process.env.KILN_DATA_DIR ?? './kiln-data';
      const opened = await openOffline(dataDir, 'kiln fsck', databaseUrlFrom(opts.databaseUrl));
      try {
        // Reading every object back from S3 costs a full download: only when asked.
        const deep = opts.deep ?? loadS3Config(process.env) === null;
        const { dirs, gc: store, blobs, files } = opened.stores;
        const report = await fsck({ dirs, store, blobs, files, deep, quarantine: opts.quarantine });
        process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatFsckReport(report));
        if (!report.ok) process.exitCode = 1;
      } finally {
        await opened.close();
      }
    });
}

export function formatGcReport(r: GcReport): string {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  const lines: string[] = [];
  const show = (label: string, list: string[]) => {
    for (const item of list) lines.push(`${verb} ${label} ${item}`);
  };
  show('tag', r.items.tags);
  show('manifest', r.items.manifests);
  show('blob', r.items.blobs);
  show('disk', r.items.disks);
  show('upload', r.items.uploads);
  show('build files of', r.items.buildFiles);
  if (r.truncated) lines.push('(lists truncated; the counts below are complete)');
  const d = r.deleted;
  lines.push(
    `${r.dryRun ? 'dry run: would delete' : 'deleted'} ${d.tags} expired cache tags, ${d.manifests} manifests, ${d.repoLinks} repo links, ${d.blobs} blobs, ${d.disks} disks, ${d.uploads} uploads, ${d.repos} empty repos, ${d.buildFiles} ended builds' files`,
  );
  lines.push(
    `${r.dryRun ? 'would free' : 'freed'} ${formatBytes(r.bytesFreed.total)} (blobs ${formatBytes(r.bytesFreed.blobs)}, disks ${formatBytes(r.bytesFreed.disks)}, uploads ${formatBytes(r.bytesFreed.uploads)}, build files ${formatBytes(r.bytesFreed.buildFiles)}) in ${r.durationMs} ms; kept ${r.kept.manifests} manifests, ${r.kept.blobs} blobs, ${r.kept.images} images`,
  );
  for (const e of r.errors) lines.push(`error: ${e}`);
  return `${lines.join('\n')}\n`;
}
