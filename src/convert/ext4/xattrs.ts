// Extended attributes as ext4 stores them: which names it can hold, the
// POSIX ACL translation, and the in-inode area and the xattr block. Pure.
//
// Only the namespaces the Linux ext4 driver serves are accepted (user.,
// trusted., security., and the two POSIX ACLs); a name in any other
// namespace, longer than XATTR_NAME_MAX, or with bytes outside printable
// ASCII is refused, never cut short. What does not fit in the inode goes to
// one xattr block; more than that is refused too (no ea_inode feature).
import { crc32c } from './crc32c.js';
import { BLOCK_SIZE, EXTRA_ISIZE, INODE_SIZE } from './layout.js';

const MAGIC = 0xea020000;
const ENTRY_HEADER = 16;
const BLOCK_HEADER = 32;
/** Linux's XATTR_NAME_MAX: the whole name, namespace prefix included. */
export const MAX_XATTR_NAME_BYTES = 255;
/** Offset of the in-inode area (after the 128-byte base and the extra fields). */
export const IN_INODE_OFFSET = 128 + EXTRA_ISIZE;
/** Room after the in-inode magic for entries, their terminator and values. */
const IN_INODE_ROOM = INODE_SIZE - IN_INODE_OFFSET - 4;
const BLOCK_ROOM = BLOCK_SIZE - BLOCK_HEADER;

const ACL_ACCESS = 'system.posix_acl_access';
const ACL_DEFAULT = 'system.posix_acl_default';
/** Name index by prefix (ext4's table); the ACLs are whole names with an empty suffix. */
const NAMESPACES: ReadonlyArray<{ prefix: string; index: number; whole?: true }> = [
  { prefix: 'user.', index: 1 },
  { prefix: ACL_ACCESS, index: 2, whole: true },
  { prefix: ACL_DEFAULT, index: 3, whole: true },
  { prefix: 'trusted.', index: 4 },
  { prefix: 'security.', index: 6 },
];

export interface DiskXattr {
  index: number;
  /** The name without its prefix (printable ASCII). */
  suffix: string;
  value: Buffer;
}

export class XattrError extends Error {}

/** The attributes in ext4's form, sorted as ext4 keeps them; throws XattrError for what ext4 cannot hold. */
export function toDiskXattrs(xattrs: ReadonlyMap<string, Buffer>): DiskXattr[] {
  const out: DiskXattr[] = [];
  for (const [name, value] of xattrs) {
    const shown = JSON.stringify(name.length > 100 ? `${name.slice(0, 100)}…` : name);
    const bytes = Buffer.byteLength(name);
    if (bytes > MAX_XATTR_NAME_BYTES) throw new XattrError(`has an extended attribute name of ${bytes} bytes (${shown}); Linux allows at most ${MAX_XATTR_NAME_BYTES}`);
    if (!/^[\x20-\x7e]+$/.test(name)) throw new XattrError(`has extended attribute ${shown}, whose name has bytes other than printable ASCII`);
    const ns = NAMESPACES.find((n) => (n.whole ? name === n.prefix : name.startsWith(n.prefix) && name.length > n.prefix.length));
    if (!ns) throw new XattrError(`has extended attribute ${shown}, which is in no namespace ext4 supports (user., trusted., security., ${ACL_ACCESS}, ${ACL_DEFAULT})`);
    out.push({ index: ns.index, suffix: ns.whole ? '' : name.slice(ns.prefix.length), value: ns.whole ? aclToDisk(value, shown) : value });
  }
  return out.sort(compareXattrs);
}

/** ext4's order within a block: name index, then name length, then name bytes. */
function compareXattrs(a: DiskXattr, b: DiskXattr): number {
  if (a.index !== b.index) return a.index - b.index;
  if (a.suffix.length !== b.suffix.length) return a.suffix.length - b.suffix.length;
  return a.suffix < b.suffix ? -1 : a.suffix > b.suffix ? 1 : 0;
}

export interface XattrLayout {
  inInode: DiskXattr[];
  inBlock: DiskXattr[];
}

function entryBytes(x: DiskXattr): number {
  return ENTRY_HEADER + round4(x.suffix.length);
}

/** In-inode first, in order, while they fit; the rest in one block. Throws XattrError when the block overflows. */
export function layoutXattrs(list: readonly DiskXattr[]): XattrLayout {
  const inInode: DiskXattr[] = [];
  const inBlock: DiskXattr[] = [];
  let inodeUsed = 4; // the terminator
  let blockUsed = 4;
  for (const x of list) {
    const size = entryBytes(x) + round4(x.value.length);
    if (inBlock.length === 0 && inodeUsed + size <= IN_INODE_ROOM) {
      inInode.push(x);
      inodeUsed += size;
    } else {
      inBlock.push(x);
      blockUsed += size;
    }
  }
  if (blockUsed > BLOCK_ROOM) {
    const total = list.reduce((sum, x) => sum + entryBytes(x) + round4(x.value.length), 0);
    throw new XattrError(`has ${total} bytes of extended attributes (names, values and their headers); ext4 holds about ${BLOCK_ROOM + IN_INODE_ROOM} bytes of them per file`);
  }
  return { inInode, inBlock };
}

/** Writes the in-inode area of `inode` (a 256-byte inode buffer). */
export function writeInodeXattrs(inode: Buffer, list: readonly DiskXattr[]): void {
  if (list.length === 0) return;
  inode.writeUInt32LE(MAGIC, IN_INODE_OFFSET);
  writeEntries(inode.subarray(IN_INODE_OFFSET + 4), 0, list);
}

/** An xattr block at disk block `block`, checksummed with the filesystem seed. */
export function xattrBlock(list: readonly DiskXattr[], block: number, fsSeed: number): Buffer {
  const buf = Buffer.alloc(BLOCK_SIZE);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(1, 4); // h_refcount
  buf.writeUInt32LE(1, 8); // h_blocks
  const hashes = writeEntries(buf, BLOCK_HEADER, list);
  let hash = 0;
  for (const h of hashes) hash = (((hash << 16) | (hash >>> 16)) ^ h) >>> 0;
  buf.writeUInt32LE(hash, 12);
  const number = Buffer.alloc(8);
  number.writeBigUInt64LE(BigInt(block));
  buf.writeUInt32LE(crc32c(crc32c(fsSeed, number), buf), 16);
  return buf;
}

/** Entries from `start` up, values packed down from the end of `area`; value offsets are relative to `area`. */
function writeEntries(area: Buffer, start: number, list: readonly DiskXattr[]): number[] {
  let at = start;
  let valueEnd = area.length;
  const hashes: number[] = [];
  for (const x of list) {
    let offset = 0;
    if (x.value.length > 0) {
      valueEnd -= round4(x.value.length);
      offset = valueEnd;
      x.value.copy(area, offset);
    }
    const hash = xattrHash(x.suffix, x.value);
    hashes.push(hash);
    area.writeUInt8(x.suffix.length, at);
    area.writeUInt8(x.index, at + 1);
    area.writeUInt16LE(offset, at + 2);
    area.writeUInt32LE(0, at + 4); // e_value_inum
    area.writeUInt32LE(x.value.length, at + 8);
    area.writeUInt32LE(hash, at + 12);
    area.write(x.suffix, at + ENTRY_HEADER, 'latin1');
    at += entryBytes(x);
  }
  return hashes;
}

/** ext4_xattr_hash_entry: the name's bytes, then the value as little-endian words (zero-padded). */
export function xattrHash(suffix: string, value: Buffer): number {
  let hash = 0;
  for (let i = 0; i < suffix.length; i++) hash = (((hash << 5) | (hash >>> 27)) ^ suffix.charCodeAt(i)) >>> 0;
  const padded = value.length % 4 === 0 ? value : Buffer.concat([value, Buffer.alloc(4 - (value.length % 4))]);
  for (let i = 0; i < padded.length; i += 4) hash = (((hash << 16) | (hash >>> 16)) ^ padded.readUInt32LE(i)) >>> 0;
  return hash;
}

const ACL_TAGS_WITH_ID = new Set([0x02, 0x08]); // ACL_USER, ACL_GROUP
const ACL_TAGS = new Set([0x01, 0x02, 0x04, 0x08, 0x10, 0x20]);

/**
 * A POSIX ACL from the xattr (VFS) form — version 2, 8-byte entries — to
 * ext4's on-disk form: version 1, with the id only on named user and group
 * entries. The kernel refuses ACLs stored any other way.
 */
export function aclToDisk(value: Buffer, shown: string): Buffer {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== 2) {
    throw new XattrError(`has ${shown} that is not a POSIX ACL (version 2, 8-byte entries)`);
  }
  const parts: Buffer[] = [Buffer.from([1, 0, 0, 0])];
  for (let at = 4; at < value.length; at += 8) {
    const tag = value.readUInt16LE(at);
    if (!ACL_TAGS.has(tag)) throw new XattrError(`has ${shown} with unknown ACL entry tag ${tag}`);
    parts.push(value.subarray(at, at + (ACL_TAGS_WITH_ID.has(tag) ? 8 : 4)));
  }
  return Buffer.concat(parts);
}

function round4(n: number): number {
  return (n + 3) & ~3;
}
