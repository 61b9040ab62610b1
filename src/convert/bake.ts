// bakeImage: one single-platform image in, `rootfs.ext4` + `config.json` out.
//
//   blobs ─► digest check ─► gunzip / zstd ─► diff_id check ─► tar reader
//         ─► RootfsTree (layer rules, containment) ─► staging tree (tmpfs if room)
//         ─► mkfs.ext4 -d ─► debugfs fixups ─► output dir (temp sibling, then rename)
import { mkdir, mkdtemp, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ImageConfigError, normalizeManifest, parseImageConfig, type ImageConfig, type RunConfig } from '../oci/image-config.js';
import type { ImageManifest } from '../oci/manifest.js';
import { isNonDistributable, layerCompression } from '../oci/media-types.js';
import { bakedConfig } from './baked-config.js';
import type { DiskWriter, StagedRootfs } from './disk-writer.js';
import { BakeError } from './errors.js';
import { Ext4Writer } from './ext4-writer.js';
import { readLayer } from './layer-stream.js';
import { RootfsTree } from './rootfs-tree.js';
import { createStagingDir, removeTree, type StagingDir } from './staging.js';
import { StagingSink } from './staging-sink.js';
import { TarFormatError, TarReader } from './tar-reader.js';

export interface BakeInput {
  /** A single-platform image manifest (Docker media types are fine). */
  manifest: ImageManifest;
  /** The image config blob. */
  configBytes: Uint8Array;
  /** Raw (compressed) bytes of a blob, streamed. */
  openBlob(digest: string): Promise<Readable>;
  /** Private scratch directory for this job; the caller deletes it. */
  workDir: string;
  /** Final result directory (images/<digest-hex>/); written as a temp sibling, then renamed. */
  outputDir: string;
  source?: { repo: string; tag?: string };
  /** Compressed layer bytes consumed so far, out of the total (starts over if tmpfs fills and the bake restarts on disk). */
  onProgress?(bytesDone: number, bytesTotal: number): void;
  signal?: AbortSignal;
  /**
   * Parent directory for the unpacked tree; default /dev/shm when it has room,
   * else workDir. A tmpfs that fills up mid-bake falls back to workDir.
   */
  stagingDir?: string;
  /** Disk format; default ext4. */
  diskWriter?: DiskWriter;
}

export interface BakeResult {
  diskPath: string;
  configPath: string;
  diskSizeBytes: number;
  runConfig: RunConfig;
}

/** Unpacked trees are estimated at this many times the compressed layers (gzip of typical rootfs ≈ 3×). */
const EXPANSION_ESTIMATE = 5;

export async function bakeImage(input: BakeInput): Promise<BakeResult> {
  input.signal?.throwIfAborted();
  const manifest = normalizeManifest(input.manifest);
  const config = parseConfig(input.configBytes);
  checkLayers(manifest, config);
  await mkdir(input.workDir, { recursive: true });

  const estimateBytes = manifest.layers.reduce((sum, l) => sum + l.size, 0) * EXPANSION_ESTIMATE;
  let staging: StagingDir = await createStagingDir(input.workDir, { estimateBytes, parent: input.stagingDir });
  try {
    let rootfs: StagedRootfs;
    try {
      rootfs = await unpackLayers(manifest, config, input, staging.path);
    } catch (err) {
      // The estimate was wrong and tmpfs filled up: start again on disk.
      if (!staging.onTmpfs || !isNoSpace(err)) throw err;
      await removeTree(staging.path);
      staging = await createStagingDir(input.workDir, { estimateBytes, parent: input.workDir });
      rootfs = await unpackLayers(manifest, config, input, staging.path);
    }
    return await writeOutput(manifest, config, rootfs, input);
  } finally {
    await removeTree(staging.path);
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

async function unpackLayers(manifest: ImageManifest, config: ImageConfig, input: BakeInput, dir: string): Promise<StagedRootfs> {
  const sink = new StagingSink(dir);
  const uid = process.getuid?.() ?? 0;
  const tree = new RootfsTree(sink, uid === 0 ? {} : { unprivileged: { uid, gid: process.getgid?.() ?? 0 } });
  const total = manifest.layers.reduce((sum, l) => sum + l.size, 0);
  let done = 0;
  input.onProgress?.(0, total);
  try {
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
          consume: (chunk) => reader.write(chunk),
          finish: () => reader.end(),
          signal: input.signal,
        });
      } catch (err) {
        throw inLayer(err, layer.digest, index);
      }
    }
    return { dir, root: tree.root, fixups: tree.finish() };
  } finally {
    sink.close();
  }
}

/** Gives errors from inside a layer the layer's name. */
function inLayer(err: unknown, digest: string, index: number): unknown {
  const where = `layer ${index + 1} (${digest})`;
  if (err instanceof TarFormatError) return new BakeError('LAYER_CORRUPT', `${where} is not a valid tar: ${err.message}`, { cause: err });
  if (err instanceof BakeError && err.code === 'UNSAFE_ENTRY') return new BakeError(err.code, `${where}: ${err.message}`, { cause: err });
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && code.startsWith('E') && !(err instanceof BakeError)) {
    return new BakeError('STAGING_IO', `${where}: could not write the unpacked tree: ${(err as Error).message}`, { cause: err });
  }
  return err;
}

function isNoSpace(err: unknown): boolean {
  for (let e = err as { code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === 'ENOSPC') return true;
  }
  return false;
}

async function writeOutput(manifest: ImageManifest, config: ImageConfig, rootfs: StagedRootfs, input: BakeInput): Promise<BakeResult> {
  const writer = input.diskWriter ?? new Ext4Writer();
  const outputDir = path.resolve(input.outputDir);
  await mkdir(path.dirname(outputDir), { recursive: true });
  const temp = await mkdtemp(path.join(path.dirname(outputDir), `.${path.basename(outputDir)}.tmp-`));
  try {
    const disk = await writer.write(rootfs, path.join(temp, writer.fileName), { scratchDir: input.workDir, signal: input.signal });
    const doc = bakedConfig({ manifest, config, source: input.source, disk: { file: writer.fileName, format: writer.format, sizeBytes: disk.sizeBytes } });
    await writeDurably(path.join(temp, 'config.json'), `${JSON.stringify(doc, null, 2)}\n`);
    input.signal?.throwIfAborted();
    await replaceDir(temp, outputDir);
    return {
      diskPath: path.join(outputDir, writer.fileName),
      configPath: path.join(outputDir, 'config.json'),
      diskSizeBytes: disk.sizeBytes,
      runConfig: config.run,
    };
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    throw err;
  }
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
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    const old = `${temp}.old`;
    await rename(target, old);
    await rename(temp, target);
    await rm(old, { recursive: true, force: true });
  }
}
