import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BLOCK_SLOTS, buildExtentTree, extentCount, runExtents, runTreeBlocks, treeBlockCount, writeRunRoot } from './extents.js';

describe('extent trees', () => {
  it('needs no tree blocks up to four extents, then leaves and index blocks', () => {
    const table: Array<[number, number]> = [[0, 0], [1, 0], [4, 0], [5, 1], [BLOCK_SLOTS * 4, 4], [BLOCK_SLOTS * 4 + 1, 5 + 1], [BLOCK_SLOTS * BLOCK_SLOTS * 4, BLOCK_SLOTS * 4 + 4]];
    for (const [extents, blocks] of table) assert.equal(treeBlockCount(extents), blocks, `${extents} extents`);
    assert.deepEqual([extentCount(32768), extentCount(32769)], [1, 2]);
  });

  it('writes a root in the inode for a contiguous run', () => {
    const buf = Buffer.alloc(60);
    writeRunRoot(buf, 0, 1000, 40000, 0, 0);
    assert.deepEqual([buf.readUInt16LE(0), buf.readUInt16LE(2), buf.readUInt16LE(4), buf.readUInt16LE(6)], [0xf30a, 2, 4, 0]);
    assert.deepEqual([buf.readUInt32LE(12), buf.readUInt16LE(16), buf.readUInt32LE(20)], [0, 32768, 1000]);
    assert.deepEqual([buf.readUInt32LE(24), buf.readUInt16LE(28), buf.readUInt32LE(32)], [32768, 40000 - 32768, 1000 + 32768]);
  });

  it('points the root at leaf blocks for more than four extents', () => {
    const count = 5 * 32768;
    const blocks = runTreeBlocks(100, count, 7, 0);
    assert.deepEqual(blocks.map((b) => b.block), [7]);
    const leaf = blocks[0].data;
    assert.deepEqual([leaf.readUInt16LE(2), leaf.readUInt16LE(4), leaf.readUInt16LE(6)], [5, BLOCK_SLOTS, 0]);
    const root = Buffer.alloc(60);
    writeRunRoot(root, 0, 100, count, 7, 0);
    assert.deepEqual([root.readUInt16LE(2), root.readUInt16LE(6), root.readUInt32LE(12), root.readUInt32LE(16)], [1, 1, 0, 7]);
    assert.throws(() => buildExtentTree(runExtents(0, count), [], 0), /need 1 tree blocks/);
  });
});
