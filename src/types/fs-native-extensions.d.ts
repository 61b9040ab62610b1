// The part of fs-native-extensions (no bundled types) that Kiln uses.
declare module 'fs-native-extensions' {
  /** Punches a hole of `length` bytes at `offset` (fallocate PUNCH_HOLE | KEEP_SIZE on Linux). */
  export function trimSync(fd: number, offset: number, length: number): void;
}
