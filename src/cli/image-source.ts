// Reads an image to push from disk: an OCI image layout directory, or a
// `docker save` archive (legacy manifest.json form, or the OCI layout that
// newer Docker writes inside the tar).
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { digestOf, parseDigest } from '../oci/digest.js';
import { parseManifest } from '../oci/manifest.js';
import { DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST } from '../oci/media-types.js';

export interface BlobToPush {
  digest: string;
  size: number;
  open(): Readable;
}

export interface ManifestToPush {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface PushSource {
  blobs: BlobToPush[];
  /** In push order: children before the index that lists them; the last one gets the tag. */
  manifests: ManifestToPush[];
}

const REF_NAME = 'org.opencontainers.image.ref.name';

export async function readImageSource(input: string, tag: string, scratch: string): Promise<PushSource> {
  const info = await stat(input).catch(() => null);
  if (!info) throw new Error(`${input} does not exist`);
  if (info.isDirectory()) return readOciLayout(input, tag);
  await extractArchive(input, scratch);
  const hasIndex = await stat(path.join(scratch, 'index.json')).then(() => true, () => false);
  return hasIndex ? readOciLayout(scratch, tag) : readLegacyDockerArchive(scratch);
}

/** An OCI layout: picks the index.json entry named `tag` (or the only one) and everything below it. */
export async function readOciLayout(dir: string, tag: string): Promise<PushSource> {
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests?: { digest: string; mediaType: string; annotations?: Record<string, string> }[] };
  const entries = index.manifests ?? [];
  const chosen = entries.find((e) => e.annotations?.[REF_NAME] === tag) ?? (entries.length === 1 ? entries[0] : undefined);
  if (!chosen) {
    const names = entries.map((e) => e.annotations?.[REF_NAME]).filter(Boolean);
    throw new Error(`${dir} has ${entries.length} images; name one with the tag (${names.join(', ') || 'none are named'})`);
  }
  const source: PushSource = { blobs: [], manifests: [] };
  const seen = new Set<string>();
  const blobFile = (digest: string) => {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(dir, 'blobs', algorithm, hex);
  };
  const addBlob = async (digest: string) => {
    if (seen.has(digest)) return;
    seen.add(digest);
    const file = blobFile(digest);
    const size = (await stat(file)).size;
    source.blobs.push({ digest, size, open: () => createReadStream(file, { highWaterMark: 1 << 20 }) });
  };
  const addManifest = async (digest: string, mediaType: string): Promise<void> => {
    const bytes = await readFile(blobFile(digest));
    const manifest = parseManifest(bytes, mediaType);
    if (manifest.kind === 'index') {
      for (const child of manifest.manifests) await addManifest(child.digest, child.mediaType);
    } else {
      await addBlob(manifest.config.digest);
      for (const layer of manifest.layers) await addBlob(layer.digest);
    }
    source.manifests.push({ digest, mediaType: manifest.mediaType, bytes });
  };
  await addManifest(chosen.digest, chosen.mediaType);
  return source;
}

/** `docker save` before Docker 25: manifest.json naming a config file and uncompressed layer tars. */
async function readLegacyDockerArchive(dir: string): Promise<PushSource> {
  const entries = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { Config: string; Layers: string[] }[];
  const entry = entries[0];
  if (!entry || entries.length !== 1) throw new Error(`docker archive must hold exactly one image, it holds ${entries.length}`);
  const describe = async (rel: string) => {
    const file = safeJoin(dir, rel);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { digest: `sha256:${hash.digest('hex')}`, size, open: () => createReadStream(file, { highWaterMark: 1 << 20 }) };
  };
  const config = await describe(entry.Config);
  const layers = [];
  for (const rel of entry.Layers) layers.push(await describe(rel));
  const manifest = {
    schemaVersion: 2,
    mediaType: DOCKER_MANIFEST,
    config: { mediaType: DOCKER_CONFIG, size: config.size, digest: config.digest },
    layers: layers.map((l) => ({ mediaType: DOCKER_LAYER, size: l.size, digest: l.digest })),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { blobs: [config, ...layers], manifests: [{ digest: digestOf(bytes), mediaType: DOCKER_MANIFEST, bytes }] };
}

/** Unpacks a (possibly gzipped) archive of regular files and directories into `dir`. */
async function extractArchive(file: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const head = await readMagic(file);
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const done = (err?: unknown) => (err ? extract.destroy(err as Error) : next());
    if (header.type === 'directory') {
      stream.resume();
      mkdir(safeJoin(dir, header.name), { recursive: true }).then(() => done(), done);
    } else if (header.type === 'file') {
      const target = safeJoin(dir, header.name);
      mkdir(path.dirname(target), { recursive: true })
        .then(() => pipeline(stream, createWriteStream(target)))
        .then(() => done(), done);
    } else {
      // Links and devices have no place in an image archive's metadata tree.
      stream.resume();
      next();
    }
  });
  const input = createReadStream(file);
  await (head[0] === 0x1f && head[1] === 0x8b ? pipeline(input, createGunzip(), extract) : pipeline(input, extract));
}

async function readMagic(file: string): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

function safeJoin(root: string, rel: string): string {
  const target = path.resolve(root, rel);
  if (target !== root && !target.startsWith(root + path.sep)) throw new Error(`archive entry ${rel} points outside the archive`);
  return target;
}
