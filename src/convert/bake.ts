// bakeImage: one single-platform image in, `rootfs.ext4` + `config.json` out.
//
//   blobs ─► digest check ─► gunzip / zstd ─► diff_id check ─► tar reader
//         ─► RootfsTree (layer rules, containment, limits) ─► ext4 writer
//         ─► work dir ─► output dir (rename)
//
// File content goes from the decompressed stream straight into the disk
// image; the rest of the disk is written from the tree once the last layer
// is in. Nothing is unpacked to a directory, no external tool runs on image
// data, and no privilege is needed.
//
// bakeDisk is the engine alone (image in, disk into a path or an open file);
// publishBake adds config.json and moves the result into place: a directory
// (tests of the engine) or, for the bake service, the FileStore
// (images/<hex>/ in the data directory or in the S3 bucket). The sandbox
// (src/jobs/sandbox/) runs bakeDisk in a child process and publishBake in
// the worker.
import { closeSync } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileKeys, type FileStore } from '../store/file-store.js';
import { ImageConfigError, normalizeManifest, parseImageConfig, type ImageConfig, type RunConfig } from '../oci/image-config.js';
import type { ImageManifest } from '../oci/manifest.js';
import { isNonDistributable, layerCompression } from '../oci/media-types.js';
import { bakedConfig, type BakedConfig } from './baked-config.js';
import type { DiskBuilder, DiskWriter } from './disk-writer.js';
import { BakeError } from './errors.js';
import { Ext4Writer } from './ext4/writer.js';
import { readLayer } from './layer-stream.js';
import { BakeBudget, DEFAULT_BAKE_LIMITS, limitExceeded, type BakeLimits } from './limits.js';
import { RootfsTree } from './rootfs-tree.js';
import { TarFormatError, TarReader } from './tar-reader.js';

/** What the engine needs: the image and how to read its layers. */
export interface BakeDiskInput {
  /** A single-platform image manifest (Docker media types are fine). */
  manifest: ImageManifest;
  /** The image config blob. */
  configBytes: Uint8Array;
  /** Raw (compressed) bytes of a blob, streamed. */
  openBlob(digest: string): Promise<Readable>;
  /** What the bake may cost; DEFAULT_BAKE_LIMITS when absent (bakeLimitsFromEnv reads the settings). */
  limits?: BakeLimits;
  /** Compressed layer bytes consumed so far, out of the total. */
  onProgress?(bytesDone: number, bytesTotal: number): void;
  signal?: AbortSignal;
}

export interface BakeInput extends BakeDiskInput {
  /** Private scratch directory for this job; the result is assembled here, so it must be on the filesystem of outputDir. The caller deletes it. */
  workDir: string;
  /**
   * Where the result goes: a directory, replaced by a rename (tests of the
   * engine), or the image's keys in a FileStore (the bake service).
   */
  outputDir: string | BakeTarget;
}

/** The image's place in the FileStore: `fileKeys.imageDisk(digest)` and `fileKeys.imageConfig(digest)`. */
export interface BakeTarget {
  files: FileStore;
  digest: string;
}

export interface BakeResult {
  /** The disk: its path for a directory output, its FileStore key otherwise. */
  diskPath: string;
  /** config.json: its path for a directory output, its FileStore key otherwise. */
  configPath: string;
  diskSizeBytes: number;
  runConfig: RunConfig;
}

/** What the engine made: the disk's size and the document that goes beside it as config.json. */
export interface BakedDisk {
  document: BakedConfig;
  sizeBytes: number;
  runConfig: RunConfig;
}

const writer: DiskWriter = new Ext4Writer();

/** File name of the disk inside a result directory. */
export const DISK_FILE_NAME = writer.fileName;

export async function bakeImage(input: BakeInput): Promise<BakeResult> {
  input.signal?.throwIfAborted();
  await mkdir(input.workDir, { recursive: true });
  const result = await mkdtemp(path.join(input.workDir, 'result-'));
  try {
    const baked = await bakeDisk(input, path.join(result, writer.fileName));
    return await publishBake(result, baked, input.outputDir, input.signal);
  } catch (err) {
    await rm(result, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The engine: checks the image, reads its layers and writes the disk into
 * `disk`, a path that must not exist or the descriptor of an empty file open
 * for reading and writing (closed on return, whatever happens). Writes
 * nothing else.
 */
export async function bakeDisk(input: BakeDiskInput, disk: string | number): Promise<BakedDisk> {
  let builder: DiskBuilder | null = null;
  try {
    input.signal?.throwIfAborted();
    const budget = new BakeBudget(input.limits ?? DEFAULT_BAKE_LIMITS);
    budget.checkLayerCount(input.manifest.layers.length);
    const manifest = normalizeManifest(input.manifest);
    const config = parseConfig(input.configBytes);
    checkLayers(manifest, config);
    builder = writer.create(disk, { budget, identity: manifest.config.digest, signal: input.signal });
    const tree = new RootfsTree(builder, budget);
    await readLayers(manifest, config, input, tree, budget);
    const info = await builder.finish(tree.root);
    builder = null;
    const document = bakedConfig({ manifest, config, disk: { file: writer.fileName, format: writer.format, sizeBytes: info.sizeBytes } });
    return { document, sizeBytes: info.sizeBytes, runConfig: config.run };
  } catch (err) {
    if (builder) builder.abort();
    else if (typeof disk === 'number') closeQuietly(disk);
    throw diskError(err, input.limits ?? DEFAULT_BAKE_LIMITS);
  }
}

/**
 * Completes a result directory holding the disk (already checked against
 * the size the engine reported): writes config.json, then renames the
 * directory to `outputDir` (an older result there is replaced) or publishes
 * both files through the FileStore (publishToStore).
 */
export async function publishBake(resultDir: string, baked: BakedDisk, outputDir: string | BakeTarget, signal?: AbortSignal): Promise<BakeResult> {
  try {
    await writeDurably(path.join(resultDir, 'config.json'), `${JSON.stringify(baked.document, null, 2)}\n`);
    signal?.throwIfAborted();
    if (typeof outputDir !== 'string') {
      try {
        return await publishToStore(resultDir, baked, outputDir, signal);
      } catch (err) {
        throw storeError(err);
      }
    }
    const target = path.resolve(outputDir);
    await mkdir(path.dirname(target), { recursive: true });
    await replaceDir(resultDir, target);
    return {
      diskPath: path.join(target, writer.fileName),
      configPath: path.join(target, 'config.json'),
      diskSizeBytes: baked.sizeBytes,
      runConfig: baked.runConfig,
    };
  } catch (err) {
    throw diskError(err);
  }
}

/**
 * Publishes a finished bake: config.json last. config.json is the mark of a
 * whole bake: whoever finds it (the images API, fsck) may rely on the disk
 * beside it being complete and the size it names. So an older config.json
 * goes first (a rebake of the same digest), then the disk (a rename on the
 * data directory, an upload on S3, each atomic per file), then the new
 * config.json. A crash in between leaves a disk without config.json: the
 * bake is not done (its job is retried, which publishes again), and a disk
 * no image record names is an orphan the collector reclaims. The image
 * becomes ready only when the job finishes, after this returns.
 */
async function publishToStore(resultDir: string, baked: BakedDisk, target: BakeTarget, signal?: AbortSignal): Promise<BakeResult> {
  const diskKey = fileKeys.imageDisk(target.digest);
  const configKey = fileKeys.imageConfig(target.digest);
  await target.files.delete(configKey);
  const disk = await target.files.putFile(diskKey, path.join(resultDir, writer.fileName));
  if (disk.size !== baked.sizeBytes) throw new Error(`the published disk of ${target.digest} is ${disk.size} bytes, not the ${baked.sizeBytes} the bake made`);
  signal?.throwIfAborted();
  await target.files.putFile(configKey, path.join(resultDir, 'config.json'));
  await rm(resultDir, { recursive: true, force: true });
  return { diskPath: diskKey, configPath: configKey, diskSizeBytes: baked.sizeBytes, runConfig: baked.runConfig };
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

function parseConfig(bytes: Uint8Array): ImageConfig {
  try {
    return parseImageConfig(bytes);
  } catch (err) {
    if (err instanceof ImageConfigError) throw new BakeError('INVALID_IMAGE', err.message, { cause: err });
    throw err;
  }
}

function checkLayers(manifest: ImageManifest, config: ImageConfig): void {
  for (const layer of manifest.layers) {
    if (isNonDistributable(layer.mediaType)) {
      throw new BakeError('UNSUPPORTED_LAYER', `layer ${layer.digest} is a foreign (non-distributable) layer of media type ${layer.mediaType}; Kiln does not download layers from external URLs: push the image with that layer included as an ordinary layer`);
    }
    if (layerCompression(layer.mediaType) === null) {
      throw new BakeError('UNSUPPORTED_LAYER', `layer ${layer.digest} has media type ${layer.mediaType}, which is not a tar, tar+gzip or tar+zstd filesystem layer`);
    }
  }
  if (config.diffIds.length !== manifest.layers.length) {
    throw new BakeError('INVALID_IMAGE', `the image config lists ${config.diffIds.length} diff_ids but the manifest has ${manifest.layers.length} layers`);
  }
}

async function readLayers(manifest: ImageManifest, config: ImageConfig, input: BakeDiskInput, tree: RootfsTree, budget: BakeBudget): Promise<void> {
  const total = manifest.layers.reduce((sum, l) => sum + l.size, 0);
  let done = 0;
  input.onProgress?.(0, total);
  for (const [index, layer] of manifest.layers.entries()) {
    tree.beginLayer();
    const reader = new TarReader(tree);
    try {
      await readLayer(layer, {
        open: () => input.openBlob(layer.digest),
        diffId: config.diffIds[index],
        onBytes: (n) => {
          done += n;
          input.onProgress?.(done, total);
        },
        consume: (chunk) => {
          budget.addUnpackedBytes(chunk.length);
          reader.write(chunk);
        },
        finish: () => reader.end(),
        signal: input.signal,
      });
    } catch (err) {
      throw inLayer(err, layer.digest, index);
    }
  }
}

/** Gives errors from inside a layer the layer's name. */
function inLayer(err: unknown, digest: string, index: number): unknown {
  const where = `layer ${index + 1} (${digest})`;
  if (err instanceof TarFormatError) return new BakeError('LAYER_CORRUPT', `${where} is not a valid tar: ${err.message}`, { cause: err });
  if (err instanceof BakeError && (err.code === 'UNSAFE_ENTRY' || err.code === 'UNSUPPORTED_ENTRY' || err.code === 'LIMIT_EXCEEDED')) {
    return new BakeError(err.code, `${where}: ${err.message}`, { cause: err });
  }
  return err;
}

/** A failed publish to the FileStore, said without the endpoint or bucket an object-store error may carry. */
function storeError(err: unknown): unknown {
  if (err instanceof BakeError || (err instanceof Error && err.name === 'AbortError')) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return err; // a local file error: diskError says it
  const name = err instanceof Error && /^[A-Za-z]{1,64}$/.test(err.name) && err.name !== 'Error' ? ` (${err.name})` : '';
  return new BakeError('DISK_WRITE', `could not store the baked disk${name}; bake it again later (POST /api/v1/images/bake)`, { cause: err });
}

/** A failed write of the result (disk image, config.json), said without the host path the system error carries. */
function diskError(err: unknown, limits?: BakeLimits): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (err instanceof BakeError || typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) return err;
  // The sandbox caps the file size at the disk limit (RLIMIT_FSIZE); the budget normally refuses first.
  if (code === 'EFBIG' && limits) return limitExceeded('maxDiskBytes', limits, 'the disk image grew past the file size limit');
  return new BakeError('DISK_WRITE', `could not write the disk image: ${code}${code === 'ENOSPC' ? ' (the bake host is out of disk space)' : ''}`, { cause: err });
}

async function writeDurably(file: string, text: string): Promise<void> {
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Moves `temp` to `target`; an older result at `target` is replaced. */
async function replaceDir(temp: string, target: string): Promise<void> {
  try {
    await rename(temp, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EXDEV') throw new Error('the bake work directory and the output directory must be on one filesystem', { cause: err });
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    const old = `${temp}.old`;
    await rename(target, old);
    await rename(temp, target);
    await rm(old, { recursive: true, force: true });
  }
}
