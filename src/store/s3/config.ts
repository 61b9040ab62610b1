// S3 settings from the environment. Pure. Credentials come the standard AWS
// way: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)
// from the same environment as the other settings, else the AWS SDK's
// default provider chain (AWS_PROFILE with ~/.aws/credentials and
// ~/.aws/config, SSO, web identity, container and instance roles).
//
// KILN_S3_BUCKET                 the bucket; setting it selects S3 for every byte Kiln keeps
// KILN_S3_ENDPOINT               S3 endpoint URL for S3-compatible servers (Ceph RGW, MinIO); default AWS
// KILN_S3_REGION                 region (default AWS_REGION, else us-east-1)
// KILN_S3_PREFIX                 key prefix inside the bucket, e.g. `kiln/` (default none)
// KILN_S3_FORCE_PATH_STYLE       `http://host/bucket/key` addressing (default true when KILN_S3_ENDPOINT is set)
// KILN_S3_REDIRECT               blob GETs and disk downloads answer 307 to a presigned URL (default true)
// KILN_S3_REDIRECT_TTL_SECONDS   lifetime of a presigned URL (default 600)
// KILN_S3_PART_BYTES             multipart part size (default 8 MiB; 5 MiB to 5 GiB)
// KILN_S3_UPLOAD_MEMORY_BYTES    memory all uploads together may hold in part buffers (default 64 MiB)

/** S3's smallest part, except for the last one of an upload. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
/** S3's largest part. */
export const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
/** S3's largest number of parts in one multipart upload. */
export const MAX_PARTS = 10_000;

export interface S3Config {
  bucket: string;
  endpoint: string | undefined;
  region: string;
  /** '' or a prefix ending in '/'. */
  prefix: string;
  forcePathStyle: boolean;
  redirect: boolean;
  redirectTtlSeconds: number;
  partBytes: number;
  uploadMemoryBytes: number;
  /** Keys from the environment; undefined: the SDK's default provider chain. */
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
}

/** The S3 settings, or null when KILN_S3_BUCKET is unset (the filesystem stores are used). */
export function loadS3Config(env: NodeJS.ProcessEnv): S3Config | null {
  const bucket = env.KILN_S3_BUCKET?.trim();
  if (!bucket) return null;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new Error(`KILN_S3_BUCKET "${bucket}" is not a valid bucket name (3-63 characters: lowercase letters, digits, '.' and '-')`);
  }
  const endpoint = env.KILN_S3_ENDPOINT?.trim() || undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(endpoint)) {
    throw new Error(`KILN_S3_ENDPOINT "${endpoint}" must be a URL like http://127.0.0.1:7480 or https://s3.example.com`);
  }
  const partBytes = positiveInteger(env.KILN_S3_PART_BYTES, 8 * 1024 * 1024, 'KILN_S3_PART_BYTES');
  if (partBytes < MIN_PART_BYTES || partBytes > MAX_PART_BYTES) {
    throw new Error(`KILN_S3_PART_BYTES must be between ${MIN_PART_BYTES} (5 MiB, S3's smallest part) and ${MAX_PART_BYTES} (5 GiB), got ${partBytes}`);
  }
  const uploadMemoryBytes = positiveInteger(env.KILN_S3_UPLOAD_MEMORY_BYTES, 64 * 1024 * 1024, 'KILN_S3_UPLOAD_MEMORY_BYTES');
  if (uploadMemoryBytes < 2 * partBytes) {
    throw new Error(`KILN_S3_UPLOAD_MEMORY_BYTES (${uploadMemoryBytes}) must hold at least two parts of KILN_S3_PART_BYTES (${partBytes})`);
  }
  return {
    bucket,
    endpoint,
    region: env.KILN_S3_REGION?.trim() || env.AWS_REGION?.trim() || 'us-east-1',
    prefix: normalizePrefix(env.KILN_S3_PREFIX ?? ''),
    forcePathStyle: flag(env.KILN_S3_FORCE_PATH_STYLE, endpoint !== undefined, 'KILN_S3_FORCE_PATH_STYLE'),
    redirect: flag(env.KILN_S3_REDIRECT, true, 'KILN_S3_REDIRECT'),
    redirectTtlSeconds: positiveInteger(env.KILN_S3_REDIRECT_TTL_SECONDS, 600, 'KILN_S3_REDIRECT_TTL_SECONDS', 7 * 86_400),
    partBytes,
    uploadMemoryBytes,
    credentials: credentialsFrom(env),
  };
}

function credentialsFrom(env: NodeJS.ProcessEnv): S3Config['credentials'] {
  const accessKeyId = env.AWS_ACCESS_KEY_ID?.trim();
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY?.trim();
  if (!accessKeyId || !secretAccessKey) return undefined;
  return { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN?.trim() || undefined };
}

/** `kiln/` from `kiln`, `/kiln/` or `kiln/`; '' for none. */
export function normalizePrefix(value: string): string {
  const trimmed = value.trim().replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  if (trimmed.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new Error(`KILN_S3_PREFIX "${value}" must be a path like kiln or team/kiln, without empty, '.' or '..' parts`);
  }
  return `${trimmed}/`;
}

function positiveInteger(value: string | undefined, fallback: number, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new Error(`${name} must be a whole number from 1 to ${max}, got "${value}"`);
  return n;
}

function flag(value: string | undefined, fallback: boolean, name: string): boolean {
  if (value === undefined || value.trim() === '') return fallback;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error(`${name} must be true or false, got "${value}"`);
}
