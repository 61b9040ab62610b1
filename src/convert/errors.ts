// The one error type of the bake domain. `code` lets the job runner decide
// what to record; `message` tells the user what was wrong, naming entries by
// their path inside the image and never a path of the host.

export type BakeErrorCode =
  | 'INVALID_IMAGE' // manifest/config unusable (unparseable config, diff_id count, …)
  | 'UNSUPPORTED_LAYER' // foreign/non-distributable or unknown layer media type
  | 'LAYER_DIGEST_MISMATCH' // blob bytes or uncompressed bytes do not match their digest
  | 'LAYER_CORRUPT' // decompression or tar parsing failed
  | 'UNSAFE_ENTRY' // an entry tries to leave the root or is otherwise unusable
  | 'UNSUPPORTED_ENTRY' // an entry ext4 cannot hold (name too long, unknown xattr namespace, …)
  | 'LIMIT_EXCEEDED' // a bake limit (bytes, entries, layers, disk size, symlink work) was hit
  | 'DISK_WRITE'; // writing the disk image failed

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

/** Longest name shown in a message; longer ones are cut and say how long they are. */
const MAX_SHOWN_BYTES = 160;

/** Names from tar headers are byte strings (one char per byte); show them as quoted UTF-8, cut when very long. */
export function displayName(binary: string): string {
  if (binary.length <= MAX_SHOWN_BYTES) return JSON.stringify(Buffer.from(binary, 'latin1').toString('utf8'));
  const head = Buffer.from(binary.slice(0, MAX_SHOWN_BYTES), 'latin1').toString('utf8');
  return `${JSON.stringify(head)}… (${binary.length} bytes)`;
}
