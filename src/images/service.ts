// Baking as a service: every pushed runnable image gets a durable bake job
// (one per digest, however many tags and repos name it); caches and artifacts
// get none. Also answers the image API: status, run config, disk.
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { classify, formatPlatform, isNotRunnable, noPlatformMessage, notRunnableMessage, type PlatformSpec } from '../oci/classify.js';
import { parseManifest, type Manifest } from '../oci/manifest.js';
import type { JobQueue } from '../jobs/queue.js';
import type { ManifestPushedEvent, RegistryService } from '../registry/service.js';
import type { DataDir } from '../store/data-dir.js';
import type { ImageName, ImageRecord, ImageStore } from '../store/image-store.js';
import type { JobRecord } from '../store/job-store.js';
import { ApiError } from '../server/api-errors.js';
import { BAKE_JOB, bakeJobKey as jobKey, type BakePayload } from './bake-job.js';
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
  runConfig: unknown;
}

export interface ImageServiceDeps {
  registry: RegistryService;
  jobs: JobQueue;
  images: ImageStore;
  dirs: DataDir;
  platforms: readonly PlatformSpec[];
  log: FastifyBaseLogger;
}

export class ImageService {
  constructor(private readonly deps: ImageServiceDeps) {
    deps.registry.onManifestPushed((event) => {
      return this.onPush(event).catch((err: unknown) => {
        deps.log.error({ err, repo: event.repo, digest: event.digest }, 'could not queue bake');
      });
    });
  }

  /** Queues bakes for a pushed manifest when it is a runnable image (or an index of them). */
  private async onPush(event: ManifestPushedEvent): Promise<void> {
    const c = classify(event.manifest, event.repo, { platforms: this.deps.platforms });
    if (c.kind === 'runnable-image') await this.enqueue({ digest: event.digest, repo: event.repo, tag: event.tag, indexDigest: null, platform: null });
    if (c.kind === 'multi-platform-image') {
      for (const child of c.toBake) {
        const platform = child.platform ? formatPlatform(child.platform) : null;
        await this.enqueue({ digest: child.digest, repo: event.repo, tag: event.tag, indexDigest: event.digest, platform });
      }
    }
  }

  private async enqueue(source: Parameters<ImageStore['upsert']>[0]): Promise<ImageRecord> {
    const record = this.deps.images.upsert(source);
    const payload: BakePayload = { digest: source.digest, repo: source.repo };
    await this.deps.jobs.enqueue(BAKE_JOB, jobKey(source.digest), payload);
    return record;
  }

  // ---- API -----------------------------------------------------------------

  /** One entry per repo:tag naming a baked image, for the names the caller may see. */
  async list(visible: (repo: string) => boolean): Promise<ImageView[]> {
    const views = this.deps.images.list().flatMap((record) => record.names.filter((n) => visible(n.repo)).map((n) => this.view(record, n)));
    return Promise.all(views);
  }

  /**
   * Finds the baked image a reference names: a digest (of the image or its
   * index) or repo:tag. `name` is the repo:tag the reference used, or null
   * for a bare digest (the caller then picks a name it may see).
   */
  async find(refText: string): Promise<{ record: ImageRecord; name: ImageName | null }> {
    const ref = parseRef(refText);
    const digest = ref.kind === 'tag' ? await this.resolveTag(ref.repo, ref.tag) : ref.digest;
    const record = this.deps.images.get(digest) ?? this.deps.images.byIndex(digest)[0];
    const notFound = new ApiError('NOT_FOUND', `no baked image for ${refText}; push a runnable image or POST /api/v1/images/bake`);
    if (!record) throw notFound;
    if (ref.kind === 'digest') return { record, name: null };
    const name = record.names.find((n) => n.repo === ref.repo && (ref.kind !== 'tag' || n.tag === ref.tag)) ?? record.names.find((n) => n.repo === ref.repo);
    if (!name) throw notFound;
    return { record, name };
  }

  async detail(record: ImageRecord, name?: ImageName): Promise<ImageDetail> {
    const view = await this.view(record, name);
    let runConfig: unknown = null;
    if (view.status === 'ready') {
      runConfig = JSON.parse(await readFile(path.join(this.deps.dirs.imageDir(record.digest), 'config.json'), 'utf8'));
    }
    return { ...view, runConfig };
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
    return this.view(record, record.names.find((n) => n.repo === ref.repo && n.tag === tag));
  }

  /** Path and size of a ready disk. */
  async disk(record: ImageRecord): Promise<{ file: string; size: number }> {
    if ((await this.view(record)).status !== 'ready') throw new ApiError('NOT_READY', `the disk of ${record.digest} is not ready yet`);
    const file = path.join(this.deps.dirs.imageDir(record.digest), 'rootfs.ext4');
    return { file, size: (await stat(file)).size };
  }

  /**
   * Removes one name of a baked image; with the last name goes the disk and
   * its record (a later push or bake request makes it again). A bake still
   * queued or running is cancelled first: its worker stops it and removes
   * its scratch.
   */
  async deleteDisk(record: ImageRecord, name: ImageName): Promise<void> {
    if (record.names.length > 1) {
      this.deps.images.deleteName(record.digest, name.repo, name.tag);
      return;
    }
    const key = jobKey(record.digest);
    if ((await this.deps.jobs.cancel(key, 'cancelled: the image was deleted')) === 'signalled') {
      const job = await this.deps.jobs.settled(key, CANCEL_WAIT_MS);
      if (job?.status === 'running') throw new ApiError('CONFLICT', `the bake of ${record.digest} is stopping; try again in a few seconds`);
    }
    await this.deps.jobs.store.delete(key);
    this.deps.images.delete(record.digest);
    await rm(this.deps.dirs.imageDir(record.digest), { recursive: true, force: true });
  }

  /** The image as seen through one of its names (the most recent when not given). */
  async view(record: ImageRecord, name: ImageName | undefined = record.names[0]): Promise<ImageView> {
    const job = await this.deps.jobs.store.get(jobKey(record.digest));
    const repo = name?.repo ?? '';
    const tag = name?.tag ?? null;
    return {
      digest: record.digest,
      repo,
      tag,
      ref: formatRef(repo, tag, record.digest),
      class: 'runnable-image',
      platform: record.platform,
      indexDigest: record.indexDigest,
      status: statusOf(job),
      progress: { bytesDone: job?.progressDone ?? 0, bytesTotal: job?.progressTotal ?? 0 },
      diskSize: record.diskSize,
      error: job?.status === 'failed' || job?.status === 'cancelled' ? job.error : null,
      attempts: job?.attempts ?? 0,
      createdAt: new Date(record.createdAt).toISOString(),
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
