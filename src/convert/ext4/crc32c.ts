// ext4's checksum: CRC-32C as the kernel's crc32c_le computes it, from any
// seed and without the final inversion. @node-rs/crc32 computes the standard
// (inverted) CRC and continues from a previous standard result, so the raw
// form is the inversion of continuing from the inverted seed.
import { crc32c as standardCrc32c } from '@node-rs/crc32';

export function crc32c(seed: number, data: Uint8Array): number {
  return ~standardCrc32c(data, ~seed >>> 0) >>> 0;
}

const word = Buffer.alloc(4);

/** crc32c over one little-endian 32-bit number (inode numbers, generations, group numbers). */
export function crc32cU32(seed: number, value: number): number {
  word.writeUInt32LE(value >>> 0);
  return crc32c(seed, word);
}
