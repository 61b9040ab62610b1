import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { directoryBlocks, direntSize, FILE_TYPE, writeDirectory } from './directory.js';

describe('linear directories', () => {
  it('sizes entries to 4 bytes', () => assert.deepEqual([direntSize(1), direntSize(4), direntSize(5), direntSize(255)], [12, 12, 16, 264]));

  for (const count of [0, 1, 339, 340, 5000]) {
    it(`writes as many blocks as it counts for ${count} entries, each ending in its checksum tail`, () => {
      const children = new Map(Array.from({ length: count }, (_, i) => [`name-${i}`, i + 20] as const));
      const blocks: Buffer[] = [];
      const n = writeDirectory({ self: 12, parent: 2, children, inoOf: (ino) => ino, typeOf: () => FILE_TYPE.file }, 0, (b) => blocks.push(Buffer.from(b)));
      assert.equal(n, directoryBlocks(children.keys()));
      assert.equal(blocks.length, n);
      const seen: string[] = [];
      for (const block of blocks) {
        assert.deepEqual([block.readUInt32LE(4084), block.readUInt16LE(4088), block[4091]], [0, 12, 0xde]);
        for (let at = 0; at < 4084; ) {
          const recLen = block.readUInt16LE(at + 4);
          assert.ok(recLen >= 12 && at + recLen <= 4084);
          seen.push(block.toString('latin1', at + 8, at + 8 + block[at + 6]));
          at += recLen;
        }
      }
      assert.deepEqual(seen, ['.', '..', ...children.keys()]);
    });
  }
});
