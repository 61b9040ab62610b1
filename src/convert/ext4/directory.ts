// Linear directories: entries packed into blocks, each block ending in the
// 12-byte checksum tail that metadata_csum asks for. Pure.
//
// A linear directory of any size is valid ext4 (e2fsck and the kernel read it
// entry by entry); the kernel builds an htree only when a guest grows a
// one-block directory, so none is written here.
import { crc32c } from './crc32c.js';
import { BLOCK_SIZE } from './layout.js';

export const FILE_TYPE = { file: 1, dir: 2, char: 3, block: 4, fifo: 5, socket: 6, symlink: 7 } as const;
export type FileType = (typeof FILE_TYPE)[keyof typeof FILE_TYPE];

const TAIL = 12;
const USABLE = BLOCK_SIZE - TAIL;
const DOT_SIZE = 12;

export function direntSize(nameBytes: number): number {
  return 8 + ((nameBytes + 3) & ~3);
}

/** Packs entries into blocks the same way for counting and for writing. */
class Packer {
  blocks = 1;
  used = 2 * DOT_SIZE;
  /** Adds an entry of `size` bytes; true when it starts a new block. */
  add(size: number): boolean {
    if (this.used + size <= USABLE) {
      this.used += size;
      return false;
    }
    this.blocks++;
    this.used = size;
    return true;
  }
}

/** Blocks a directory holding these names (byte strings) needs, "." and ".." included. */
export function directoryBlocks(names: Iterable<string>): number {
  const packer = new Packer();
  for (const name of names) packer.add(direntSize(name.length));
  return packer.blocks;
}

export interface DirectoryContent<T> {
  self: number;
  parent: number;
  /** Entries by name (byte strings). */
  children: ReadonlyMap<string, T>;
  inoOf(child: T): number;
  typeOf(child: T): FileType;
}

/**
 * Writes a directory's blocks in order through `emit` (the buffer is reused:
 * copy it or write it before returning); returns how many. `inodeSeed` is
 * the directory inode's checksum seed.
 */
export function writeDirectory<T>(dir: DirectoryContent<T>, inodeSeed: number, emit: (block: Buffer) => void): number {
  const block = Buffer.alloc(BLOCK_SIZE);
  let last = 0; // offset of the block's last entry
  const put = (at: number, ino: number, name: string, type: number, size: number) => {
    block.writeUInt32LE(ino, at);
    block.writeUInt16LE(size, at + 4);
    block.writeUInt8(name.length, at + 6);
    block.writeUInt8(type, at + 7);
    block.write(name, at + 8, 'latin1');
    last = at;
  };
  const finish = () => {
    // The last entry spans to the tail; the tail holds the checksum.
    block.writeUInt16LE(USABLE - last, last + 4);
    block.writeUInt32LE(0, USABLE);
    block.writeUInt16LE(TAIL, USABLE + 4);
    block.writeUInt8(0, USABLE + 6);
    block.writeUInt8(0xde, USABLE + 7);
    block.writeUInt32LE(crc32c(inodeSeed, block.subarray(0, USABLE)), USABLE + 8);
    emit(block);
    block.fill(0);
  };
  const packer = new Packer();
  put(0, dir.self, '.', FILE_TYPE.dir, DOT_SIZE);
  put(DOT_SIZE, dir.parent, '..', FILE_TYPE.dir, DOT_SIZE);
  for (const [name, child] of dir.children) {
    const size = direntSize(name.length);
    if (packer.add(size)) finish();
    put(packer.used - size, dir.inoOf(child), name, dir.typeOf(child), size);
  }
  finish();
  return packer.blocks;
}
