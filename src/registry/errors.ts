// The one place where domain errors become OCI distribution error responses.
import { AuthError } from '../auth/authorizer.js';
import { DigestError } from '../oci/digest.js';
import { ManifestError } from '../oci/manifest.js';
import {
  DigestMismatchError,
  RangeMismatchError,
  ReferencesMissingError,
  SizeMismatchError,
  StorageFullError,
  StorageUnavailableError,
  isNoSpace,
  UploadBusyError,
  UploadNotFoundError,
} from '../store/errors.js';

export type ErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'PAGINATION_NUMBER_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOO_MANY_REQUESTS'
  | 'RANGE_INVALID'
  | 'PAYLOAD_TOO_LARGE'
  | 'STORAGE_FULL'
  | 'STORAGE_UNAVAILABLE'
  | 'INTERNAL';

const STATUS: Record<ErrorCode, number> = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  PAGINATION_NUMBER_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 415,
  TOO_MANY_REQUESTS: 429,
  RANGE_INVALID: 416,
  PAYLOAD_TOO_LARGE: 413,
  STORAGE_FULL: 507,
  STORAGE_UNAVAILABLE: 503,
  INTERNAL: 500,
};

// Codes outside the spec's list travel under the nearest spec code.
const WIRE_CODE: Partial<Record<ErrorCode, string>> = {
  RANGE_INVALID: 'BLOB_UPLOAD_INVALID',
  PAYLOAD_TOO_LARGE: 'MANIFEST_INVALID',
  STORAGE_FULL: 'UNSUPPORTED',
  STORAGE_UNAVAILABLE: 'UNKNOWN',
  INTERNAL: 'UNKNOWN',
};

export class RegistryError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly detail?: unknown,
    /** Extra response headers (e.g. WWW-Authenticate, Range). */
    readonly headers: Record<string, string> = {},
    readonly statusOverride?: number,
  ) {
    super(message);
    this.name = 'RegistryError';
  }

  get status(): number {
    return this.statusOverride ?? STATUS[this.code];
  }

  /** The spec's error body; `detail` is always present (an empty object when there is nothing to add). */
  toBody(): { errors: { code: string; message: string; detail: unknown }[] } {
    return { errors: [{ code: WIRE_CODE[this.code] ?? this.code, message: this.message, detail: this.detail ?? {} }] };
  }
}

/** Maps any error thrown below the HTTP layer to a RegistryError. */
export function toRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  if (err instanceof AuthError) {
    const headers: Record<string, string> = err.challenge ? { 'www-authenticate': err.challenge } : {};
    return new RegistryError(err.code, err.message, undefined, headers, err.status);
  }
  if (err instanceof DigestError) return new RegistryError(err.unsupported ? 'UNSUPPORTED' : 'DIGEST_INVALID', err.message, undefined, {}, 400);
  if (err instanceof ManifestError) return new RegistryError(err.code, err.message, undefined, {}, err.code === 'UNSUPPORTED' ? 415 : 400);
  if (err instanceof DigestMismatchError) {
    return new RegistryError('DIGEST_INVALID', err.message, { expected: err.expected, actual: err.actual });
  }
  if (err instanceof RangeMismatchError) {
    return new RegistryError('RANGE_INVALID', err.message, { size: err.currentSize }, { range: rangeHeader(err.currentSize) });
  }
  if (err instanceof SizeMismatchError) return new RegistryError('SIZE_INVALID', err.message);
  if (err instanceof UploadNotFoundError) return new RegistryError('BLOB_UPLOAD_UNKNOWN', err.message);
  if (err instanceof UploadBusyError) return new RegistryError('RANGE_INVALID', err.message);
  if (err instanceof StorageFullError) return new RegistryError('STORAGE_FULL', err.message);
  if (err instanceof StorageUnavailableError) return new RegistryError('STORAGE_UNAVAILABLE', err.message, undefined, { 'retry-after': '5' });
  if (isNoSpace(err)) return new RegistryError('STORAGE_FULL', new StorageFullError(err).message);
  // The garbage collector removed a referenced blob between the reference check and the insert.
  if (err instanceof ReferencesMissingError) return new RegistryError('MANIFEST_BLOB_UNKNOWN', err.message, { digests: err.digests });
  if (isClientAbort(err)) return new RegistryError('BLOB_UPLOAD_INVALID', 'the request body ended early (client disconnected); resume the upload');
  return new RegistryError('INTERNAL', 'internal error; the registry log has details');
}

/** Whether the error is the client going away mid-request rather than a server fault. */
export function isClientAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error | undefined)?.message === 'aborted';
}

/** The upload-progress header: the inclusive byte range received so far. */
export function rangeHeader(size: number): string {
  return size === 0 ? '0-0' : `0-${size - 1}`;
}
