// The memory uploads may hold: a fixed number of part-sized buffers shared by
// every upload of a store. An upload takes a whole buffer before it fills a
// part (so every part it starts can be finished: no two uploads can wait on
// each other for the last bytes of a budget) and gives it back once the part
// is stored. N concurrent uploads therefore hold at most
// KILN_S3_UPLOAD_MEMORY_BYTES between them, never N × their parts.

export class PartBuffers {
  private readonly idle: Buffer[] = [];
  private readonly waiting: ((buffer: Buffer) => void)[] = [];
  private allocated = 0;

  constructor(
    readonly partBytes: number,
    readonly maxBuffers: number,
  ) {
    if (maxBuffers < 1) throw new Error('PartBuffers needs at least one buffer');
  }

  /** A buffer of `partBytes`; waits while all of them are in use. */
  acquire(): Promise<Buffer> {
    const buffer = this.idle.pop();
    if (buffer) return Promise.resolve(buffer);
    if (this.allocated < this.maxBuffers) {
      this.allocated++;
      return Promise.resolve(Buffer.allocUnsafeSlow(this.partBytes));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Returns a buffer; nothing may read or write it afterwards. */
  release(buffer: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(buffer);
    else this.idle.push(buffer);
  }

  /** Buffers handed out and not yet returned. */
  get inUse(): number {
    return this.allocated - this.idle.length;
  }
}
