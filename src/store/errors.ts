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
  // SQLITE_FULL: the database could not grow (better-sqlite3 puts SQLite's code in `code`).
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/**
 * A manifest insert found that blobs or child manifests it references were
 * deleted after they were checked (the garbage collector ran in between).
 */
export class ReferencesMissingError extends Error {
  constructor(readonly repo: string, readonly digests: string[]) {
    super(
      `push these blobs to ${repo} before the manifest (they were removed while the manifest was being stored): ${digests.slice(0, 5).join(', ')}${digests.length > 5 ? ` and ${digests.length - 5} more` : ''}`,
    );
    this.name = 'ReferencesMissingError';
  }
}

/** The database was written by a newer Kiln; this one does not know its schema. */
export class SchemaTooNewError extends Error {
  constructor(
    readonly what: string,
    readonly where: string,
    readonly found: number,
    readonly known: number,
  ) {
    super(
      `the ${what} ${where} has schema version ${found}, but this Kiln knows versions up to ${known}: it was last opened by a newer Kiln. Run that version (or a newer one), or restore a backup taken before the upgrade`,
    );
    this.name = 'SchemaTooNewError';
  }
}
