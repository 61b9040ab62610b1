import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backupGroups, countTree, planFromCounts, type TreeCounts } from './ext4-size.js';
import { RootfsTree, type TreeSink } from './rootfs-tree.js';
import type { TarEntry } from './tar-reader.js';

const nullSink: TreeSink = { mkdir() {}, remove() {}, createFile() {}, writeFile() {}, closeFile() {}, symlink() {}, link() {}, setDirMeta() {} };

function treeOf(entries: Array<Partial<TarEntry> & { name: string }>) {
  const tree = new RootfsTree(nullSink);
  tree.beginLayer();
  for (const e of entries) {
    tree.entry({ type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...e });
    tree.entryEnd();
  }
  return tree.root;
}

describe('countTree', () => {
  it('counts blocks per file rounded up, once per hardlinked inode', () => {
    const counts = countTree(treeOf([
      { name: 'empty', size: 0 },
      { name: 'one', size: 1 },
      { name: 'exact', size: 4096 },
      { name: 'more', size: 4097 },
      { name: 'alias', type: 'hardlink', linkname: 'more' },
    ]));
    assert.equal(counts.fileBlocks, 0 + 1 + 1 + 2);
    assert.equal(counts.inodes, 1 + 4); // root + four files
  });

  it('counts long symlink targets, large xattrs and directory entries', () => {
    const counts = countTree(treeOf([
      { name: 'fast', type: 'symlink', linkname: 'x'.repeat(59) },
      { name: 'slow', type: 'symlink', linkname: 'x'.repeat(60) },
      { name: 'cap', xattrs: new Map([['security.capability', Buffer.alloc(20)]]) },
      { name: 'big', xattrs: new Map([['user.big', Buffer.alloc(200)]]) },
      { name: 'dev', type: 'char-device', devmajor: 1, devminor: 3 },
      ...Array.from({ length: 100 }, (_, i) => ({ name: `wide/${'n'.repeat(200)}${i}`, type: 'directory' as const })),
    ]));
    assert.equal(counts.symlinkBlocks, 1);
    assert.equal(counts.xattrBlocks, 1);
    // "wide" holds 100 entries of 212 bytes: 21,200 bytes need 6 blocks at the worst fill; 100 empty dirs + root need one each.
    assert.equal(counts.dirBlocks, 6 + 100 + 1);
    assert.equal(counts.inodes, 1 + 5 + 1 + 100);
  });

  it('adds extent index blocks only for very large files', () => {
    assert.equal(countTree(treeOf([{ name: 'f', size: 64 * 1024 * 1024 }])).extentBlocks, 0);
    assert.ok(countTree(treeOf([{ name: 'f', size: 8 * 1024 * 1024 * 1024 }])).extentBlocks >= 1);
  });
});

describe('planFromCounts', () => {
  const zero: TreeCounts = { inodes: 0, fileBlocks: 0, extentBlocks: 0, dirBlocks: 0, symlinkBlocks: 0, xattrBlocks: 0 };

  it('keeps at least 16 MiB free, or 10% of the content', () => {
    const small = planFromCounts({ ...zero, inodes: 10, fileBlocks: 100 });
    assert.ok(small.sizeBytes >= (100 + 4096) * 4096);
    const big = planFromCounts({ ...zero, inodes: 10, fileBlocks: 1_000_000 });
    assert.ok(big.sizeBytes >= 1_100_000 * 4096);
  });

  it('has room for the inode tables and spare inodes', () => {
    const plan = planFromCounts({ ...zero, inodes: 100_000 });
    assert.ok(plan.inodes > 100_000 * 1.05);
    assert.ok(plan.sizeBytes >= plan.inodes * 256 + 16 * 1024 * 1024);
  });

  it('rounds to whole MiB and grows with every count', () => {
    const base = planFromCounts({ ...zero, inodes: 1000, fileBlocks: 50_000 });
    assert.equal(base.sizeBytes % (1024 * 1024), 0);
    for (const key of Object.keys(zero) as Array<keyof TreeCounts>) {
      const more = planFromCounts({ ...zero, inodes: 1000, fileBlocks: 50_000, [key]: (key === 'inodes' ? 1000 : key === 'fileBlocks' ? 50_000 : 0) + 20_000 });
      assert.ok(more.sizeBytes > base.sizeBytes, key);
    }
  });
});

describe('backupGroups', () => {
  const table: Array<[number, number]> = [[1, 1], [2, 2], [4, 3], [6, 4], [10, 6], [26, 7], [50, 9]];
  for (const [groups, expected] of table) it(`${groups} groups → ${expected}`, () => assert.equal(backupGroups(groups), expected));
});
