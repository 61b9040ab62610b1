// The write side of one chunk of an S3 upload: every byte is hashed as it
// arrives and copied into a part-sized buffer; each full buffer becomes an
// UploadPart while the next one fills (a few parts in flight at most). The
// bytes left when the body ends are handed back to the caller, who stores
// them as a part (5 MiB or more) or as the session's staged tail.
//
// A staged tail from the previous chunk is loaded into the first buffer
// before the new bytes, so it joins the first new part. Its bytes were
// hashed when they arrived and are not hashed again.
import { Writable } from 'node:stream';
import { MAX_PARTS } from './config.js';
import type { PartBuffers } from './part-buffers.js';
import type { UploadPart } from './upload-state.js';

export interface PartSinkOptions {
  buffers: PartBuffers;
  /** Parts being stored at once while the next one fills. */
  maxInFlight: number;
  firstPartNumber: number;
  /** Loads the staged tail into the start of a buffer and returns its length; null when there is none. */
  loadPrefix: ((into: Buffer) => Promise<number>) | null;
  hash(chunk: Buffer): void;
  /** Stores one part; resolves with its ETag. */
  uploadPart(partNumber: number, body: Buffer): Promise<string>;
}

export class PartSink extends Writable {
  /** Body bytes received (the staged tail not counted). */
  received = 0;
  private readonly parts: UploadPart[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private buffer: Buffer | null = null;
  private fill = 0;
  private nextPart: number;
  private prefixLoaded = false;
  private failure: unknown = null;

  constructor(private readonly options: PartSinkOptions) {
    super({ highWaterMark: 1024 * 1024 });
    this.nextPart = options.firstPartNumber;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.take(chunk).then(() => done(), done);
  }

  /** The number the next part stored gets (the remainder's, if the caller stores it as a part). */
  get partNumber(): number {
    return this.nextPart;
  }

  /**
   * After the body ended: waits for the parts in flight and returns them
   * (ascending) with the bytes left over (a view of a buffer this sink still
   * holds: use it before `dispose`). Only for a body that brought bytes: the
   * staged tail is loaded with the first of them.
   */
  async finish(): Promise<{ parts: UploadPart[]; rest: Buffer }> {
    await this.settle();
    if (this.failure) throw this.failure;
    return { parts: [...this.parts].sort((a, b) => a.n - b.n), rest: this.buffer ? this.buffer.subarray(0, this.fill) : Buffer.alloc(0) };
  }

  /** Stores `rest` (from `finish`) as the next part. */
  async storeRestAsPart(rest: Buffer): Promise<UploadPart> {
    const n = this.takePartNumber();
    const etag = await this.options.uploadPart(n, rest);
    return { n, etag, size: rest.length };
  }

  /** Waits for every part in flight and gives every buffer back; safe to call more than once and after errors. */
  async dispose(): Promise<void> {
    await this.settle();
    if (this.buffer) {
      this.options.buffers.release(this.buffer);
      this.buffer = null;
      this.fill = 0;
    }
  }

  private async take(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.options.hash(chunk);
    this.received += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      if (!this.buffer) await this.newBuffer();
      const buffer = this.buffer!;
      const n = Math.min(chunk.length - offset, buffer.length - this.fill);
      chunk.copy(buffer, this.fill, offset, offset + n);
      this.fill += n;
      offset += n;
      if (this.fill === buffer.length) await this.sendFullBuffer();
    }
  }

  private async newBuffer(): Promise<void> {
    this.buffer = await this.options.buffers.acquire();
    this.fill = 0;
    await this.loadPrefixOnce();
  }

  private async loadPrefixOnce(): Promise<void> {
    if (this.prefixLoaded || !this.options.loadPrefix) return;
    this.prefixLoaded = true;
    if (!this.buffer) this.buffer = await this.options.buffers.acquire();
    this.fill = await this.options.loadPrefix(this.buffer);
  }

  private async sendFullBuffer(): Promise<void> {
    const buffer = this.buffer!;
    this.buffer = null;
    this.fill = 0;
    let n: number;
    try {
      n = this.takePartNumber();
      while (this.inFlight.size >= this.options.maxInFlight) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure;
    } catch (err) {
      this.options.buffers.release(buffer);
      throw err;
    }
    const sent: Promise<void> = this.options
      .uploadPart(n, buffer)
      .then(
        (etag) => void this.parts.push({ n, etag, size: buffer.length }),
        (err: unknown) => void (this.failure ??= err),
      )
      .finally(() => {
        this.inFlight.delete(sent);
        this.options.buffers.release(buffer);
      });
    this.inFlight.add(sent);
  }

  private takePartNumber(): number {
    const n = this.nextPart;
    if (n > MAX_PARTS) {
      throw new Error(`the upload needs more than S3's ${MAX_PARTS} parts; raise KILN_S3_PART_BYTES (or send larger chunks)`);
    }
    this.nextPart++;
    return n;
  }

  private async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
  }
}
