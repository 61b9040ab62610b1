// Digest grammar and hashing (OCI image-spec "Digests").
import { createHash, type Hash } from 'node:crypto';

export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** `algorithm:hex`, as it appears on the wire. */
  digest: string;
}

export class DigestError extends Error {
  constructor(
    message: string,
    /** True when the string follows the digest grammar but names an algorithm Kiln does not support. */
    readonly unsupported = false,
  ) {
    super(message);
    this.name = 'DigestError';
  }
}

/** Parses a digest string; throws DigestError with a message fit for a user. */
export function parseDigest(value: string): ParsedDigest {
  if (!DIGEST_GRAMMAR.test(value)) {
    throw new DigestError(`"${truncate(value)}" is not a digest; expected algorithm:hex such as sha256:<64 hex>`);
  }
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new DigestError(`digest algorithm "${truncate(algorithm)}" is not supported; use sha256 or sha512`, true);
  }
  const want = HEX_LENGTH[algorithm];
  if (hex.length !== want || !/^[a-f0-9]+$/.test(hex)) {
    throw new DigestError(`${algorithm} digest must be ${want} lowercase hex characters`);
  }
  return { algorithm, hex, digest: value };
}

export function tryParseDigest(value: string): ParsedDigest | null {
  try {
    return parseDigest(value);
  } catch {
    return null;
  }
}

export function isDigest(value: string): boolean {
  return tryParseDigest(value) !== null;
}

export function createHasher(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

/** Digest of an in-memory buffer (manifests only: blobs are always hashed as streams). */
export function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
