import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32c } from './crc32c.js';
import { encodeTime, inodeChecksumSeed, S_IFREG, writeDevice, writeInode } from './metadata.js';

describe('crc32c', () => {
  it('is the kernel form: any seed, no final inversion', () => {
    assert.equal((crc32c(0xffffffff, Buffer.from('123456789')) ^ 0xffffffff) >>> 0, 0xe3069283);
    assert.equal(crc32c(crc32c(7, Buffer.from('ab')), Buffer.from('cd')), crc32c(7, Buffer.from('abcd')));
  });
});

describe('encodeTime', () => {
  const table: Array<[number, number, number]> = [
    [0, 0, 0],
    [1700000000, 1700000000, 0],
    [1700000000.5, 1700000000, 500_000_000 * 4],
    [-1, 0xffffffff, 0],
    [2 ** 31, 2 ** 31, 1], // 2038: the epoch bits carry it
    [2 ** 32 + 5, 5, 1],
    [1e12, (2 ** 34 - 2 ** 31 - 1) % 2 ** 32, 3], // clamped to 2446
    [-1e12, 2 ** 31, 0], // clamped to 1901
  ];
  for (const [time, seconds, extra] of table) it(String(time), () => assert.deepEqual(encodeTime(time), { seconds, extra }));
});

describe('inodes', () => {
  it('encodes 64-bit sizes, 32-bit ids and 48-bit block counts, with a checksum over all 256 bytes', () => {
    const buf = Buffer.alloc(256);
    writeInode(buf, 0, { mode: S_IFREG | 0o644, uid: 100000, gid: 70000, size: 5 * 2 ** 32 + 7, links: 3, time: 1, flags: 0x80000, blocks: 2 ** 30, xattrBlock: 0 }, 99);
    assert.deepEqual([buf.readUInt16LE(0x2), buf.readUInt16LE(0x78)], [100000 & 0xffff, 1]);
    assert.deepEqual([buf.readUInt32LE(0x4), buf.readUInt32LE(0x6c)], [7, 5]);
    assert.deepEqual([buf.readUInt32LE(0x1c), buf.readUInt16LE(0x74)], [0, 2]); // 2^33 sectors
    const crc = buf.readUInt16LE(0x7c) | (buf.readUInt16LE(0x82) << 16);
    const zeroed = Buffer.from(buf);
    zeroed.writeUInt16LE(0, 0x7c);
    zeroed.writeUInt16LE(0, 0x82);
    assert.equal(crc >>> 0, crc32c(99, zeroed));
    assert.notEqual(inodeChecksumSeed(1, 12), inodeChecksumSeed(1, 13));
  });
  it('encodes device numbers the old way when they fit a byte, the new way otherwise', () => {
    const old = Buffer.alloc(60);
    writeDevice(old, 0, 1, 3);
    assert.deepEqual([old.readUInt32LE(0), old.readUInt32LE(4)], [0x0103, 0]);
    const wide = Buffer.alloc(60);
    writeDevice(wide, 0, 259, 0x12345);
    assert.deepEqual([wide.readUInt32LE(0), wide.readUInt32LE(4)], [0, (0x45 | (259 << 8) | (0x12300 << 12)) >>> 0]);
  });
});
