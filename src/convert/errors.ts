// The one error type of the bake domain. `code` lets the job runner decide
// what to record; `message` tells the user what was wrong.

export type BakeErrorCode =
  | 'INVALID_IMAGE' // manifest/config unusable (unparseable config, diff_id count, …)
  | 'UNSUPPORTED_LAYER' // foreign/non-distributable or unknown layer media type
  | 'LAYER_DIGEST_MISMATCH' // blob bytes or uncompressed bytes do not match their digest
  | 'LAYER_CORRUPT' // decompression or tar parsing failed
  | 'UNSAFE_ENTRY' // an entry tries to leave the root or is otherwise unusable
  | 'STAGING_IO' // writing the unpacked tree failed (disk full, name too long, …)
  | 'DISK_WRITE'; // mkfs/debugfs failed

export class BakeError extends Error {
  constructor(
    readonly code: BakeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BakeError';
  }
}

/** Names from tar headers are byte strings (one char per byte); show them as UTF-8. */
export function displayName(binary: string): string {
  return JSON.stringify(Buffer.from(binary, 'latin1').toString('utf8'));
}
