// Test helpers: build image layers (tar via tar-stream, plus hand-written pax
// headers for binary xattr values, which tar-stream cannot encode), compress
// them, and write OCI image layouts that both Kiln and umoci can read.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createGzip, gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import type { ImageManifest } from '../oci/manifest.js';
import { OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST } from '../oci/media-types.js';
import type { DataSink } from './rootfs-tree.js';

export interface LayerEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, string | Buffer>;
  /** `name` and `linkname` are byte strings (one char per byte), written raw through pax records. */
  byteNames?: boolean;
}

export const TEST_MTIME = 1700000000;

/** An uncompressed layer tar holding `entries` in order. */
export async function layerTar(entries: LayerEntry[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const records: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(e.xattrs ?? {})) records[`SCHILY.xattr.${k}`] = Buffer.isBuffer(v) ? v : Buffer.from(v);
    if (e.byteNames) {
      records.path = Buffer.from(e.name, 'latin1');
      if (e.linkname) records.linkpath = Buffer.from(e.linkname, 'latin1');
    }
    if (Object.keys(records).length > 0) parts.push(paxHeader(records));
    parts.push(await packOne(e.byteNames ? { ...e, name: e.type === 'directory' ? 'placeholder/' : 'placeholder', linkname: e.linkname && 'placeholder' } : e));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

async function packOne(e: LayerEntry): Promise<Buffer> {
  const pack = tarStream.pack();
  const type = e.type ?? 'file';
  const content = e.content === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content);
  const header = {
    name: e.name,
    type,
    mode: e.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    mtime: new Date((e.mtime ?? TEST_MTIME) * 1000),
    linkname: e.linkname,
    devmajor: e.devmajor,
    devminor: e.devminor,
    size: type === 'file' ? content.length : 0,
  };
  if (type === 'file') pack.entry(header, content);
  else pack.entry(header);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  const all = Buffer.concat(chunks);
  return all.subarray(0, all.length - 1024); // drop the end-of-archive blocks
}

/** A pax extended header ('x') whose values are raw bytes. */
export function paxHeader(records: Record<string, Buffer>): Buffer {
  const body = Buffer.concat(Object.entries(records).map(([key, value]) => paxRecord(key, value)));
  const header = ustarHeader({ name: 'PaxHeaders/entry', typeflag: 'x', size: body.length });
  return Buffer.concat([header, body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let length = rest.length + 1;
  while (String(length).length + rest.length !== length) length++;
  return Buffer.concat([Buffer.from(String(length)), rest]);
}

/** A raw 512-byte ustar header, for header kinds tar-stream does not write. */
export function ustarHeader(h: { name: string; typeflag: string; size?: number; mode?: number; linkname?: string; sizeField?: Buffer }): Buffer {
  const block = Buffer.alloc(512);
  block.write(h.name, 0, 100, 'latin1');
  block.write(`${(h.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  if (h.sizeField) h.sizeField.copy(block, 124);
  else block.write(`${(h.size ?? 0).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write(`${TEST_MTIME.toString(8).padStart(11, '0')}\0`, 136, 'latin1');
  block.write(h.typeflag, 156, 'latin1');
  if (h.linkname) block.write(h.linkname, 157, 100, 'latin1');
  block.write('ustar\x0000', 257, 'latin1');
  block.write('        ', 148, 'latin1');
  let sum = 0;
  for (const b of block) sum += b;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

export type Compression = 'none' | 'gzip' | 'zstd';

export function compress(tar: Buffer, compression: Compression): Buffer {
  if (compression === 'none') return tar;
  if (compression === 'gzip') return gzipSync(tar);
  const result = spawnSync('zstd', ['-q', '-c', '-3'], { input: tar, maxBuffer: 1 << 30 });
  if (result.status !== 0) throw new Error(`zstd failed: ${result.stderr}`);
  return result.stdout;
}

const LAYER_TYPES: Record<Compression, string> = { none: OCI_LAYER, gzip: OCI_LAYER_GZIP, zstd: OCI_LAYER_ZSTD };

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface TestImage {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  configBytes: Buffer;
  /** Blob bytes by digest. */
  blobs: Map<string, Buffer>;
}

/** An image from uncompressed layer tars, each compressed as asked. */
export function makeImage(layers: Array<{ tar: Buffer; compression: Compression }>, config: Record<string, unknown> = {}): TestImage {
  return imageFromBlobs(layers.map(({ tar, compression }) => ({ blob: compress(tar, compression), mediaType: LAYER_TYPES[compression], diffId: sha256(tar) })), config);
}

/** An image from layer blobs as they are (compressed or not), in the order given; a blob may repeat. */
export function imageFromBlobs(layers: Array<{ blob: Buffer; mediaType: string; diffId: string }>, config: Record<string, unknown> = {}): TestImage {
  const blobs = new Map<string, Buffer>();
  const descriptors = layers.map(({ blob, mediaType }) => {
    const digest = sha256(blob);
    blobs.set(digest, blob);
    return { mediaType, digest, size: blob.length };
  });
  const configDoc = {
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'], ...config },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  };
  const configBytes = Buffer.from(JSON.stringify(configDoc));
  blobs.set(sha256(configBytes), configBytes);
  const manifest: ImageManifest = {
    kind: 'image',
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: sha256(configBytes), size: configBytes.length },
    layers: descriptors,
  };
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: manifest.config, layers: manifest.layers }));
  return { manifest, manifestBytes, configBytes, blobs };
}


/**
 * The tar of `count` empty files, `perDir` to a directory (d0/f0, d0/f1, …),
 * as a stream of 512 KiB chunks: a million entries without a million
 * header objects.
 */
export function* emptyFilesTar(count: number, perDir: number): Generator<Buffer> {
  const template = ustarHeader({ name: 'd0000000/f0000000', typeflag: '0', size: 0 });
  const perChunk = 1024;
  for (let first = 0; first < count; first += perChunk) {
    const n = Math.min(perChunk, count - first);
    const chunk = Buffer.alloc(n * 512);
    for (let i = 0; i < n; i++) {
      const index = first + i;
      const at = i * 512;
      template.copy(chunk, at);
      chunk.write(`d${String(Math.floor(index / perDir)).padStart(7, '0')}/f${String(index).padStart(7, '0')}`, at, 'latin1');
      chunk.write('        ', at + 148, 'latin1');
      let sum = 0;
      for (let b = at; b < at + 512; b++) sum += chunk[b];
      chunk.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
    }
    yield chunk;
  }
  yield Buffer.alloc(1024);
}

/** Gzips a stream of chunks into one buffer, hashing the uncompressed bytes on the way. */
export async function gzipStream(chunks: Iterable<Buffer>, level = 1): Promise<{ blob: Buffer; diffId: string }> {
  const hash = createHash('sha256');
  const gzip = createGzip({ level });
  const out: Buffer[] = [];
  gzip.on('data', (c: Buffer) => out.push(c));
  const done = new Promise((resolve, reject) => gzip.on('end', resolve).on('error', reject));
  for (const chunk of chunks) {
    hash.update(chunk);
    if (!gzip.write(chunk)) await new Promise((resolve) => gzip.once('drain', resolve));
  }
  gzip.end();
  await done;
  return { blob: Buffer.concat(out), diffId: `sha256:${hash.digest('hex')}` };
}

/** Writes `image` as an OCI image layout at `dir`, tagged `tag`. */
export async function writeOciLayout(dir: string, image: TestImage, tag: string): Promise<void> {
  const blobDir = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  for (const [digest, data] of image.blobs) await writeFile(path.join(blobDir, digest.slice('sha256:'.length)), data);
  const manifestDigest = sha256(image.manifestBytes);
  await writeFile(path.join(blobDir, manifestDigest.slice('sha256:'.length)), image.manifestBytes);
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: OCI_MANIFEST, digest: manifestDigest, size: image.manifestBytes.length, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
}

/** openBlob for an OCI layout directory. */
export function layoutBlobOpener(dir: string): (digest: string) => Promise<Readable> {
  return async (digest) => createReadStream(path.join(dir, 'blobs', ...digest.split(':')), { highWaterMark: 1 << 20 });
}

/**
 * A DataSink that keeps file contents in memory by dataRef and records what
 * is released, for tests of the tree model; xattr names containing "bad"
 * are refused.
 */
export class MemorySink implements DataSink {
  readonly contents = new Map<number, Buffer>();
  readonly released: string[] = [];
  private next = 0;
  private current = -1;
  private chunks: Buffer[] = [];

  beginFile(): number {
    this.current = this.next++;
    this.chunks = [];
    this.contents.set(this.current, Buffer.alloc(0));
    return this.current;
  }

  write(chunk: Buffer): void {
    this.chunks.push(Buffer.from(chunk));
  }

  endFile(): void {
    this.contents.set(this.current, Buffer.concat(this.chunks));
    this.current = -1;
  }

  release(ref: number): void {
    this.released.push(this.contents.get(ref)?.toString() ?? '?');
    this.contents.delete(ref);
  }

  xattrProblem(xattrs: ReadonlyMap<string, Buffer>): string | null {
    const bad = [...xattrs.keys()].find((k) => k.includes('bad'));
    return bad ? `has ${bad}` : null;
  }
}
