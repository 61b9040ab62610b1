import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FreeSpace } from './free-space.js';

describe('FreeSpace', () => {
  it('allocates at the end until something is released', () => {
    const f = new FreeSpace(10);
    assert.deepEqual([f.allocate(5), f.allocate(1), f.end], [10, 15, 16]);
  });

  it('reuses a released run that fits and keeps the rest free', () => {
    const f = new FreeSpace(0);
    const a = f.allocate(8);
    f.allocate(1);
    f.release(a, 8);
    assert.equal(f.freeBelowEnd, 8);
    assert.equal(f.allocate(3), 0);
    assert.deepEqual(f.runs(), [{ start: 3, count: 5 }]);
    assert.equal(f.allocate(6), 9, 'too big for the hole: from the end');
  });

  it('merges neighbours, and a run reaching the end moves the end back', () => {
    const f = new FreeSpace(0);
    const [a, b, c] = [f.allocate(2), f.allocate(2), f.allocate(2)];
    f.allocate(1);
    f.release(a, 2);
    f.release(c, 2);
    f.release(b, 2);
    assert.deepEqual(f.runs(), [{ start: 0, count: 6 }]);
    const g = new FreeSpace(0);
    g.allocate(4);
    const tail = g.allocate(4);
    g.release(tail, 4);
    assert.deepEqual([g.end, g.runs()], [4, []]);
  });

  it('stays quick with a hundred thousand holes', () => {
    const f = new FreeSpace(0);
    const starts = Array.from({ length: 200_000 }, () => f.allocate(2));
    for (let i = 0; i < starts.length; i += 2) f.release(starts[i], 2);
    // 3-block files fit none of the 2-block holes: each must skip them without scanning them all.
    for (let i = 0; i < 100_000; i++) f.allocate(3);
    assert.equal(f.freeBelowEnd, 200_000);
    for (let i = 0; i < 100_000; i++) f.allocate(1);
    assert.equal(f.freeBelowEnd, 100_000);
  });
});
