// The disk image file: positioned writes, combined while they are
// contiguous (each file's data is padded to its block end, so the data of a
// layer's small files goes out in large writes), hole punching and sizing.
//
// Synchronous calls on purpose: the writer is fed one decompressed chunk at
// a time from the tar reader, and decompression runs on the libuv pool in
// the meantime; a promise round trip per write costs more than the write.
import fs from 'node:fs';
import { trimSync } from 'fs-native-extensions';

const COMBINE_BYTES = 1024 * 1024;
const { O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

export class BlockFile {
  private readonly pending = Buffer.allocUnsafe(COMBINE_BYTES);
  private pendingAt = 0;
  private pendingLength = 0;

  private constructor(private fd: number) {}

  /** A new, empty file (never an existing one, never through a symlink). */
  static create(path: string): BlockFile {
    return new BlockFile(fs.openSync(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644));
  }

  /** An empty file someone else opened read-write; closing the BlockFile closes `fd`. */
  static adopt(fd: number): BlockFile {
    if (fs.fstatSync(fd).size !== 0) throw new Error('the disk file handed to the writer is not empty');
    return new BlockFile(fd);
  }

  write(position: number, data: Uint8Array): void {
    if (this.pendingLength > 0 && position === this.pendingAt + this.pendingLength && this.pendingLength + data.length <= COMBINE_BYTES) {
      this.pending.set(data, this.pendingLength);
      this.pendingLength += data.length;
      return;
    }
    this.flush();
    if (data.length >= COMBINE_BYTES / 2) {
      this.writeAll(data, position);
      return;
    }
    this.pending.set(data, 0);
    this.pendingAt = position;
    this.pendingLength = data.length;
  }

  flush(): void {
    if (this.pendingLength === 0) return;
    this.writeAll(this.pending.subarray(0, this.pendingLength), this.pendingAt);
    this.pendingLength = 0;
  }

  /** Frees the file's storage for a byte range; it reads back as zeros. */
  punch(position: number, length: number): void {
    this.flush();
    trimSync(this.fd, position, length);
  }

  setSize(bytes: number): void {
    this.flush();
    fs.ftruncateSync(this.fd, bytes);
  }

  sync(): void {
    this.flush();
    fs.fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    fs.closeSync(fd);
  }

  private writeAll(data: Uint8Array, position: number): void {
    let done = 0;
    while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done, position + done);
  }
}
