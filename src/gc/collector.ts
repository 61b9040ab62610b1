// The garbage collector: mark from roots, sweep the rest, online while pushes
// and builds go on.
//
// Roots: every tag in every repo (cache repos included, minus cache tags that
// retention expires), manifests younger than the grace period, manifests of
// queued or running bake jobs, extra roots from hooks (running builds), and
// pinned digests (below). From a live manifest: its children (index entries,
// recursively), its config and layer blobs and an index's blob children (repo
// links), and its referrers (manifests whose `subject` is live). A blob row is
// live while a live manifest or live repo link names it, or it is younger than
// the grace period. A baked disk is live while its image record is, and an
// image record is live while its manifest exists in some repo or a bake of it
// is pending.
//
// Safety under concurrency (one process; SQLite via better-sqlite3):
//
// 1. Snapshot, mark and row deletion run inside ONE synchronous SQLite
//    transaction (SqliteGcStore.collect). Node runs it to completion on the
//    JS thread, so no request handler of this process interleaves with it:
//    every handler sees the metadata either before or after the sweep.
// 2. Handlers that make content visible span several awaits, and the sweep
//    may fall between them. Each such window is closed:
//    a. Manifest PUT checks its references, then (awaits later) inserts the
//       manifest. The insert transaction re-checks that every referenced blob
//       link and child manifest row still exists and fails with
//       MANIFEST_BLOB_UNKNOWN otherwise (SqliteMetadataStore.putManifest), so
//       a sweep between check and insert turns into a clean error, never a
//       manifest whose blobs are gone.
//    b. A blob file renamed into blobs/ before its row is written (upload
//       commit, manifest bytes, cross-repo mount between its check and its
//       link): the request pins the digest (DigestPins) for the whole span,
//       and the sweep never deletes a row or file of a pinned digest. Pins are
//       taken before the first await that matters and released after the row
//       is committed. Without pins (another process), the grace period covers
//       it: a file is only an orphan when its mtime is older than the grace.
//    c. Files go only after their rows: the row deletion commits first, then
//       each file is unlinked with unlinkSync in the same tick as a fresh
//       check that its row is still absent and its digest unpinned. A blob
//       uploaded again after its row was deleted therefore either pinned the
//       digest (so the unlink is skipped) or already has its row back (also
//       skipped): a stale delete never removes a fresh file.
//    d. Disks: an image directory is renamed into tmp/ (same tick as the check
//       that no image record or pending bake wants it) and removed there, so
//       a bake that writes the digest again later is untouched. Temporary bake
//       directories are left alone while their bake is pending.
//    e. Upload files without a session are removed only when older than the
//       grace period and, online, at least a minute (a session's file exists
//       a moment before its row; manifest bytes are staged in uploads/ too).
// 3. One run at a time per process (runs queue behind each other).
//
// Multiple processes on one data directory are excluded by the pid lock
// (store/dir-lock.ts): `kiln gc --data-dir` refuses to run under a live server.
// A deployment with several server processes (PostgreSQL, S3) cannot rely on
// the JS thread or on in-memory pins: it needs the sweep under database locks
// (e.g. SELECT … FOR UPDATE on the blob rows plus an advisory lock that the
// commit path takes in shared mode) and a generation number or a
// mark-timestamp check on blob rows so a blob re-linked after the mark is not
// deleted.
import { randomUUID } from 'node:crypto';
import { lstatSync, readdirSync, renameSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { DataDir } from '../store/data-dir.js';
import type { DigestPins } from '../store/pins.js';
import type { GcStore } from '../store/gc-store.js';
import type { BlobStore } from '../store/types.js';
import type { GcConfig } from './config.js';
import { deletionOf, planCollection, type GcPlan } from './mark.js';
import type { GcMetrics } from './metrics.js';

/** Upload files without a session younger than this are never removed by an online run. */
const ONLINE_UPLOAD_FLOOR_MS = 60_000;
/** Items of each kind listed in a report; the counts are always complete. */
const REPORT_ITEMS = 1000;
/** Files handled per turn of the event loop during the sweep. */
const BATCH = 256;

export type GcTrigger = 'interval' | 'api' | 'cli' | 'test';

export interface GcRunOptions {
  dryRun?: boolean;
  trigger?: GcTrigger;
  /** Overrides the configured grace period for this run (tests, `kiln gc --grace`). */
  graceMs?: number;
}

export interface GcCounts {
  tags: number;
  manifests: number;
  repoLinks: number;
  blobs: number;
  repos: number;
  disks: number;
  uploads: number;
}

export interface GcReport {
  dryRun: boolean;
  trigger: GcTrigger;
  startedAt: string;
  durationMs: number;
  graceSeconds: number;
  cacheMaxAgeSeconds: number | null;
  /** What was deleted (or, for a dry run, would be). */
  deleted: GcCounts;
  bytesFreed: { blobs: number; disks: number; uploads: number; total: number };
  kept: { manifests: number; repoLinks: number; blobs: number; images: number };
  /** Names of what was deleted, at most 1000 of each kind. */
  items: { [K in keyof GcCounts]: string[] };
  truncated: boolean;
  /** Files that could not be removed (permissions, I/O); the run goes on. */
  errors: string[];
}

export type RootSource = () => Iterable<{ repo: string; digest: string }> | Promise<Iterable<{ repo: string; digest: string }>>;

interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface CollectorDeps {
  dirs: DataDir;
  store: GcStore;
  blobs: BlobStore;
  pins: DigestPins;
  config: GcConfig;
  /** True inside a running server: requests may be in flight. */
  online: boolean;
  metrics?: GcMetrics;
  log?: Logger;
  clock?: () => number;
}

export class GarbageCollector {
  private readonly rootSources = new Map<string, RootSource>();
  private readonly beforeRun: (() => void | Promise<void>)[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly clock: () => number;

  constructor(private readonly deps: CollectorDeps) {
    this.clock = deps.clock ?? Date.now;
  }

  /** Adds manifests to keep (e.g. the builds module: manifests of running builds). Replaces a source of the same name. */
  addRootSource(name: string, source: RootSource): void {
    this.rootSources.set(name, source);
  }

  /** Runs `fn` before every collection (the pull tracker flushes its batch). */
  onBeforeRun(fn: () => void | Promise<void>): void {
    this.beforeRun.push(fn);
  }

  /** Starts the periodic collector (KILN_GC_INTERVAL; 0 disables it). */
  start(): void {
    const every = this.deps.config.intervalMs;
    if (every <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      this.run({ trigger: 'interval' }).catch((err) => this.deps.log?.error({ err }, 'garbage collection failed'));
    }, every);
    this.timer.unref();
  }

  /** Stops the timer and waits for a running collection to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.queue.catch(() => undefined);
  }

  /** One collection; runs queue behind each other. */
  run(options: GcRunOptions = {}): Promise<GcReport> {
    const next = this.queue.catch(() => undefined).then(() => {
      if (this.stopped) throw new Error('the collector is stopped (the server is shutting down)');
      return this.collect(options);
    });
    this.queue = next;
    return next;
  }

  private async collect(options: GcRunOptions): Promise<GcReport> {
    const dryRun = options.dryRun ?? false;
    const trigger = options.trigger ?? 'api';
    const mode = dryRun ? 'dry_run' : 'sweep';
    const stopTimer = this.deps.metrics?.duration.startTimer({ mode });
    try {
      const report = await this.collectOnce(dryRun, trigger, options.graceMs ?? this.deps.config.graceMs);
      stopTimer?.();
      this.record(report, mode);
      this.deps.log?.info(
        { dryRun, trigger, deleted: report.deleted, bytesFreed: report.bytesFreed.total, ms: report.durationMs, errors: report.errors.length },
        dryRun ? 'garbage collection dry run' : 'garbage collection',
      );
      return report;
    } catch (err) {
      stopTimer?.();
      this.deps.metrics?.runs.inc({ mode, trigger, result: 'error' });
      throw err;
    }
  }

  private async collectOnce(dryRun: boolean, trigger: GcTrigger, graceMs: number): Promise<GcReport> {
    const { store, pins, config } = this.deps;
    for (const fn of this.beforeRun) await fn();
    const extraRoots: { repo: string; digest: string }[] = [];
    for (const [name, source] of this.rootSources) {
      try {
        for (const r of await source()) extraRoots.push(r);
      } catch (err) {
        // A root source that cannot answer makes the whole run unsafe.
        throw new Error(`garbage collection aborted: root source ${name} failed: ${(err as Error).message}`);
      }
    }

    const startedAt = this.clock();
    const report = emptyReport(dryRun, trigger, startedAt, graceMs, config.cacheMaxAgeMs);
    const plan: GcPlan = await store.collect((snapshot) => {
      const p = planCollection(snapshot, {
        now: this.clock(),
        graceMs,
        cacheMaxAgeMs: config.cacheMaxAgeMs,
        keepGlobalCache: config.keepGlobalCache,
        isPinned: (d) => pins.has(d),
        extraRoots,
      });
      return { result: p, deletion: dryRun ? null : deletionOf(p) };
    });

    report.deleted.tags = plan.expiredTags.length;
    report.deleted.manifests = plan.manifests.length;
    report.deleted.repoLinks = plan.links.length;
    report.deleted.repos = plan.repos.length;
    report.kept = { manifests: plan.live.manifests, repoLinks: plan.live.links, blobs: plan.live.blobs, images: plan.live.images };
    const items = new ItemLists(report);
    for (const t of plan.expiredTags) items.add('tags', `${t.repo}:${t.name}`);
    for (const m of plan.manifests) items.add('manifests', `${m.repo}@${m.digest}`);
    for (const l of plan.links) items.add('repoLinks', `${l.repo}@${l.digest}`);
    for (const r of plan.repos) items.add('repos', r.name);

    const cutoff = this.clock() - graceMs;
    await this.sweepBlobs(plan, dryRun, cutoff, report, items);
    await this.sweepDisks(plan, dryRun, cutoff, report, items);
    await this.sweepUploads(dryRun, cutoff, report, items);

    report.bytesFreed.total = report.bytesFreed.blobs + report.bytesFreed.disks + report.bytesFreed.uploads;
    report.durationMs = this.clock() - startedAt;
    return report;
  }

  /** Blob files whose row is gone (deleted now, or never written and older than the grace period). */
  private async sweepBlobs(plan: GcPlan, dryRun: boolean, cutoff: number, report: GcReport, items: ItemLists): Promise<void> {
    const { dirs } = this.deps;
    const planned = new Set(plan.blobs.map((b) => b.digest));
    // Directory listings are synchronous (async readdir waits behind upload I/O
    // in libuv's thread pool and made a collection under load take seconds);
    // files are checked and removed in guarded batches, between which requests run.
    let batch: { digest: string; file: string }[] = [];
    for (const algorithm of readdirSyncOrEmpty(dirs.blobsRoot)) {
      for (const fan of readdirSyncOrEmpty(path.join(dirs.blobsRoot, algorithm))) {
        for (const hex of readdirSyncOrEmpty(path.join(dirs.blobsRoot, algorithm, fan))) {
          const digest = `${algorithm}:${hex}`;
          let file: string;
          try {
            file = dirs.blobPath(digest);
          } catch {
            continue; // not a blob name; fsck reports it
          }
          if (path.basename(path.dirname(file)) !== fan) continue;
          batch.push({ digest, file });
          if (batch.length >= BATCH) {
            await this.sweepBlobBatch(batch, planned, dryRun, cutoff, report, items);
            batch = [];
            await yieldToLoop();
          }
        }
        await yieldToLoop();
      }
    }
    await this.sweepBlobBatch(batch, planned, dryRun, cutoff, report, items);
  }

  private async sweepBlobBatch(
    batch: { digest: string; file: string }[],
    planned: Set<string>,
    dryRun: boolean,
    cutoff: number,
    report: GcReport,
    items: ItemLists,
  ): Promise<void> {
    if (batch.length === 0) return;
    const { store, pins } = this.deps;
    // Check and unlink under the store's guard (safety rule 2c).
    await store.guard({ blobs: batch.map((b) => b.digest) }, (view) => {
      for (const { digest, file } of batch) {
        try {
          const rowGone = dryRun ? planned.has(digest) || !view.blobRowExists(digest) : !view.blobRowExists(digest);
          if (!rowGone || pins.has(digest)) continue;
          const st = statOrNull(file);
          if (!st?.isFile()) continue;
          if (!planned.has(digest) && st.mtimeMs >= cutoff) continue;
          if (!dryRun) unlinkSync(file);
          report.deleted.blobs++;
          report.bytesFreed.blobs += st.size;
          items.add('blobs', digest);
        } catch (err) {
          this.fileError(report, file, err);
        }
      }
    });
  }

  /** Disk directories no image record or pending bake wants, and stale temporary bake directories. */
  private async sweepDisks(plan: GcPlan, dryRun: boolean, cutoff: number, report: GcReport, items: ItemLists): Promise<void> {
    const { dirs, store } = this.deps;
    const planned = new Set(plan.images);
    const entries = readdirSyncOrEmpty(dirs.imagesRoot).flatMap((name) => {
      const entry = dirs.imageEntryDigest(name);
      return entry ? [{ name, ...entry, dir: path.join(dirs.imagesRoot, name) }] : [];
    });
    // Check and move aside under the store's guard (safety rule 2d); remove afterwards.
    const doomed = await store.guard({ images: entries.map((e) => e.digest) }, (view) =>
      entries.flatMap((entry) => {
        try {
          const st = lstatOrNull(entry.dir);
          if (!st) return [];
          if (entry.temporary) {
            if (this.deps.online && view.bakeActive(entry.digest)) return [];
            if (st.mtimeMs >= cutoff) return [];
          } else {
            const wanted = dryRun ? !planned.has(entry.digest) && view.imageWanted(entry.digest) : view.imageWanted(entry.digest);
            if (wanted) return [];
            if (!planned.has(entry.digest) && st.mtimeMs >= cutoff) return [];
          }
          let trash: string | null = null;
          if (!dryRun) {
            trash = path.join(dirs.scratchRoot, `gc-trash-${randomUUID()}`);
            renameSync(entry.dir, trash);
          }
          return [{ entry, trash }];
        } catch (err) {
          this.fileError(report, entry.dir, err);
          return [];
        }
      }),
    );
    for (const { entry, trash } of doomed) {
      const bytes = await allocatedBytes(trash ?? entry.dir);
      if (trash) await rm(trash, { recursive: true, force: true }).catch((err) => this.fileError(report, trash, err));
      report.deleted.disks++;
      report.bytesFreed.disks += bytes;
      items.add('disks', entry.temporary ? `${entry.digest} (unfinished bake ${entry.name})` : entry.digest);
    }
  }

  /** Upload sessions idle past the upload TTL, and upload files without a session. */
  private async sweepUploads(dryRun: boolean, cutoff: number, report: GcReport, items: ItemLists): Promise<void> {
    const { dirs, store, blobs, config } = this.deps;
    for (const session of await store.uploadsIdleSince(this.clock() - config.uploadTtlMs)) {
      const st = statOrNull(dirs.uploadPath(session.id));
      if (!dryRun) {
        try {
          await blobs.abortUpload(session.id);
          await store.deleteUpload(session.id);
        } catch (err) {
          this.fileError(report, dirs.uploadPath(session.id), err);
          continue;
        }
      }
      report.deleted.uploads++;
      report.bytesFreed.uploads += st?.size ?? 0;
      items.add('uploads', `${session.repo} ${session.id} (idle session)`);
    }
    const orphanCutoff = Math.min(cutoff, this.deps.online ? this.clock() - ONLINE_UPLOAD_FLOOR_MS : cutoff);
    const names = readdirSyncOrEmpty(dirs.uploadsRoot);
    for (let i = 0; i < names.length; i += BATCH) {
      const batch = names.slice(i, i + BATCH);
      // Under the store's guard: the session row is absent and the file is old.
      await store.guard({ uploads: batch }, (view) => {
        for (const name of batch) {
          const file = path.join(dirs.uploadsRoot, name);
          try {
            if (view.uploadSessionExists(name)) continue;
            const st = lstatOrNull(file);
            if (!st?.isFile() || st.mtimeMs >= orphanCutoff) continue;
            if (!dryRun) unlinkSync(file);
            report.deleted.uploads++;
            report.bytesFreed.uploads += st.size;
            items.add('uploads', `${name} (no session)`);
          } catch (err) {
            this.fileError(report, file, err);
          }
        }
      });
    }
  }

  private fileError(report: GcReport, file: string, err: unknown): void {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    this.deps.log?.warn({ err, file }, 'garbage collection could not remove a file');
    if (report.errors.length < REPORT_ITEMS) report.errors.push(`${file}: ${(err as Error).message}`);
  }

  private record(report: GcReport, mode: 'sweep' | 'dry_run'): void {
    const m = this.deps.metrics;
    if (!m) return;
    m.runs.inc({ mode, trigger: report.trigger, result: report.errors.length > 0 ? 'partial' : 'ok' });
    const kinds: [keyof GcCounts, string][] = [
      ['tags', 'tag'],
      ['manifests', 'manifest'],
      ['repoLinks', 'repo_link'],
      ['blobs', 'blob'],
      ['repos', 'repo'],
      ['disks', 'disk'],
      ['uploads', 'upload'],
    ];
    for (const [field, kind] of kinds) if (report.deleted[field] > 0) m.items.inc({ kind, mode }, report.deleted[field]);
    if (report.bytesFreed.blobs > 0) m.bytes.inc({ kind: 'blob', mode }, report.bytesFreed.blobs);
    if (report.bytesFreed.disks > 0) m.bytes.inc({ kind: 'disk', mode }, report.bytesFreed.disks);
    if (report.bytesFreed.uploads > 0) m.bytes.inc({ kind: 'upload', mode }, report.bytesFreed.uploads);
    m.lastRun.set({ mode }, this.clock() / 1000);
    m.lastBytes.set({ mode }, report.bytesFreed.total);
  }
}

class ItemLists {
  constructor(private readonly report: GcReport) {}
  add(kind: keyof GcCounts, item: string): void {
    const list = this.report.items[kind];
    if (list.length < REPORT_ITEMS) list.push(item);
    else this.report.truncated = true;
  }
}

function emptyReport(dryRun: boolean, trigger: GcTrigger, startedAt: number, graceMs: number, cacheMaxAgeMs: number | null): GcReport {
  const zero = (): GcCounts => ({ tags: 0, manifests: 0, repoLinks: 0, blobs: 0, repos: 0, disks: 0, uploads: 0 });
  return {
    dryRun,
    trigger,
    startedAt: new Date(startedAt).toISOString(),
    durationMs: 0,
    graceSeconds: graceMs / 1000,
    cacheMaxAgeSeconds: cacheMaxAgeMs === null ? null : cacheMaxAgeMs / 1000,
    deleted: zero(),
    bytesFreed: { blobs: 0, disks: 0, uploads: 0, total: 0 },
    kept: { manifests: 0, repoLinks: 0, blobs: 0, images: 0 },
    items: { tags: [], manifests: [], repoLinks: [], blobs: [], repos: [], disks: [], uploads: [] },
    truncated: false,
    errors: [],
  };
}

function statOrNull(file: string): Stats | null {
  try {
    return statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function lstatOrNull(file: string): Stats | null {
  try {
    return lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function readdirSyncOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
}

/** Bytes a tree occupies on disk (sparse disk images count their allocated blocks). */
export async function allocatedBytes(target: string): Promise<number> {
  const st = await lstat(target).catch(() => null);
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  let total = st.blocks * 512;
  for (const name of await readdirOrEmpty(target)) total += await allocatedBytes(path.join(target, name));
  return total;
}
