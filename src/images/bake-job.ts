// The bake job, as a worker process runs it: read the manifest and config
// from the stores, hand the layers to the bake engine (sandboxed in a child
// process by default), record the disk size. Only trusted code runs here:
// tar is parsed inside the engine's process, never in the worker or the API.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { BakeInput, BakeResult } from '../convert/bake.js';
import { BakeError } from '../convert/errors.js';
import type { BakeLimits } from '../convert/limits.js';
import { bakeScratchName } from '../jobs/scratch-sweep.js';
import type { JobHandler } from '../jobs/worker.js';
import { parseManifest, type ImageManifest } from '../oci/manifest.js';
import type { DataDir } from '../store/data-dir.js';
import type { FileStore } from '../store/file-store.js';
import type { ImageStore } from '../store/image-store.js';
import type { BlobStore, MetadataStore } from '../store/types.js';

export const BAKE_JOB = 'bake';

export interface BakePayload {
  digest: string;
  repo: string;
}

export function bakeJobKey(digest: string): string {
  return `${BAKE_JOB}:${digest}`;
}

export interface BakeJobDeps {
  meta: MetadataStore;
  blobs: BlobStore;
  images: ImageStore;
  /** Where finished disks and their config.json are published (store/open.ts). */
  files: FileStore;
  /** The worker's scratch root: the disk is staged there, then published through `files`. */
  dirs: DataDir;
  limits: BakeLimits;
  /** The engine: sandboxedBake in worker processes; bakeImage runs it in-process (tests of the engine). */
  bake(input: BakeInput): Promise<BakeResult>;
}

export function bakeJobHandler(deps: BakeJobDeps): JobHandler {
  return async (job, ctx) => {
    const { digest, repo } = job.payload as BakePayload;
    const record = await deps.meta.getManifest(repo, digest);
    const bytes = record ? await deps.blobs.readBytes(digest) : null;
    if (!record || !bytes) throw new BakeError('INVALID_IMAGE', `manifest ${digest} is no longer in ${repo}; push the image again`);
    const manifest = parseManifest(bytes, record.mediaType);
    if (manifest.kind !== 'image') throw new BakeError('INVALID_IMAGE', `${digest} is an index, not a single image`);
    const configBytes = await deps.blobs.readBytes(manifest.config.digest);
    if (!configBytes) throw new BakeError('INVALID_IMAGE', `the config blob ${manifest.config.digest} of ${digest} is missing; push the image again`);
    const workDir = path.join(deps.dirs.scratchRoot, bakeScratchName(job.id));
    try {
      const result = await deps.bake({
        manifest: manifest as ImageManifest,
        configBytes,
        openBlob: async (d) => {
          const stream = await deps.blobs.open(d);
          if (!stream) throw new BakeError('INVALID_IMAGE', `layer ${d} is missing from the registry; push the image again`);
          return stream;
        },
        workDir,
        outputDir: { files: deps.files, digest },
        limits: deps.limits,
        onProgress: ctx.progress,
        signal: ctx.signal,
      });
      await deps.images.setDiskSize(digest, result.diskSizeBytes);
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  };
}
