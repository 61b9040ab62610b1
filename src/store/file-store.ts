// The other bytes Kiln keeps, besides blobs: baked disks and their
// config.json, build sources, logs and results. A FileStore is a flat area
// of named files; keys are '/'-separated relative names made by `fileKeys`
// (below), so only store/ knows the layout. Backends: the data directory
// (store/fs/file-store.ts) and an S3 bucket (store/s3/file-store.ts), one
// contract suite for both (test/contracts/file-store.ts).
//
// Writes are whole-file and atomic: a reader sees the old file, the new one
// or none, never part of one. Big files are written from a stream or from a
// finished local file (a disk a worker staged on its scratch disk), never
// held in memory.
import { Transform, type Readable } from 'node:stream';
import { parseDigest } from '../oci/digest.js';
import type { ByteRange } from './types.js';

export interface FileInfo {
  key: string;
  size: number;
  modifiedAt: Date;
}

export interface FileWriteOptions {
  /** Refuse a stream longer than this (FileTooLargeError naming `limitName`). */
  maxBytes?: number;
  /** The setting that sets `maxBytes`, for the error message. */
  limitName?: string;
}

export interface FileStore {
  init(): Promise<void>;
  stat(key: string): Promise<FileInfo | null>;
  /** The file or a byte range of it (inclusive); null when absent. */
  open(key: string, range?: ByteRange): Promise<Readable | null>;
  /** A small file whole (config.json, result.json); null when absent. */
  readBytes(key: string): Promise<Buffer | null>;
  /** Writes a small file whole. */
  writeBytes(key: string, data: Uint8Array): Promise<FileInfo>;
  /** Streams `body` into `key`; the file appears once the body has ended and is stored. */
  write(key: string, body: Readable, options?: FileWriteOptions): Promise<FileInfo>;
  /** Publishes a finished local file at `key` and removes the local copy (rename when it can, else upload). */
  putFile(key: string, localFile: string): Promise<FileInfo>;
  delete(key: string): Promise<boolean>;
  /** Deletes every file under `prefix` (which ends in '/'); returns how many went. */
  deletePrefix(prefix: string): Promise<number>;
  /** Files under `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<FileInfo>;
  /**
   * Removes what writes under `prefix` left when their process died before
   * they finished (temporary files on the data directory, multipart uploads
   * on S3: never visible, but they take space), if begun before `before`.
   * Returns how many went. A write still running that began before `before`
   * fails (nothing becomes visible), so `before` must be well in the past.
   */
  removeUnfinished(prefix: string, before: Date): Promise<number>;
  /**
   * A short-lived URL the client can download the file from directly (ranges
   * included), or null when this store serves its files itself. `filename`
   * names the download (Content-Disposition).
   */
  redirectUrl(key: string, options?: { filename?: string }): Promise<string | null>;
  /**
   * Where `key` lives on this machine's disk, for a store whose files are
   * local files (the data directory); absent on stores without local paths
   * (S3). A build's running log is appended there in place.
   */
  localPath?(key: string): string;
}

/** A streamed write went past its limit; nothing was stored. */
export class FileTooLargeError extends Error {
  constructor(readonly limit: number, limitName: string | undefined) {
    super(`the file is larger than ${limit} bytes${limitName ? ` (${limitName})` : ''}`);
    this.name = 'FileTooLargeError';
  }
}

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

/**
 * Checks a key (or, with `prefix`, a prefix ending in '/'): relative, no
 * empty, '.' or '..' segment, no segment starting with '.' (the filesystem
 * store's temporary files do). Returns it unchanged.
 */
export function checkFileKey(key: string, prefix = false): string {
  const body = prefix ? key.replace(/\/$/, '') : key;
  if ((prefix && !key.endsWith('/')) || !body.split('/').every((s) => SEGMENT.test(s))) {
    throw new Error(`invalid file key ${JSON.stringify(key.slice(0, 200))}`);
  }
  return key;
}

/** The keys of every file Kiln keeps outside the blob store; the same relative paths as in the data directory. */
export const fileKeys = {
  /** `images/<hex>/` for sha256 digests, `images/sha512-<hex>/` otherwise. */
  imageDir(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return `images/${algorithm === 'sha256' ? hex : `${algorithm}-${hex}`}/`;
  },
  imageDisk(digest: string): string {
    return `${fileKeys.imageDir(digest)}rootfs.ext4`;
  },
  imageConfig(digest: string): string {
    return `${fileKeys.imageDir(digest)}config.json`;
  },
  /** The image digest a key below `images/` belongs to (`images/<hex>/…`), or null for any other key. */
  imageDigestOf(key: string): string | null {
    const m = /^images\/(?:(sha512)-)?([0-9a-f]+)\//.exec(key);
    if (!m) return null;
    const algorithm = m[1] ?? 'sha256';
    if (m[2]!.length !== (algorithm === 'sha256' ? 64 : 128)) return null;
    return `${algorithm}:${m[2]}`;
  },
  buildDir(id: string): string {
    return checkFileKey(`builds/${id}/`, true);
  },
  buildSource(id: string): string {
    return `${fileKeys.buildDir(id)}source.tar.gz`;
  },
  buildLog(id: string): string {
    return `${fileKeys.buildDir(id)}build.log`;
  },
  buildResult(id: string): string {
    return `${fileKeys.buildDir(id)}result.json`;
  },
};

/** Counts bytes through and fails once there are more than `maxBytes`. */
export function limitBytes(options: FileWriteOptions): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (options.maxBytes !== undefined && seen > options.maxBytes) return done(new FileTooLargeError(options.maxBytes, options.limitName));
      done(null, chunk);
    },
  });
}
