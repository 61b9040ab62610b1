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
// image record is live while a name of it lives and its manifest exists in
// some repo, or while a bake of it is pending. A name lives while its tag
// points where it does (a digest name: while its manifest is in the repo);
// src/images/service.ts drops names as tags and manifests go through the API,
// and the collector drops any others it finds.
//
// Safety under concurrency. The collector talks to a GcStore; how the store
// keeps writers out differs by backend, the rules below hold on both.
//
// 1. Snapshot, mark and row deletion are one atomic step against every writer
//    that makes content reachable (GcStore.collect):
//    - SQLite (one process): one synchronous better-sqlite3 transaction; Node
//      runs it to completion on the JS thread, so no request handler
//      interleaves with it.
//    - PostgreSQL (many processes): the collector holds the advisory lock
//      `reach` exclusively (a session lock taken before its REPEATABLE READ
//      transaction begins, so the snapshot is taken after every writer that
//      held it has committed). Every write that makes content reachable (blob
//      link, manifest insert with its tag, pin) holds `reach` shared for its
//      transaction. No such write commits between snapshot and delete, in any
//      process.
// 2. Handlers that make content visible span several awaits, and a sweep
//    may fall between them. Each such window is closed:
//    a. Manifest PUT checks its references, then (awaits later) inserts the
//       manifest. The insert transaction re-checks that every referenced blob
//       link and child manifest row still exists and fails with
//       MANIFEST_BLOB_UNKNOWN otherwise (putManifest of both metadata
//       stores; on PostgreSQL under `reach` shared, so it sees any deletion
//       committed by a collector), so a sweep between check and insert turns
//       into a clean error, never a manifest whose blobs are gone.
//    b. A blob file renamed into blobs/ before its row is written (upload
//       commit, manifest bytes, cross-repo mount between its check and its
//       link): the request pins the digest (PinStore) for the whole span,
//       and the sweep never deletes a row or file of a pinned digest. Pins are
//       taken before the first await that matters and released after the row
//       is committed. SQLite: in memory (DigestPins). PostgreSQL: also a row
//       in digest_pins, inserted under `reach` shared, with a lease (a pin of
//       a process that died expires); the snapshot and each guarded sweep
//       step read them.
//    c. Bytes go only after their rows: the row deletion commits first, then
//       stored blobs are deleted through the blob store in guarded steps
//       (GcStore.guard): the check that a blob's row is still absent and its
//       digest unpinned, and the delete, happen with no writer able to commit
//       in between (PostgreSQL: `reach` held exclusive until the step's
//       deletes have returned). An object-store delete is a round trip, so
//       within the process the step also holds each doomed digest
//       (PinStore.holdForDelete) from the check until its delete returns, and
//       a pin of it waits for that (SQLite: the guard is one tick of the JS
//       thread, the hold covers the awaits). A blob uploaded again after its
//       row was deleted therefore either pinned the digest (so the delete is
//       skipped) or pins it after the delete and writes the bytes anew: a
//       stale delete never removes fresh bytes. A crash between the row
//       deletion and the byte deletion leaves bytes without a row: an orphan
//       the next run deletes once it is older than the grace period.
//    d. Disks: the files of an image (images/<hex>/ in the FileStore: the
//       data directory or the S3 bucket) are deleted in a guarded step with
//       the check that no image record or pending bake wants it (on
//       PostgreSQL with `reach` held until the deletes return). Image
//       records are not written under `reach`; what keeps a fresh disk safe
//       is order: a new record of the digest commits before its bake job is
//       queued, and the bake publishes only after a worker has taken the
//       job and baked, so a bake asked for after the check publishes after
//       the step's deletes (a list and a delete call) have returned. Should
//       a bake ever win that race, fsck reports the missing disk and a
//       bake request makes it again. Disks without
//       a record (a crash between publishing and recording, or between
//       deleting the record and its files) are reclaimed once older than the
//       grace period. A bake stages its disk in the worker's scratch
//       directory, so nothing half-written is ever visible under images/;
//       what a publish the worker died in left (a temporary file, an S3
//       multipart upload) goes once it is older than the grace period and
//       an hour.
//    e. Upload data without a session is removed only when older than the
//       grace period and, online, at least a minute (a session's data exists
//       a moment before its row; manifest bytes are staged in uploads/ too).
// 3. One run at a time (GcStore.runExclusive): per process the runs queue
//    behind each other; on PostgreSQL the advisory lock `gcRun` also keeps
//    replicas (and `kiln gc --database-url`) from collecting at once.
//
// A SQLite data directory has one process: the pid lock (store/dir-lock.ts)
// makes `kiln gc --data-dir` refuse under a live server. On PostgreSQL the
// processes share the database and the data directory, and an offline
// `kiln gc` is one more collector beside the servers.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { DataDir } from '../store/data-dir.js';
import { fileKeys, type FileStore } from '../store/file-store.js';
import { FsFileStore } from '../store/fs/file-store.js';
import type { PinStore } from '../store/pins.js';
import type { GcStore } from '../store/gc-store.js';
import type { BlobStore, StoredBlob, StoredUpload } from '../store/types.js';
import type { GcConfig } from './config.js';
import { deletionOf, planCollection, type GcPlan } from './mark.js';
import type { GcMetrics } from './metrics.js';

/** Unfinished disk writes (a worker died while publishing) younger than this are never removed, whatever the grace period. */
const UNFINISHED_DISK_FLOOR_MS = 60 * 60_000;
/** Upload files without a session younger than this are never removed by an online run. */
const ONLINE_UPLOAD_FLOOR_MS = 60_000;
/** Items of each kind listed in a report; the counts are always complete. */
const REPORT_ITEMS = 1000;
/** Files handled per turn of the event loop during the sweep. */
const BATCH = 256;
/** Blob deletes in flight at once (an object store answers each in a round trip). */
const DELETES_AT_ONCE = 16;

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
  /** Directories of ended builds past KILN_BUILD_RETENTION (their source and log). */
  buildFiles: number;
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
  bytesFreed: { blobs: number; disks: number; uploads: number; buildFiles: number; total: number };
  kept: { manifests: number; repoLinks: number; blobs: number; images: number };
  /** Names of what was deleted, at most 1000 of each kind. */
  items: { [K in keyof GcCounts]: string[] };
  truncated: boolean;
  /** Files that could not be removed (permissions, I/O); the run goes on. */
  errors: string[];
}

/** Removes (or, for a dry run, lists) files another module owns; names what it took and how many bytes. */
export type Reclaimer = (dryRun: boolean) => Promise<{ items: string[]; bytes: number }>;

export type RootSource = () => Iterable<{ repo: string; digest: string }> | Promise<Iterable<{ repo: string; digest: string }>>;

interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface CollectorDeps {
  dirs: DataDir;
  /** Baked disks (store/open.ts `files`); the data directory's when not given. */
  files?: FileStore;
  store: GcStore;
  blobs: BlobStore;
  pins: PinStore;
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
  private readonly reclaimers = new Map<string, Reclaimer>();
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly clock: () => number;
  private readonly files: FileStore;

  constructor(private readonly deps: CollectorDeps) {
    this.clock = deps.clock ?? Date.now;
    this.files = deps.files ?? new FsFileStore(deps.dirs.root, { durable: false });
  }

  /** Adds files to reclaim on every run (e.g. the builds module: files of builds past their retention). */
  addReclaimer(name: string, reclaimer: Reclaimer): void {
    this.reclaimers.set(name, reclaimer);
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
      return this.deps.store.runExclusive(() => this.collect(options));
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
      const pinnedElsewhere = new Set(snapshot.pinned);
      const p = planCollection(snapshot, {
        now: this.clock(),
        graceMs,
        cacheMaxAgeMs: config.cacheMaxAgeMs,
        keepGlobalCache: config.keepGlobalCache,
        isPinned: (d) => pins.has(d) || pinnedElsewhere.has(d),
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
    for (const [name, reclaim] of this.reclaimers) {
      try {
        const taken = await reclaim(dryRun);
        report.deleted.buildFiles += taken.items.length;
        report.bytesFreed.buildFiles += taken.bytes;
        for (const item of taken.items) items.add('buildFiles', item);
      } catch (err) {
        report.errors.push(`${name}: ${(err as Error).message}`);
      }
    }

    report.bytesFreed.total = report.bytesFreed.blobs + report.bytesFreed.disks + report.bytesFreed.uploads + report.bytesFreed.buildFiles;
    report.durationMs = this.clock() - startedAt;
    return report;
  }

  /** Stored blobs whose row is gone (deleted now, or never written and older than the grace period). */
  private async sweepBlobs(plan: GcPlan, dryRun: boolean, cutoff: number, report: GcReport, items: ItemLists): Promise<void> {
    const planned = new Set(plan.blobs.map((b) => b.digest));
    // Checked in guarded batches and deleted between them, while requests run.
    let batch: StoredBlob[] = [];
    for await (const blob of this.deps.blobs.list()) {
      batch.push(blob);
      if (batch.length >= BATCH) {
        await this.sweepBlobBatch(batch, planned, dryRun, cutoff, report, items);
        batch = [];
        await yieldToLoop();
      }
    }
    await this.sweepBlobBatch(batch, planned, dryRun, cutoff, report, items);
  }

  private async sweepBlobBatch(batch: StoredBlob[], planned: Set<string>, dryRun: boolean, cutoff: number, report: GcReport, items: ItemLists): Promise<void> {
    if (batch.length === 0) return;
    const { store, pins, blobs } = this.deps;
    // The check, the holds and the deletes in one guarded step (safety rule 2c).
    await store.guard({ blobs: batch.map((b) => b.digest) }, async (view) => {
      const doomed = batch.flatMap((blob) => {
        const { digest } = blob;
        const rowGone = dryRun ? planned.has(digest) || !view.blobRowExists(digest) : !view.blobRowExists(digest);
        if (!rowGone || pins.has(digest) || view.pinned(digest)) return [];
        if (!planned.has(digest) && blob.modifiedAt.getTime() >= cutoff) return [];
        return [{ blob, release: dryRun ? () => undefined : pins.holdForDelete(digest) }];
      });
      await forEachLimited(doomed, DELETES_AT_ONCE, async ({ blob, release }) => {
        try {
          if (!dryRun) await blobs.delete(blob.digest);
          report.deleted.blobs++;
          report.bytesFreed.blobs += blob.size;
          items.add('blobs', blob.digest);
        } catch (err) {
          this.fileError(report, `blob ${blob.digest}`, err);
        } finally {
          release();
        }
      });
    });
  }

  /** Disks (every file under images/<hex>/) no image record or pending bake wants. */
  private async sweepDisks(plan: GcPlan, dryRun: boolean, cutoff: number, report: GcReport, items: ItemLists): Promise<void> {
    const { store } = this.deps;
    const planned = new Set(plan.images);
    const stored = new Map<string, { bytes: number; newest: number }>();
    for await (const file of this.files.list('images/')) {
      const digest = fileKeys.imageDigestOf(file.key);
      if (!digest) continue; // not an image's file (fsck reports it)
      const entry = stored.get(digest) ?? { bytes: 0, newest: 0 };
      entry.bytes += file.size;
      entry.newest = Math.max(entry.newest, file.modifiedAt.getTime());
      stored.set(digest, entry);
    }
    // Leftovers of publishes a worker died in (never visible): gone once surely not running any more.
    if (!dryRun) {
      const before = new Date(Math.min(cutoff, this.clock() - UNFINISHED_DISK_FLOOR_MS));
      const removed = await this.files.removeUnfinished('images/', before).catch((err: unknown) => {
        this.fileError(report, 'unfinished disk uploads', err);
        return 0;
      });
      if (removed > 0) this.deps.log?.info({ removed }, 'garbage collection removed unfinished disk writes');
    }
    const entries = [...stored].map(([digest, e]) => ({ digest, ...e }));
    for (let i = 0; i < entries.length; i += BATCH) {
      const batch = entries.slice(i, i + BATCH);
      // The check and the deletes in one guarded step (safety rule 2d).
      await store.guard({ images: batch.map((e) => e.digest) }, async (view) => {
        const doomed = batch.filter((entry) => {
          const wanted = dryRun ? !planned.has(entry.digest) && view.imageWanted(entry.digest) : view.imageWanted(entry.digest);
          if (wanted) return false;
          // A disk whose record this run did not delete may be one a bake has just published and not yet recorded.
          return planned.has(entry.digest) || entry.newest < cutoff;
        });
        await forEachLimited(doomed, DELETES_AT_ONCE, async (entry) => {
          try {
            if (!dryRun) await this.files.deletePrefix(fileKeys.imageDir(entry.digest));
            report.deleted.disks++;
            report.bytesFreed.disks += entry.bytes;
            items.add('disks', entry.digest);
          } catch (err) {
            this.fileError(report, `disk ${entry.digest}`, err);
          }
        });
      });
      await yieldToLoop();
    }
  }

  /** Upload sessions idle past the upload TTL, and stored upload data without a session. */
  private async sweepUploads(dryRun: boolean, cutoff: number, report: GcReport, items: ItemLists): Promise<void> {
    const { store, blobs, config } = this.deps;
    for (const session of await store.uploadsIdleSince(this.clock() - config.uploadTtlMs)) {
      const size = await blobs.uploadSize(session.id).catch(() => null);
      if (!dryRun) {
        try {
          await blobs.abortUpload(session.id);
          await store.deleteUpload(session.id);
        } catch (err) {
          this.fileError(report, `upload ${session.id}`, err);
          continue;
        }
      }
      report.deleted.uploads++;
      report.bytesFreed.uploads += size ?? 0;
      items.add('uploads', `${session.repo} ${session.id} (idle session)`);
    }
    const orphanCutoff = Math.min(cutoff, this.deps.online ? this.clock() - ONLINE_UPLOAD_FLOOR_MS : cutoff);
    const stored: StoredUpload[] = [];
    for await (const upload of blobs.listUploads()) if (upload.modifiedAt.getTime() < orphanCutoff) stored.push(upload);
    for (let i = 0; i < stored.length; i += BATCH) {
      const batch = stored.slice(i, i + BATCH);
      // Under the store's guard: the session row is absent (the data is old, so no session is about to be written for it).
      const orphans = await store.guard({ uploads: batch.map((u) => u.id) }, (view) => batch.filter((u) => !view.uploadSessionExists(u.id)));
      for (const upload of orphans) {
        try {
          if (!dryRun) await blobs.abortUpload(upload.id);
          report.deleted.uploads++;
          report.bytesFreed.uploads += upload.size;
          items.add('uploads', `${upload.id} (no session)`);
        } catch (err) {
          this.fileError(report, `upload ${upload.id}`, err);
        }
      }
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
  const zero = (): GcCounts => ({ tags: 0, manifests: 0, repoLinks: 0, blobs: 0, repos: 0, disks: 0, uploads: 0, buildFiles: 0 });
  return {
    dryRun,
    trigger,
    startedAt: new Date(startedAt).toISOString(),
    durationMs: 0,
    graceSeconds: graceMs / 1000,
    cacheMaxAgeSeconds: cacheMaxAgeMs === null ? null : cacheMaxAgeMs / 1000,
    deleted: zero(),
    bytesFreed: { blobs: 0, disks: 0, uploads: 0, buildFiles: 0, total: 0 },
    kept: { manifests: 0, repoLinks: 0, blobs: 0, images: 0 },
    items: { tags: [], manifests: [], repoLinks: [], blobs: [], repos: [], disks: [], uploads: [], buildFiles: [] },
    truncated: false,
    errors: [],
  };
}



async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
