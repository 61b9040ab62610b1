// The S3 client Kiln uses, and how to read its errors.
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { S3Config } from './config.js';

/**
 * Checksums only where S3 requires them: the SDK's default sends streamed
 * bodies aws-chunked with checksum trailers, which S3-compatible servers
 * (Ceph RGW 16) refuse (411 MissingContentLength), and their x-amz-checksum
 * headers are not verified anyway: Kiln verifies digests itself.
 */
export function createS3Client(config: S3Config, overrides: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle,
    credentials: config.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // No request timeout: a download to a slow client idles its S3 socket while it waits.
    requestHandler: { connectionTimeout: 10_000, httpAgent: { keepAlive: true, maxSockets: 256 } },
    ...overrides,
  });
}

interface S3ErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function status(err: unknown): number | undefined {
  return (err as S3ErrorShape | undefined)?.$metadata?.httpStatusCode;
}

function nameOf(err: unknown): string | undefined {
  const e = err as S3ErrorShape | undefined;
  return e?.name ?? e?.Code;
}

export function isNotFound(err: unknown): boolean {
  const name = nameOf(err);
  return name === 'NoSuchKey' || name === 'NotFound' || (status(err) === 404 && name !== 'NoSuchBucket' && name !== 'NoSuchUpload');
}

export function isNoSuchUpload(err: unknown): boolean {
  return nameOf(err) === 'NoSuchUpload';
}

/** A conditional write lost: the key exists (412), or S3 saw a concurrent conditional write to it (409). */
export function isConditionFailed(err: unknown): boolean {
  const name = nameOf(err);
  return status(err) === 412 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict';
}
