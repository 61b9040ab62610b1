import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aclToDisk, layoutXattrs, toDiskXattrs, xattrBlock, xattrHash, XattrError } from './xattrs.js';

const map = (entries: Record<string, string | Buffer>) => new Map(Object.entries(entries).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(v)]));

describe('toDiskXattrs', () => {
  it('strips known prefixes into name indexes and sorts as ext4 does', () => {
    const list = toDiskXattrs(map({ 'user.zz': 'a', 'security.capability': 'c', 'user.b': 'b', 'trusted.t': 't' }));
    assert.deepEqual(list.map((x) => [x.index, x.suffix]), [[1, 'b'], [1, 'zz'], [4, 't'], [6, 'capability']]);
  });
  const refused: Array<[string, RegExp]> = [
    [`user.${'n'.repeat(251)}`, /name of 256 bytes .*at most 255/],
    ['system.nfs4_acl', /in no namespace ext4 supports/],
    ['btrfs.compression', /in no namespace ext4 supports/],
    ['user.', /in no namespace/],
    ['user.a\nb', /bytes other than printable ASCII/],
    ['user.\u00e9', /bytes other than printable ASCII/],
  ];
  for (const [name, pattern] of refused) {
    it(`refuses ${JSON.stringify(name.slice(0, 40))}`, () => assert.throws(() => toDiskXattrs(map({ [name]: 'v' })), (e: unknown) => e instanceof XattrError && pattern.test(e.message)));
  }
  it('accepts a name of exactly 255 bytes', () => {
    assert.equal(toDiskXattrs(map({ [`user.${'n'.repeat(250)}`]: 'v' }))[0].suffix.length, 250);
  });
});

describe('POSIX ACLs', () => {
  // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
  const vfs = Buffer.from('02000000' + '01000600ffffffff' + '02000400e8030000' + '04000400ffffffff' + '10000400ffffffff' + '20000000ffffffff', 'hex');
  it('stores the xattr form in ext4 form: version 1, ids only for named users and groups', () => {
    assert.equal(aclToDisk(vfs, 'acl').toString('hex'), '01000000' + '01000600' + '02000400e8030000' + '04000400' + '10000400' + '20000000');
    assert.deepEqual(toDiskXattrs(map({ 'system.posix_acl_access': vfs }))[0].index, 2);
    assert.deepEqual(toDiskXattrs(map({ 'system.posix_acl_default': vfs }))[0].suffix, '');
  });
  it('refuses what is not an ACL', () => {
    assert.throws(() => aclToDisk(Buffer.from('01000000', 'hex'), 'acl'), XattrError);
    assert.throws(() => aclToDisk(Buffer.from('0200000001000600ffff', 'hex'), 'acl'), XattrError);
    assert.throws(() => aclToDisk(Buffer.from('0200000040000600ffffffff', 'hex'), 'acl'), /unknown ACL entry tag 64/);
  });
});

describe('layoutXattrs', () => {
  it('keeps small attributes in the inode and moves the rest to a block', () => {
    const small = layoutXattrs(toDiskXattrs(map({ 'security.capability': Buffer.alloc(20) })));
    assert.deepEqual([small.inInode.length, small.inBlock.length], [1, 0]);
    const mixed = layoutXattrs(toDiskXattrs(map({ 'user.a': 'x', 'user.big': 'v'.repeat(300) })));
    assert.deepEqual([mixed.inInode.map((x) => x.suffix), mixed.inBlock.map((x) => x.suffix)], [['a'], ['big']]);
  });
  it('refuses more than a block holds', () => {
    assert.throws(() => layoutXattrs(toDiskXattrs(map({ 'user.big': 'v'.repeat(4100) }))), /ext4 holds about/);
  });
});

describe('xattr encoding', () => {
  it('hashes names and values as ext4_xattr_hash_entry does', () => {
    assert.equal(xattrHash('', Buffer.alloc(0)), 0);
    // name "a": (0 << 5 | 0 >>> 27) ^ 0x61; value "b\0\0\0": (0x61 << 16 | 0x61 >>> 16) ^ 0x62
    assert.equal(xattrHash('a', Buffer.from('b')), ((0x61 << 16) ^ 0x62) >>> 0);
  });
  it('writes a block with the header, sorted entries and values at the end', () => {
    const block = xattrBlock(toDiskXattrs(map({ 'user.k': 'value' })), 1234, 0);
    assert.equal(block.readUInt32LE(0), 0xea020000);
    assert.deepEqual([block.readUInt32LE(4), block.readUInt32LE(8)], [1, 1]);
    assert.deepEqual([block[32], block[33], block.readUInt16LE(34), block.readUInt32LE(40)], [1, 1, 4096 - 8, 5]);
    assert.equal(block.toString('latin1', 48, 49), 'k');
    assert.equal(block.toString('latin1', 4096 - 8, 4096 - 3), 'value');
    assert.notEqual(block.readUInt32LE(16), xattrBlock(toDiskXattrs(map({ 'user.k': 'value' })), 1235, 0).readUInt32LE(16), 'the checksum covers the block number');
  });
});
