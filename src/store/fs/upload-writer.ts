// The write side of an upload: one Writable that hashes each chunk as it
// arrives, writes the chunks in batches at their offset in the upload file
// and, for durable stores, keeps the file's dirty pages flowing to disk while
// the body is still arriving. The fsync that must happen before a blob is
// acknowledged then has little left to do, instead of writing the whole blob
// while the client waits.
import type { Hash } from 'node:crypto';
import { fdatasync, writev } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { bodyBytesReceived } from './young-gc.js';

/** Bytes the stream buffers while a write is in flight (then handed over in one _writev). */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Smallest write issued, except the last one. */
const WRITE_MIN_BYTES = 1024 * 1024;
/** Unsynced bytes that start a background fdatasync. */
const FLUSH_EVERY_BYTES = 8 * 1024 * 1024;

export interface UploadWriterOptions {
  /** The upload file, opened for writing; the writer closes it when it is destroyed. */
  file: FileHandle;
  /** Offset of the first byte written. */
  position: number;
  /** Running hash of the upload; every byte received is fed to it, in order. */
  hash: Hash;
  /** Flush to disk in the background while writing. */
  flushBehind: boolean;
}

export class UploadWriter extends Writable {
  /** Bytes written by this writer. */
  written = 0;
  /** Resolves once the file is closed, after the last write and flush returned (also after an error). */
  readonly fileClosed: Promise<void>;
  private markClosed!: () => void;
  private position: number;
  private inFlight: Promise<void> | null = null;
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;
  private readonly fd: number;
  private readonly flusher: FlushBehind | null;

  constructor(private readonly options: UploadWriterOptions) {
    super({ highWaterMark: BATCH_BYTES });
    this.fileClosed = new Promise((resolve) => (this.markClosed = resolve));
    this.fd = options.file.fd;
    this.position = options.position;
    this.flusher = options.flushBehind ? new FlushBehind(this.fd) : null;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.take([chunk], done);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, done: (err?: Error | null) => void): void {
    this.take(
      chunks.map((c) => c.chunk),
      done,
    );
  }

  /** Writes what is still gathered, then waits for a background flush and reports its failure: those bytes are not safe. */
  override _final(done: (err?: Error | null) => void): void {
    this.writeGathered((err) => {
      if (err || !this.flusher) return done(err);
      this.flusher.settled().then(() => done(), done);
    });
  }

  /** Closes the file only when no write or flush still uses its descriptor: the number could be reused. */
  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    Promise.all([this.inFlight, this.flusher?.idle()])
      .then(() => this.options.file.close())
      .then(
        () => done(err),
        (closeErr: Error) => done(err ?? closeErr),
      )
      .finally(this.markClosed);
  }

  /**
   * Hashes chunks as they arrive but writes them in batches of at least
   * WRITE_MIN_BYTES: one thread-pool round trip per 64 KiB socket read costs
   * more CPU than the copy it performs.
   */
  private take(buffers: Buffer[], done: (err?: Error | null) => void): void {
    for (const b of buffers) {
      this.options.hash.update(b);
      this.gathered.push(b);
      this.gatheredBytes += b.length;
    }
    if (this.gatheredBytes < WRITE_MIN_BYTES) return done();
    // Before the write is issued: the chunks written by the previous one are garbage by now.
    bodyBytesReceived(this.gatheredBytes);
    this.writeGathered(done);
  }

  private writeGathered(done: (err?: Error | null) => void): void {
    const buffers = this.gathered;
    this.gathered = [];
    this.gatheredBytes = 0;
    if (buffers.length === 0) return done();
    this.writeAll(buffers, done);
  }

  private writeAll(buffers: Buffer[], callback: (err?: Error | null) => void): void {
    let finished!: () => void;
    this.inFlight = new Promise((resolve) => (finished = resolve));
    const done = (err?: Error | null) => {
      this.inFlight = null;
      finished();
      callback(err);
    };
    const next = (remaining: Buffer[]): void => {
      writev(this.fd, remaining, this.position, (err, bytes) => {
        if (err) return done(err);
        this.position += bytes;
        this.written += bytes;
        this.flusher?.wrote(bytes);
        const rest = dropBytes(remaining, bytes);
        if (rest.length > 0) return next(rest); // a short write (rare on files): go on from where it stopped
        done();
      });
    };
    next(buffers);
  }
}

/** `buffers` without their first `count` bytes. */
function dropBytes(buffers: Buffer[], count: number): Buffer[] {
  let skip = count;
  const rest: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    rest.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return rest;
}

/**
 * One fdatasync at a time, started whenever enough unsynced bytes have piled
 * up. The first failure is kept: a later fsync through another descriptor
 * may not report it again.
 */
class FlushBehind {
  private unsynced = 0;
  private running: Promise<void> | null = null;
  private failure: Error | null = null;

  constructor(private readonly fd: number) {}

  wrote(bytes: number): void {
    this.unsynced += bytes;
    if (!this.running && this.unsynced >= FLUSH_EVERY_BYTES) this.start();
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async settled(): Promise<void> {
    await this.idle();
    if (this.failure) throw this.failure;
  }

  private start(): void {
    this.unsynced = 0;
    this.running = new Promise<void>((resolve) => {
      fdatasync(this.fd, (err) => {
        if (err) this.failure ??= err;
        this.running = null;
        if (!this.failure && this.unsynced >= FLUSH_EVERY_BYTES) this.start();
        resolve();
      });
    });
  }
}
