// Baking as a service: a runnable image gets a durable bake job (one per
// digest, however many tags and repos name it) when a tag names it or an
// index that names it is pushed (the configured platforms only); caches and
// artifacts get none. Also answers the image API: status, run config, disk.
//
// Names. Each tenant sees an image through its own names (repo:tag, or
// repo@digest for an index pushed by digest or a bake asked by digest), and
// what it sees of the image beyond the shared disk (index, platform, source)
// comes only from them. A name lives while its tag, or for a digest name its
// manifest, is in the repo: a tag moved or deleted, or a manifest deleted,
// takes its names along. An image without names is reclaimed by the
// collector (src/gc/mark.ts).
import type { Readable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { classify, formatPlatform, isNotRunnable, noPlatformMessage, notRunnableMessage, type PlatformSpec } from '../oci/classify.js';
import { parseManifest, type Manifest } from '../oci/manifest.js';
import type { JobQueue } from '../jobs/queue.js';
import type { ManifestPushedEvent, ReferenceDeletedEvent, RegistryService } from '../registry/service.js';
import { fileKeys, type FileStore } from '../store/file-store.js';
import type { ImageName, ImageNameCursor, ImageRecord, ImageStore, ListedImageName } from '../store/image-store.js';
import type { ByteRange, RepoScope } from '../store/types.js';
import type { JobRecord } from '../store/job-store.js';
import { ApiError } from '../server/api-errors.js';
import { BAKE_JOB, bakeJobKey as jobKey, type BakePayload } from './bake-job.js';
import { bakesForPush } from './bake-rule.js';
import { formatRef, parseImageRef, RefError, type ImageRef } from './refs.js';

/** How long deleting an image waits for its cancelled bake to stop. */
const CANCEL_WAIT_MS = 15_000;

export type ImageStatus = 'pending' | 'baking' | 'ready' | 'failed';

export interface ImageView {
  digest: string;
  repo: string;
  tag: string | null;
  ref: string;
  class: 'runnable-image';
  platform: string | null;
  indexDigest: string | null;
  status: ImageStatus;
  progress: { bytesDone: number; bytesTotal: number };
  diskSize: number | null;
  error: string | null;
  attempts: number;
  createdAt: string;
  readyAt: string | null;
}

export interface ImageDetail extends ImageView {
  /** Where the caller's name of the image points: its own repo and tag. */
  source: { repo: string; tag?: string };
  runConfig: unknown;
}

/** A ready disk to download: its size (from Kiln), and where its bytes come from. */
export interface DiskDownload {
  size: number;
  /** A presigned URL the client may fetch the disk (and ranges of it) from, or null when Kiln streams it. */
  redirectUrl(filename?: string): Promise<string | null>;
  /** The disk or a byte range of it (inclusive). */
  open(range?: ByteRange): Promise<Readable>;
}

export interface ImagePage {
  images: ImageView[];
  /** Where the next page starts, or null on the last page. */
  next: ImageNameCursor | null;
}

export interface ImageServiceDeps {
  registry: RegistryService;
  jobs: JobQueue;
  images: ImageStore;
  /** Baked disks and their config.json (store/open.ts). */
  files: FileStore;
  platforms: readonly PlatformSpec[];
  log: FastifyBaseLogger;
}

export class ImageService {
  constructor(private readonly deps: ImageServiceDeps) {
    deps.registry.onManifestPushed((event) =>
      this.onPush(event).catch((err: unknown) => {
        deps.log.error({ err, repo: event.repo, digest: event.digest }, 'could not queue bake');
      }),
    );
    deps.registry.onReferenceDeleted(async (event) => {
      try {
        if (event.kind === 'tag') await deps.images.dropTag(event.repo, event.tag);
        else await deps.images.dropManifest(event.repo, event.digest);
      } catch (err) {
        deps.log.error({ err, ...describeDeleted(event) }, 'could not forget the image names of a deleted reference');
      }
    });
  }

  /** A tag pushed moves the tag (names it gave before go); then the bakes the push asks for (bake-rule.ts) are queued. */
  private async onPush(event: ManifestPushedEvent): Promise<void> {
    if (event.tag !== null) await this.deps.images.dropTag(event.repo, event.tag, event.digest);
    const c = classify(event.manifest, event.repo, { platforms: this.deps.platforms });
    for (const source of bakesForPush(c, event)) await this.enqueue(source);
  }

  private async enqueue(source: Parameters<ImageStore['upsert']>[0]): Promise<ImageRecord> {
    const record = await this.deps.images.upsert(source);
    const payload: BakePayload = { digest: source.digest, repo: source.repo };
    await this.deps.jobs.enqueue(BAKE_JOB, jobKey(source.digest), payload);
    return record;
  }

  // ---- API -----------------------------------------------------------------

  /**
   * One page of the names the caller may see, in (repo, tag) order. The
   * database reads only within `scope`; `visible` applies the exact policy
   * to what it returns.
   */
  async list(scope: RepoScope, visible: (repo: string) => boolean, page: { after?: ImageNameCursor; limit: number }): Promise<ImagePage> {
    // One more than asked says whether there is a next page.
    const want = page.limit + 1;
    const batch = Math.max(want, LIST_BATCH);
    const found: ListedImageName[] = [];
    let after = page.after;
    while (found.length < want) {
      const names = await this.deps.images.listNames({ after, limit: batch }, scope);
      for (const name of names) {
        if (visible(name.repo)) found.push(name);
        if (found.length >= want) break;
      }
      if (names.length < batch) break;
      after = cursorOf(names.at(-1)!);
    }
    const shown = found.slice(0, page.limit);
    return {
      images: await Promise.all(shown.map((n) => this.viewOf(n, n.diskSize, n.digest))),
      next: found.length > page.limit ? cursorOf(shown.at(-1)!) : null,
    };
  }

  /**
   * Finds the baked image a reference names: a digest (of the image or its
   * index), repo@digest or repo:tag, through the names of that repo. `name`
   * is the name the reference used, or null for a bare digest: the caller
   * then picks one of `candidates` (every name of it) that it may see, and
   * `record` is only good for its disk.
   */
  async find(refText: string): Promise<{ record: ImageRecord; name: ImageName | null; candidates: ImageName[] }> {
    const ref = parseRef(refText);
    const notFound = new ApiError('NOT_FOUND', `no baked image for ${refText}; push a runnable image or POST /api/v1/images/bake`);
    const names =
      ref.kind === 'tag'
        ? await this.deps.images.namesOfTag(ref.repo, ref.tag)
        : ref.kind === 'repo-digest'
          ? await this.deps.images.namesOfDigest(ref.repo, ref.digest)
          : await this.deps.images.namesAnywhere(ref.digest);
    const first = names[0];
    if (!first) {
      if (ref.kind === 'tag') await this.resolveTag(ref.repo, ref.tag);
      throw notFound;
    }
    const record = await this.deps.images.get(first.digest);
    if (!record) throw notFound;
    return { record, name: ref.kind === 'digest' ? null : first, candidates: names };
  }

  /** The record of the image a name points at (the names of a bare digest may point at several). */
  async recordOf(name: ImageName): Promise<ImageRecord> {
    const record = await this.deps.images.get(name.digest);
    if (!record) throw new ApiError('NOT_FOUND', `no baked image for ${formatRef(name.repo, name.tag, name.digest)}`);
    return record;
  }

  async detail(record: ImageRecord, name?: ImageName): Promise<ImageDetail> {
    const view = await this.view(record, name);
    let runConfig: unknown = null;
    if (view.status === 'ready') {
      const bytes = await this.deps.files.readBytes(fileKeys.imageConfig(record.digest));
      if (!bytes) throw missingDisk(record.digest);
      runConfig = withoutSource(JSON.parse(bytes.toString('utf8')));
    }
    return { ...view, source: view.tag ? { repo: view.repo, tag: view.tag } : { repo: view.repo }, runConfig };
  }

  /**
   * Bakes on demand. Caches and artifacts are refused with a message naming
   * their media type; a failed bake is retried; a ready one is left alone.
   */
  async requestBake(refText: string): Promise<ImageView> {
    const ref = parseRef(refText);
    if (ref.kind === 'digest') throw new ApiError('BAD_REQUEST', 'name the repository too: repo:tag or repo@digest');
    const digest = ref.kind === 'tag' ? await this.resolveTag(ref.repo, ref.tag) : ref.digest;
    const manifest = await this.loadManifest(ref.repo, digest);
    const c = classify(manifest, ref.repo, { platforms: this.deps.platforms });
    if (isNotRunnable(c)) throw new ApiError('NOT_RUNNABLE', notRunnableMessage(c));
    const tag = ref.kind === 'tag' ? ref.tag : null;
    if (tag !== null) await this.deps.images.dropTag(ref.repo, tag, digest);
    let target: { digest: string; platform: string | null; indexDigest: string | null };
    if (c.kind === 'multi-platform-image') {
      const child = c.toBake[0];
      if (!child) throw new ApiError('NOT_RUNNABLE', noPlatformMessage(c, this.deps.platforms));
      target = { digest: child.digest, platform: child.platform ? formatPlatform(child.platform) : null, indexDigest: digest };
    } else {
      target = { digest, platform: null, indexDigest: null };
    }
    const record = await this.enqueue({ ...target, repo: ref.repo, tag });
    const job = await this.deps.jobs.store.get(jobKey(target.digest));
    if (job?.status === 'failed' || job?.status === 'cancelled') await this.deps.jobs.retry(job.key);
    const named = record.names.filter((n) => n.repo === ref.repo);
    return this.view(record, named.find((n) => n.tag === tag && n.indexDigest === target.indexDigest) ?? named.find((n) => n.tag === tag) ?? named[0]);
  }

  /** A ready disk: its size, and how to serve it. */
  async disk(record: ImageRecord): Promise<DiskDownload> {
    if ((await this.view(record)).status !== 'ready') throw new ApiError('NOT_READY', `the disk of ${record.digest} is not ready yet`);
    const { files } = this.deps;
    const key = fileKeys.imageDisk(record.digest);
    const info = await files.stat(key);
    if (!info) throw missingDisk(record.digest);
    return {
      size: info.size,
      redirectUrl: (filename) => files.redirectUrl(key, { filename }),
      open: async (range) => {
        const stream = await files.open(key, range);
        if (!stream) throw missingDisk(record.digest);
        return stream;
      },
    };
  }

  /**
   * Removes one name of a baked image; with the last name goes the disk and
   * its record (a later push or bake request makes it again). A bake still
   * queued or running is cancelled first: its worker stops it and removes
   * its scratch.
   */
  async deleteDisk(record: ImageRecord, name: ImageName): Promise<void> {
    if (record.names.length > 1) {
      await this.deps.images.deleteName(record.digest, name.repo, name.tag);
      return;
    }
    const key = jobKey(record.digest);
    if ((await this.deps.jobs.cancel(key, 'cancelled: the image was deleted')) === 'signalled') {
      const job = await this.deps.jobs.settled(key, CANCEL_WAIT_MS);
      if (job?.status === 'running') throw new ApiError('CONFLICT', `the bake of ${record.digest} is stopping; try again in a few seconds`);
    }
    await this.deps.jobs.store.delete(key);
    // The record first, then the bytes (a crash between leaves an orphan disk the collector reclaims).
    await this.deps.images.delete(record.digest);
    await this.deps.files.deletePrefix(fileKeys.imageDir(record.digest));
  }

  /**
   * The image as seen through one of its names (the most recent when not
   * given, for callers that show only the bake's state). Index, platform and
   * times come from the name, never from another tenant's.
   */
  view(record: ImageRecord, name: ImageName | undefined = record.names[0]): Promise<ImageView> {
    return this.viewOf(name, record.diskSize, record.digest);
  }

  private async viewOf(name: ImageName | undefined, diskSize: number | null, digest: string): Promise<ImageView> {
    const job = await this.deps.jobs.store.get(jobKey(digest));
    const repo = name?.repo ?? '';
    const tag = name?.tag ?? null;
    return {
      digest,
      repo,
      tag,
      ref: formatRef(repo, tag, digest),
      class: 'runnable-image',
      platform: name?.platform ?? null,
      indexDigest: name?.indexDigest ?? null,
      status: statusOf(job),
      progress: { bytesDone: job?.progressDone ?? 0, bytesTotal: job?.progressTotal ?? 0 },
      diskSize,
      error: job?.status === 'failed' || job?.status === 'cancelled' ? job.error : null,
      attempts: job?.attempts ?? 0,
      createdAt: new Date(name?.createdAt ?? 0).toISOString(),
      readyAt: job?.status === 'done' && job.finishedAt ? new Date(job.finishedAt).toISOString() : null,
    };
  }

  private async loadManifest(repo: string, digest: string): Promise<Manifest> {
    const { record, bytes } = await this.deps.registry.readManifest(repo, digest).catch(() => {
      throw new ApiError('NOT_FOUND', `manifest ${digest} is not in ${repo}`);
    });
    return parseManifest(bytes, record.mediaType);
  }

  private async resolveTag(repo: string, tag: string): Promise<string> {
    const digest = await this.deps.registry.meta.resolveTag(repo, tag);
    if (!digest) throw new ApiError('NOT_FOUND', `${repo}:${tag} is not in the registry`);
    return digest;
  }
}

/** Names read per database query while a page of the listing fills. */
const LIST_BATCH = 200;

function cursorOf(name: ImageName): ImageNameCursor {
  return { repo: name.repo, tag: name.tag, digest: name.digest, indexDigest: name.indexDigest };
}

function missingDisk(digest: string): ApiError {
  return new ApiError('NOT_FOUND', `the disk of ${digest} is missing from storage; bake it again (POST /api/v1/images/bake)`);
}

/** Disks baked before names were per tenant carry the first pusher's repo and tag in config.json. */
function withoutSource(doc: unknown): unknown {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return doc;
  const { source: _source, ...rest } = doc as Record<string, unknown>;
  return rest;
}

function describeDeleted(event: ReferenceDeletedEvent): { repo: string; reference: string } {
  return { repo: event.repo, reference: event.kind === 'tag' ? event.tag : event.digest };
}

function statusOf(job: JobRecord | null): ImageStatus {
  switch (job?.status) {
    case 'running':
      return 'baking';
    case 'done':
      return 'ready';
    case 'failed':
    case 'cancelled':
      return 'failed';
    default:
      return 'pending';
  }
}

function parseRef(text: string): ImageRef {
  try {
    return parseImageRef(text);
  } catch (err) {
    if (err instanceof RefError) throw new ApiError('BAD_REQUEST', err.message);
    throw new ApiError('BAD_REQUEST', (err as Error).message);
  }
}
