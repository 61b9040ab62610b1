// Kiln's JWTs: what they claim, how they are signed, and why one is refused.
import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, errors, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import type { SigningKey } from './keys.js';

/**
 * `api_key`: long-lived identity of an admin or tenant, exchanged at /token.
 * `build`: identity of one build, for as long as the build runs.
 * `access`: short-lived, carries exactly the access granted at /token.
 */
export type TokenKind = 'api_key' | 'build' | 'access';

const accessEntry = z.object({ type: z.string(), name: z.string(), actions: z.array(z.string()) });

const claimsSchema = z.object({
  kind: z.enum(['api_key', 'build', 'access']),
  sub: z.string(),
  tenant: z.string().nullable(),
  role: z.enum(['admin', 'tenant', 'build', 'anonymous']),
  access: z.array(accessEntry),
  jti: z.string(),
  iat: z.number(),
  exp: z.number(),
  /** Build tokens (and access tokens minted from them): the build. */
  build: z.string().optional(),
  /** Build tokens: the global cache key the build imports (and admin builds export). */
  global_key: z.string().nullable().optional(),
  /** Build tokens: whether the build is an admin build. */
  admin_build: z.boolean().optional(),
  /** Build tokens (and access tokens minted from them): extra pull-only repos, the build's FROM images. */
  pull_repos: z.array(z.string()).optional(),
  /** Access tokens: jti of the API key or build token they were minted from, so revoking it ends them too. */
  key: z.string().optional(),
});

export type KilnClaims = z.infer<typeof claimsSchema>;

/** The claims a signer is given; it adds the registered ones. */
export type ClaimsToSign = Omit<KilnClaims, 'jti' | 'iat' | 'exp'>;

export type RefusalReason = 'malformed' | 'expired' | 'tampered' | 'wrong_key' | 'unknown' | 'revoked' | 'not_exchangeable';

/** A credential that is not accepted; `message` says which way it failed, for the caller. */
export class InvalidTokenError extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidTokenError';
  }
}

/** How a token is named in messages, so a refusal says which credential failed. */
export function describeToken(claims: Pick<KilnClaims, 'kind' | 'jti' | 'build'>): string {
  switch (claims.kind) {
    case 'api_key':
      return `API key ${claims.jti}`;
    case 'build':
      return `build token of build ${claims.build ?? '?'}`;
    case 'access':
      return 'access token';
  }
}

export interface SignedToken {
  token: string;
  jti: string;
  issuedAt: Date;
  expiresAt: Date;
}

export class TokenSigner {
  constructor(
    private readonly key: SigningKey,
    /** Issuer and audience: the registry's service name, as in the WWW-Authenticate challenge. */
    private readonly service: string,
  ) {}

  async sign(claims: ClaimsToSign, issuedAt: Date, expiresAt: Date): Promise<SignedToken> {
    const jti = randomUUID();
    const token = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: this.key.algorithm, kid: this.key.kid, typ: 'JWT' })
      .setIssuer(this.service)
      .setAudience(this.service)
      .setJti(jti)
      .setIssuedAt(toSeconds(issuedAt))
      .setExpirationTime(toSeconds(expiresAt))
      .sign(this.key.privateKey);
    return { token, jti, issuedAt, expiresAt };
  }

  /** The token's claims when this registry signed it and it has not expired; else InvalidTokenError. */
  async verify(token: string, now: Date): Promise<KilnClaims> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw new InvalidTokenError('malformed', 'the credentials are not a Kiln token; use an API key from `kiln token create`');
    }
    if (kid !== this.key.kid) {
      throw new InvalidTokenError(
        'wrong_key',
        `the token was signed by another key (kid ${typeof kid === 'string' ? kid : 'missing'}), not this registry's: ` +
          'it comes from another Kiln or from before the signing key changed; get a new one',
      );
    }
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, this.key.publicKey, {
        algorithms: [this.key.algorithm],
        issuer: this.service,
        audience: this.service,
        currentDate: now,
      }));
    } catch (err) {
      throw refusalFor(err);
    }
    const parsed = claimsSchema.safeParse(payload);
    if (!parsed.success) throw new InvalidTokenError('malformed', 'the token does not carry Kiln claims');
    return parsed.data;
  }
}

function refusalFor(err: unknown): InvalidTokenError {
  if (err instanceof errors.JWTExpired) {
    const claims = claimsSchema.safeParse(err.payload);
    const what = claims.success ? describeToken(claims.data) : 'token';
    const at = typeof err.payload.exp === 'number' ? ` at ${new Date(err.payload.exp * 1000).toISOString()}` : '';
    return new InvalidTokenError('expired', `${what} expired${at}`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JOSEAlgNotAllowed) {
    return new InvalidTokenError('tampered', 'the token signature does not verify: the token was altered');
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new InvalidTokenError('malformed', `the token is not valid here: ${err.message}`);
  }
  return new InvalidTokenError('malformed', 'the credentials are not a well-formed Kiln token');
}

function toSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}
