// Block allocation for the streaming writer. Pure.
//
// Every file gets one contiguous run: a released run that fits (best fit
// among size classes), else the next blocks at the end. Released runs merge
// with free neighbours, so a directory deleted by a later layer becomes one
// hole that later files fill. Whatever stays free below the end is free
// space of the finished filesystem.

export interface Run {
  start: number;
  count: number;
}

/** Size class of a run of `count` blocks: floor(log2(count)). */
/** Runs of a file's own size class looked at before a larger class is used. */
const SAME_CLASS_TRIES = 8;

function sizeClass(count: number): number {
  return 31 - Math.clz32(count);
}

export class FreeSpace {
  /** Next never-allocated block. */
  private endBlock: number;
  private readonly byStart = new Map<number, number>();
  private readonly byEnd = new Map<number, number>();
  /** Starts of free runs, by size class. */
  private readonly classes: Array<Set<number>> = Array.from({ length: 32 }, () => new Set());
  private freeTotal = 0;

  constructor(firstFree: number) {
    this.endBlock = firstFree;
  }

  /** First block never allocated. */
  get end(): number {
    return this.endBlock;
  }

  /** Free blocks below `end`. */
  get freeBelowEnd(): number {
    return this.freeTotal;
  }

  /** `count` contiguous blocks, from a released run when one fits. */
  allocate(count: number): number {
    if (!(count > 0)) throw new RangeError(`cannot allocate ${count} blocks`);
    const start = this.takeFit(count);
    if (start !== null) return start;
    const at = this.endBlock;
    this.endBlock += count;
    return at;
  }

  release(start: number, count: number): void {
    if (count <= 0) return;
    let s = start;
    let c = count;
    const before = this.byEnd.get(s);
    if (before !== undefined) {
      this.remove(before, s - before);
      c += s - before;
      s = before;
    }
    const afterCount = this.byStart.get(s + c);
    if (afterCount !== undefined) {
      this.remove(s + c, afterCount);
      c += afterCount;
    }
    if (s + c === this.endBlock) {
      // Free space at the end just moves the end back.
      this.endBlock = s;
      return;
    }
    this.insert(s, c);
  }

  /** The free runs below `end`, in block order. */
  runs(): Run[] {
    return [...this.byStart].map(([start, count]) => ({ start, count })).sort((a, b) => a.start - b.start);
  }

  /**
   * A free run of at least `count` blocks: a few candidates of the same size
   * class, then any run of a larger class (all of which fit). O(1) per call
   * however many holes there are.
   */
  private takeFit(count: number): number | null {
    const own = sizeClass(count);
    let tries = 0;
    for (const start of this.classes[own]) {
      const c = this.byStart.get(start) as number;
      if (c >= count) return this.take(start, c, count);
      if (++tries >= SAME_CLASS_TRIES) break;
    }
    for (let k = own + 1; k < 32; k++) {
      for (const start of this.classes[k]) return this.take(start, this.byStart.get(start) as number, count);
    }
    return null;
  }

  private take(start: number, available: number, count: number): number {
    this.remove(start, available);
    if (available > count) this.insert(start + count, available - count);
    return start;
  }

  private insert(start: number, count: number): void {
    this.byStart.set(start, count);
    this.byEnd.set(start + count, start);
    this.classes[sizeClass(count)].add(start);
    this.freeTotal += count;
  }

  private remove(start: number, count: number): void {
    this.byStart.delete(start);
    this.byEnd.delete(start + count);
    this.classes[sizeClass(count)].delete(start);
    this.freeTotal -= count;
  }
}
