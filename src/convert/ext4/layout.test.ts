import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BLOCK_SIZE, DEFAULT_SPACE, descriptorBlocks, INODES_PER_BLOCK, MAX_PER_GROUP, planGroups, reservedDescriptorBlocks, type PlanInput } from './layout.js';

describe('planGroups', () => {
  const MiB = (1024 * 1024) / BLOCK_SIZE;
  const table: Array<[string, PlanInput]> = [
    ['an empty tree', { end: 3, freeBelowEnd: 0, inodesInUse: 12 }],
    ['a small image', { end: 600, freeBelowEnd: 10, inodesInUse: 300 }],
    ['debian-app sized', { end: 62_000, freeBelowEnd: 500, inodesInUse: 29_460 }],
    ['bigblob sized', { end: 131_200, freeBelowEnd: 0, inodesInUse: 13 }],
    ['a million empty files', { end: 5_000, freeBelowEnd: 0, inodesInUse: 1_001_011 }],
    ['two million files and 8 GiB', { end: 2_097_152, freeBelowEnd: 0, inodesInUse: 2_000_000 }],
    ['much space freed in the middle', { end: 50_000, freeBelowEnd: 40_000, inodesInUse: 100 }],
  ];
  for (const [name, input] of table) {
    it(name, () => {
      const p = planGroups(input);
      assert.ok(p.inodesPerGroup <= MAX_PER_GROUP && p.inodesPerGroup % INODES_PER_BLOCK === 0, `inodes per group ${p.inodesPerGroup}`);
      assert.ok(p.blocksPerGroup <= MAX_PER_GROUP && p.blocksPerGroup % 8 === 0, `blocks per group ${p.blocksPerGroup}`);
      assert.ok(p.inodesPerGroup * p.groups >= input.inodesInUse * 1.05, 'spare inodes');
      assert.equal(p.inodeTableBlocks, p.inodesPerGroup / INODES_PER_BLOCK);
      assert.equal(p.groups, Math.ceil(p.totalBlocks / p.blocksPerGroup), 'groups cover the blocks, the last one not empty');
      const groupMeta = p.groups * (2 + p.inodeTableBlocks);
      const free = p.totalBlocks - (input.end + groupMeta) + input.freeBelowEnd;
      const used = input.end + groupMeta - input.freeBelowEnd;
      assert.ok(free >= Math.max(16 * MiB, used * 0.1), `free ${free} blocks for ${used} used`);
      assert.ok(free <= Math.max(16 * MiB, used * 0.1) + input.freeBelowEnd + p.blocksPerGroup, 'not much more than asked');
    });
  }
  it('gives a million files 31 or more small groups instead of a 4 GiB disk', () => {
    const p = planGroups({ end: 5_000, freeBelowEnd: 0, inodesInUse: 1_001_011 });
    assert.ok(p.groups >= 31 && p.blocksPerGroup < MAX_PER_GROUP);
    assert.ok(p.totalBlocks * BLOCK_SIZE < 400 * 1024 * 1024, `${p.totalBlocks} blocks`);
  });
  it('keeps at least one inode per 16 KiB, as mke2fs does', () => {
    const p = planGroups({ end: 131_200, freeBelowEnd: 0, inodesInUse: 13 });
    assert.ok(p.inodesPerGroup * p.groups >= (p.totalBlocks * BLOCK_SIZE) / DEFAULT_SPACE.bytesPerInode * 0.95);
  });
});

describe('descriptor room', () => {
  it('covers the most groups the limits allow', () => {
    assert.equal(descriptorBlocks(128), 1);
    assert.equal(descriptorBlocks(129), 2);
    assert.equal(reservedDescriptorBlocks(16 * 2 ** 30, 500_011), 1);
    const reserve = reservedDescriptorBlocks(64 * 2 ** 30, 4_000_011);
    const p = planGroups({ end: (64 * 2 ** 30) / BLOCK_SIZE / 1.2, freeBelowEnd: 0, inodesInUse: 4_000_011 });
    assert.ok(descriptorBlocks(p.groups) <= reserve, `${p.groups} groups, ${reserve} blocks reserved`);
  });
});
