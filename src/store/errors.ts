// Storage-domain errors. The HTTP layers map these to spec error codes.

export class DigestMismatchError extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`content does not match digest ${expected} (computed ${actual})`);
    this.name = 'DigestMismatchError';
  }
}

/** A chunk that does not start where the upload currently ends. */
export class RangeMismatchError extends Error {
  constructor(readonly currentSize: number, readonly requestedOffset: number) {
    super(`chunk starts at byte ${requestedOffset} but the upload has ${currentSize} bytes; resume from ${currentSize}`);
    this.name = 'RangeMismatchError';
  }
}

/** The body ended before the declared Content-Length, or carried more. */
export class SizeMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SizeMismatchError';
  }
}

export class UploadNotFoundError extends Error {
  constructor(readonly id: string) {
    super(`upload ${id} is unknown or has expired; start a new upload`);
    this.name = 'UploadNotFoundError';
  }
}

/** Another request is writing to the same upload session right now. */
export class UploadBusyError extends Error {
  constructor(readonly id: string) {
    super(`upload ${id} is receiving another chunk; send chunks one at a time`);
    this.name = 'UploadBusyError';
  }
}

/** The data directory's filesystem is full. */
export class StorageFullError extends Error {
  constructor(cause?: unknown) {
    super('the registry is out of storage space; free space or raise the quota, then retry', { cause });
    this.name = 'StorageFullError';
  }
}

export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
