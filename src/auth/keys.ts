// The key that signs every Kiln token. Generated once into the data directory
// (owner-only), or provided by the operator (KILN_AUTH_KEY_FILE) as a private
// JWK or a PKCS#8 PEM, Ed25519 or P-256.
import { randomBytes, createPrivateKey } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';

export type SigningAlgorithm = 'EdDSA' | 'ES256';

export interface SigningKey {
  algorithm: SigningAlgorithm;
  /** JWK thumbprint of the public key; tokens name it so a foreign key is told apart from tampering. */
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

export class SigningKeyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SigningKeyError';
  }
}

/** Loads an operator-provided key; it must exist. */
export async function loadSigningKey(file: string): Promise<SigningKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SigningKeyError(`cannot read the token signing key ${file}: ${(err as Error).message}`, { cause: err });
  }
  return signingKeyFromJwk(parseKeyFile(text, file), file);
}

/** Loads the key at `file`, first generating it there (mode 0600) when absent. */
export async function loadOrCreateSigningKey(file: string): Promise<SigningKey> {
  try {
    return await loadSigningKey(file);
  } catch (err) {
    if ((err as { cause?: NodeJS.ErrnoException }).cause?.code !== 'ENOENT') throw err;
  }
  await writeNewKeyFile(file);
  return loadSigningKey(file);
}

/** A fresh Ed25519 key as a private JWK. */
export async function generatePrivateJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  return exportJWK(privateKey);
}

export async function signingKeyFromJwk(jwk: JWK, source = 'the key'): Promise<SigningKey> {
  const algorithm = algorithmOf(jwk, source);
  const publicJwk: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, ...(jwk.y ? { y: jwk.y } : {}) };
  return {
    algorithm,
    kid: await calculateJwkThumbprint(publicJwk),
    privateKey: (await importJWK(jwk, algorithm)) as CryptoKey,
    publicKey: (await importJWK(publicJwk, algorithm)) as CryptoKey,
  };
}

function parseKeyFile(text: string, file: string): JWK {
  const trimmed = text.trim();
  try {
    if (trimmed.startsWith('{')) return JSON.parse(trimmed) as JWK;
    return createPrivateKey(trimmed).export({ format: 'jwk' }) as JWK;
  } catch (err) {
    throw new SigningKeyError(`${file} is neither a private JWK nor a PKCS#8 PEM private key`, { cause: err });
  }
}

function algorithmOf(jwk: JWK, source: string): SigningAlgorithm {
  if (!jwk.d) throw new SigningKeyError(`${source} holds a public key; token signing needs the private key`);
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  throw new SigningKeyError(`${source} is a ${jwk.kty}${jwk.crv ? `/${jwk.crv}` : ''} key; use an Ed25519 or P-256 private key`);
}

// Written beside the target and linked into place, so a crash never leaves a
// half key and two processes starting at once end up sharing one key.
async function writeNewKeyFile(file: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temp, JSON.stringify(await generatePrivateJwk()) + '\n', { mode: 0o600, flag: 'wx' });
  try {
    await link(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(temp);
  }
}
