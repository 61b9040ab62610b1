// Content-addressed blob storage on the local filesystem.
//
// Every write lands in uploads/ first, is hashed while it is written, fsynced,
// verified and only then renamed into blobs/. A crash at any point leaves
// either no blob or a complete, verified one; stray upload files are swept
// by the upload janitor.
import { randomUUID, type Hash } from 'node:crypto';
import { createReadStream, open as openCallback } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHasher, type DigestAlgorithm, type ParsedDigest } from '../../oci/digest.js';
import type { DataDir } from '../data-dir.js';
import {
  DigestMismatchError,
  RangeMismatchError,
  SizeMismatchError,
  StorageFullError,
  UploadBusyError,
  UploadNotFoundError,
  isNoSpace,
} from '../errors.js';
import { copyFileRange } from './file-copy.js';
import { UploadWriter } from './upload-writer.js';
import type { AppendOptions, BlobInfo, BlobSource, BlobStore, ByteRange } from '../types.js';

/** Incremental hash of an upload, valid while the process that wrote it lives. */
interface UploadState {
  size: number;
  /** sha256 of bytes 0..size, or null when it must be recomputed from the file (after a restart or a failed write). */
  hash: Hash | null;
}

const READ_BUFFER = 1024 * 1024;
const STREAMING_ALGORITHM: DigestAlgorithm = 'sha256';

export interface FsBlobStoreOptions {
  /** fsync blobs and their directories before acknowledging; off only for throwaway stores. */
  durable?: boolean;
}

export class FsBlobStore implements BlobStore {
  private readonly sessions = new Map<string, UploadState>();
  private readonly busy = new Set<string>();
  private readonly durable: boolean;

  constructor(private readonly dirs: DataDir, options: FsBlobStoreOptions = {}) {
    this.durable = options.durable ?? true;
  }

  async init(): Promise<void> {
    await mkdir(this.dirs.blobsRoot, { recursive: true });
    await mkdir(this.dirs.uploadsRoot, { recursive: true });
  }

  async stat(digest: string): Promise<BlobInfo | null> {
    try {
      const s = await stat(this.dirs.blobPath(digest));
      return { digest, size: s.size };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async open(digest: string, range?: ByteRange): Promise<Readable | null> {
    const fd = await this.openBlobFd(digest);
    if (fd === null) return null;
    // A plain fd stream: measurably faster than FileHandle streams on large blobs (fewer promise hops per chunk).
    return createReadStream(this.dirs.blobPath(digest), { fd, start: range?.start, end: range?.end, highWaterMark: READ_BUFFER });
  }

  async openSource(digest: string, range: ByteRange): Promise<BlobSource | null> {
    const fd = await this.openBlobFd(digest);
    if (fd === null) return null;
    return { copyTo: (dest) => copyFileRange(fd, range.start, range.end + 1, dest) };
  }

  async readBytes(digest: string): Promise<Buffer | null> {
    try {
      return await readFile(this.dirs.blobPath(digest));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async putBytes(data: Uint8Array, expected: ParsedDigest): Promise<BlobInfo> {
    const actual = createHasher(expected.algorithm).update(data).digest('hex');
    if (actual !== expected.hex) throw new DigestMismatchError(expected.digest, `${expected.algorithm}:${actual}`);
    const existing = await this.stat(expected.digest);
    if (existing) return existing;
    const temp = this.dirs.uploadPath(`put-${randomUUID()}`);
    try {
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(data);
        if (this.durable) await handle.sync();
      } finally {
        await handle.close();
      }
      await this.moveIntoPlace(temp, expected.digest);
    } catch (err) {
      await rm(temp, { force: true });
      throw wrapStorageError(err);
    }
    return { digest: expected.digest, size: data.length };
  }

  async delete(digest: string): Promise<boolean> {
    try {
      await unlink(this.dirs.blobPath(digest));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    for (const algorithm of await readdirOrEmpty(this.dirs.blobsRoot)) {
      const algDir = path.join(this.dirs.blobsRoot, algorithm);
      for (const fan of await readdirOrEmpty(algDir)) {
        const fanDir = path.join(algDir, fan);
        for (const hex of await readdirOrEmpty(fanDir)) {
          const s = await stat(path.join(fanDir, hex)).catch(() => null);
          if (s?.isFile()) yield { digest: `${algorithm}:${hex}`, size: s.size };
        }
      }
    }
  }

  async createUpload(id: string): Promise<void> {
    const handle = await open(this.dirs.uploadPath(id), 'wx').catch((err) => {
      throw wrapStorageError(err);
    });
    await handle.close();
    this.sessions.set(id, { size: 0, hash: createHasher(STREAMING_ALGORITHM) });
  }

  async uploadSize(id: string): Promise<number | null> {
    const state = this.sessions.get(id);
    if (state) return state.size;
    try {
      return (await stat(this.dirs.uploadPath(id))).size;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async appendUpload(id: string, body: Readable, options: AppendOptions = {}): Promise<number> {
    return this.exclusive(id, async () => {
      const state = await this.loadState(id);
      if (options.expectedOffset !== undefined && options.expectedOffset !== state.size) {
        throw new RangeMismatchError(state.size, options.expectedOffset);
      }
      const start = state.size;
      const hash = state.hash!; // loadState rebuilt it if it was lost
      const file = await open(this.dirs.uploadPath(id), 'r+').catch((err) => {
        throw wrapStorageError(err);
      });
      const out = new UploadWriter({ file, position: start, hash, flushBehind: this.durable });
      try {
        await pipeline(body, out);
      } catch (err) {
        // Keep whatever reached the disk (the client may resume from there) but
        // forget the running hash: it may include bytes that were not written.
        this.sessions.delete(id);
        throw wrapStorageError(err);
      } finally {
        await out.fileClosed;
      }
      const written = out.written;
      state.size = start + written;
      if (options.expectedLength !== undefined && written !== options.expectedLength) {
        state.hash = null;
        throw new SizeMismatchError(`received ${written} bytes but Content-Length said ${options.expectedLength}`);
      }
      return state.size;
    });
  }

  async commitUpload(id: string, expected: ParsedDigest): Promise<BlobInfo> {
    return this.exclusive(id, async () => {
      const file = this.dirs.uploadPath(id);
      const state = await this.loadState(id);
      const actualHex =
        state.hash && expected.algorithm === STREAMING_ALGORITHM
          ? state.hash.copy().digest('hex')
          : (await hashFile(file, createHasher(expected.algorithm))).digest('hex');
      if (actualHex !== expected.hex) {
        throw new DigestMismatchError(expected.digest, `${expected.algorithm}:${actualHex}`);
      }
      try {
        if (this.durable) await fsyncFile(file);
        await this.moveIntoPlace(file, expected.digest);
      } catch (err) {
        throw wrapStorageError(err);
      }
      this.sessions.delete(id);
      return { digest: expected.digest, size: state.size };
    });
  }

  async abortUpload(id: string): Promise<void> {
    this.sessions.delete(id);
    await rm(this.dirs.uploadPath(id), { force: true });
  }

  async *listUploads(): AsyncIterable<{ id: string; modifiedAt: Date }> {
    for (const name of await readdirOrEmpty(this.dirs.uploadsRoot)) {
      const s = await stat(path.join(this.dirs.uploadsRoot, name)).catch(() => null);
      if (s) yield { id: name, modifiedAt: s.mtime };
    }
  }

  private async openBlobFd(digest: string): Promise<number | null> {
    try {
      return await openFd(this.dirs.blobPath(digest));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Runs `fn` while no other request touches the same upload. */
  private async exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy.has(id)) throw new UploadBusyError(id);
    this.busy.add(id);
    try {
      return await fn();
    } finally {
      this.busy.delete(id);
    }
  }

  private async loadState(id: string): Promise<UploadState> {
    let state = this.sessions.get(id);
    if (!state) {
      const size = await this.uploadSize(id);
      if (size === null) throw new UploadNotFoundError(id);
      state = { size, hash: null };
      this.sessions.set(id, state);
    }
    if (!state.hash) {
      // Rebuild the running hash from what is on disk so the session can go on streaming.
      state.hash = await hashFile(this.dirs.uploadPath(id), createHasher(STREAMING_ALGORITHM));
    }
    return state;
  }

  /** Renames a verified file to its content address. An existing blob is identical by definition. */
  private async moveIntoPlace(file: string, digest: string): Promise<void> {
    const target = this.dirs.blobPath(digest);
    const dir = path.dirname(target);
    await mkdir(dir, { recursive: true });
    await rename(file, target);
    if (this.durable) await fsyncDir(dir);
  }
}

const openForReading = promisify(openCallback);
const openFd = (file: string): Promise<number> => openForReading(file, 'r');

/** Feeds a whole file into `hash` and returns it. */
async function hashFile(file: string, hash: Hash): Promise<Hash> {
  for await (const chunk of createReadStream(file, { highWaterMark: READ_BUFFER })) hash.update(chunk as Buffer);
  return hash;
}

async function fsyncFile(file: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function wrapStorageError(err: unknown): unknown {
  return isNoSpace(err) ? new StorageFullError(err) : err;
}
