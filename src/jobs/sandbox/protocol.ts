// What the worker and its sandboxed bake process say to each other. Pure.
//
//   worker → child, stdin:  one JSON line (the job), then blob frames:
//                           [u32 stream id][u32 length][bytes], length 0 ends a stream
//   child → worker, stdout: JSON lines: open (a layer's bytes, by index), progress,
//                           result or error
//   disk:                   the file the worker created, as fd 3
//
// The child asks for layers by their index in the manifest and never sees a
// path; the worker serves each request as a new stream, in order.
import type { BakeErrorCode } from '../../convert/errors.js';
import type { BakeLimits } from '../../convert/limits.js';
import type { ImageManifest } from '../../oci/manifest.js';

export interface JobHeader {
  manifest: ImageManifest;
  /** The image config blob, base64. */
  config: string;
  limits: BakeLimits;
}

export type ChildMessage =
  | { type: 'open'; stream: number; layer: number }
  | { type: 'progress'; done: number; total: number }
  | { type: 'result'; sizeBytes: number; document: Record<string, unknown> }
  | { type: 'error'; code: BakeErrorCode | null; message: string }
  | { type: 'probe'; report: Record<string, unknown> };

export const FRAME_HEADER_BYTES = 8;
/** Largest frame payload; blob chunks above it are split. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** Longest line either side accepts: a job (a 4 MiB manifest and a 4 MiB config, base64) or a result. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

export function frameHeader(stream: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(stream, 0);
  header.writeUInt32BE(length, 4);
  return header;
}

/**
 * Splits a byte stream into frames, incrementally: push chunks, receive
 * (stream, payload) calls; an empty payload ends that stream.
 */
export class FrameParser {
  private header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private stream = 0;
  private remaining = -1;

  constructor(private readonly onFrame: (stream: number, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.remaining < 0) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - at);
        chunk.copy(this.header, this.headerFill, at, at + take);
        this.headerFill += take;
        at += take;
        if (this.headerFill < FRAME_HEADER_BYTES) return;
        this.headerFill = 0;
        this.stream = this.header.readUInt32BE(0);
        const length = this.header.readUInt32BE(4);
        if (length > MAX_FRAME_BYTES) throw new Error(`frame of ${length} bytes; at most ${MAX_FRAME_BYTES}`);
        if (length === 0) {
          this.onFrame(this.stream, Buffer.alloc(0));
          continue;
        }
        this.remaining = length;
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - at);
      this.onFrame(this.stream, chunk.subarray(at, at + take));
      at += take;
      this.remaining -= take;
      if (this.remaining === 0) this.remaining = -1;
    }
  }
}

/** Splits a byte stream into lines of at most `max` bytes; a longer line is an error. */
export class LineSplitter {
  private parts: Buffer[] = [];
  private length = 0;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly max = MAX_LINE_BYTES,
  ) {}

  /** Splits `chunk`; with `once`, stops at the first line it completes and returns the bytes after it (null when none completed). */
  push(chunk: Buffer, once = false): Buffer | null {
    let at = 0;
    while (at < chunk.length) {
      const nl = chunk.indexOf(0x0a, at);
      const end = nl < 0 ? chunk.length : nl;
      this.length += end - at;
      if (this.length > this.max) throw new Error(`a line longer than ${this.max} bytes`);
      this.parts.push(chunk.subarray(at, end));
      if (nl < 0) return null;
      const line = Buffer.concat(this.parts).toString('utf8');
      this.parts = [];
      this.length = 0;
      at = nl + 1;
      this.onLine(line);
      if (once) return chunk.subarray(at);
    }
    return null;
  }
}
