// Issues and checks every Kiln credential: API keys, build tokens and the
// short-lived access tokens that /token hands out in exchange for them.
import { isValidRepoName } from '../oci/names.js';
import type { ApiKeyStore, RevokeOutcome } from '../store/api-key-store.js';
import type { Principal } from './authorizer.js';
import { describeToken, InvalidTokenError, type KilnClaims, type SignedToken, type TokenKind, type TokenSigner } from './jwt.js';
import { baseImagePullRepos, buildIdsIn, buildTokenAccess, grantAccess, noBuildsKnown, type LoadBuildOwners, type OwnerOfBuild, type PolicyContext } from './policy.js';
import { DEFAULT_PUBLIC_REPOS, type PublicRepos } from './public-repos.js';
import type { AccessEntry, ResourceScope } from './scope.js';
import { tenantNameProblem } from './tenant.js';

/** Short enough that a revoked key stops working soon; long enough for a slow layer push. */
export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 600;
/** A build token outlives the longest plausible push of the build's results. */
export const MIN_BUILD_TOKEN_SECONDS = 30 * 60;

export interface TokenServiceOptions {
  signer: TokenSigner;
  keys: ApiKeyStore;
  ownerOfBuild?: OwnerOfBuild;
  /** Loads owners for `ownerOfBuild` before the policy asks it (a store in another process's reach); none by default. */
  loadBuildOwners?: LoadBuildOwners;
  /** KILN_PUBLIC_REPOS (default `library/**`). */
  publicRepos?: PublicRepos;
  accessTokenTtlSeconds?: number;
  clock?: () => Date;
}

export interface ApiKeyRequest {
  /** Required for tenant keys; optional for admins (the tenant their builds run for). */
  tenant?: string | null;
  admin?: boolean;
  ttlSeconds: number;
}

export interface IssuedApiKey extends SignedToken {
  subject: string;
  role: 'admin' | 'tenant';
  tenant: string | null;
}

export interface BuildTokenRequest {
  buildId: string;
  /** The tenant the build runs for; null only for admin builds. */
  tenant: string | null;
  admin: boolean;
  /** The global cache key the build imports (and, for admin builds, exports). */
  globalKey: string | null;
  /**
   * Repositories of the build's FROM images in this registry, which the
   * submitter was checked to be allowed to pull: the token may pull them and
   * nothing more. Entries under `cache/` or `builds/` are left out (the policy
   * table alone decides those).
   */
  pullRepos?: readonly string[];
  /** When the build must be over; the token lives at least 30 minutes regardless. */
  expiresAt: Date;
}

/** An accepted credential: who presented it and what it may do. */
export interface Credential {
  kind: TokenKind;
  jti: string;
  principal: Principal;
  /** What an access token carries; null for API keys and build tokens, which reach what the policy allows. */
  access: AccessEntry[] | null;
  expiresAt: Date;
}

export interface AccessToken {
  token: string;
  issuedAt: Date;
  expiresIn: number;
  access: AccessEntry[];
}

export const ANONYMOUS: Principal = { subject: 'anonymous', role: 'anonymous', tenant: null };

/** Thrown for requests to mint a credential that cannot exist (bad tenant, build id, key). */
export class TokenRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenRequestError';
  }
}

export class TokenService {
  private readonly signer: TokenSigner;
  private readonly keys: ApiKeyStore;
  private readonly accessTtlMs: number;
  private readonly now: () => Date;
  private readonly loadBuildOwners: LoadBuildOwners | null;
  /** What the policy is told besides caller and repo. */
  readonly policy: Required<PolicyContext>;

  constructor(options: TokenServiceOptions) {
    this.signer = options.signer;
    this.keys = options.keys;
    this.policy = { ownerOfBuild: options.ownerOfBuild ?? noBuildsKnown, publicRepos: options.publicRepos ?? DEFAULT_PUBLIC_REPOS };
    this.accessTtlMs = (options.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS) * 1000;
    this.now = options.clock ?? (() => new Date());
    this.loadBuildOwners = options.loadBuildOwners ?? null;
  }

  /**
   * Brings in what the policy needs to know about `repos` for `principal`
   * (the owners of `builds/<id>` repositories, which only tenants are judged
   * by), so that its synchronous answers are the database's.
   */
  async preparePolicy(principal: Principal, repos: readonly string[]): Promise<void> {
    if (this.loadBuildOwners === null || principal.role !== 'tenant') return;
    const ids = buildIdsIn(repos);
    if (ids.length > 0) await this.loadBuildOwners(ids);
  }

  async createApiKey(request: ApiKeyRequest): Promise<IssuedApiKey> {
    const role = request.admin ? 'admin' : 'tenant';
    const tenant = request.tenant ?? null;
    if (tenant === null && role === 'tenant') throw new TokenRequestError('a tenant API key needs --tenant (or --admin for an admin key)');
    const problem = tenant === null ? null : tenantNameProblem(tenant, this.policy.publicRepos.reservedNamespaces);
    if (problem) throw new TokenRequestError(problem);
    if (!(request.ttlSeconds > 0)) throw new TokenRequestError('an API key needs a positive lifetime');
    const subject = role === 'tenant' && tenant !== null ? tenant : 'admin';
    const issuedAt = this.now();
    const expiresAt = new Date(issuedAt.getTime() + request.ttlSeconds * 1000);
    const signed = await this.signer.sign({ kind: 'api_key', sub: subject, tenant, role, access: [] }, issuedAt, expiresAt);
    await this.keys.record({ jti: signed.jti, kind: 'api_key', subject, role, tenant, buildId: null, issuedAt, expiresAt });
    return { ...signed, subject, role, tenant };
  }

  /** A token for one build: exactly the policy's build column (plus pull on its FROM repos), alive at least 30 minutes. */
  async issueBuildToken(request: BuildTokenRequest): Promise<SignedToken> {
    const { buildId, tenant, admin, globalKey } = request;
    const invalid = (request.pullRepos ?? []).find((repo) => !isValidRepoName(repo));
    if (invalid !== undefined) throw new TokenRequestError(`"${invalid}" in pullRepos is not a repository name`);
    const pullRepos = baseImagePullRepos(request.pullRepos ?? []);
    if (!isValidRepoName(`builds/${buildId}`) || buildId.includes('/')) {
      throw new TokenRequestError(`build id "${buildId}" cannot name a repository builds/<id>`);
    }
    if (tenant === null && !admin) throw new TokenRequestError('a tenant build needs its tenant');
    const problem = tenant === null ? null : tenantNameProblem(tenant);
    if (problem) throw new TokenRequestError(problem);
    if (globalKey !== null && !isValidRepoName(`cache/global/${globalKey}`)) {
      throw new TokenRequestError(`global cache key "${globalKey}" cannot name a repository cache/global/<key>`);
    }
    const issuedAt = this.now();
    const floor = issuedAt.getTime() + MIN_BUILD_TOKEN_SECONDS * 1000;
    const expiresAt = new Date(Math.max(request.expiresAt.getTime(), floor));
    const subject = `build:${buildId}`;
    const signed = await this.signer.sign(
      {
        kind: 'build',
        sub: subject,
        tenant,
        role: 'build',
        access: buildTokenAccess({ buildId, tenant, admin, globalKey, pullRepos }),
        build: buildId,
        global_key: globalKey,
        admin_build: admin,
        pull_repos: pullRepos,
      },
      issuedAt,
      expiresAt,
    );
    await this.keys.record({ jti: signed.jti, kind: 'build', subject, role: 'build', tenant, buildId, issuedAt, expiresAt });
    return signed;
  }

  async revoke(jti: string): Promise<RevokeOutcome> {
    return this.keys.revoke(jti, this.now());
  }

  /** Verifies any Kiln token, including that it (or the key it came from) is known and not revoked. */
  async authenticate(token: string): Promise<Credential> {
    const claims = await this.signer.verify(token, this.now());
    const parentJti = claims.kind === 'access' ? claims.key : claims.jti;
    if (parentJti !== undefined) await this.checkNotRevoked(parentJti, claims);
    return {
      kind: claims.kind,
      jti: claims.jti,
      principal: principalOf(claims),
      access: claims.kind === 'access' ? claims.access : null,
      expiresAt: new Date(claims.exp * 1000),
    };
  }

  /** Authenticates a credential offered at /token: API keys and build tokens, never access tokens. */
  async identify(token: string): Promise<Credential> {
    const credential = await this.authenticate(token);
    if (credential.kind === 'access') {
      // Exchanging one access token for another could widen it to all the policy allows.
      throw new InvalidTokenError('not_exchangeable', 'an access token cannot be exchanged for another; present the API key instead');
    }
    return credential;
  }

  /**
   * An access token for `identity` (null: anonymous) carrying what was asked
   * and the policy allows; it never outlives the credential it came from.
   */
  async issueAccessToken(identity: Credential | null, requested: readonly ResourceScope[]): Promise<AccessToken> {
    const principal = identity?.principal ?? ANONYMOUS;
    await this.preparePolicy(principal, requested.filter((s) => s.type === 'repository').map((s) => s.name));
    const access = grantAccess(principal, requested, this.policy);
    const issuedAt = this.now();
    const ttlEnd = issuedAt.getTime() + this.accessTtlMs;
    const expiresAt = new Date(identity ? Math.min(ttlEnd, identity.expiresAt.getTime()) : ttlEnd);
    const signed = await this.signer.sign(
      {
        kind: 'access',
        sub: principal.subject,
        tenant: principal.tenant,
        role: principal.role,
        access,
        ...(identity ? { key: identity.jti } : {}),
        ...buildClaimsOf(principal),
      },
      issuedAt,
      expiresAt,
    );
    return {
      token: signed.token,
      issuedAt,
      expiresIn: Math.max(0, Math.floor((expiresAt.getTime() - issuedAt.getTime()) / 1000)),
      access,
    };
  }

  private async checkNotRevoked(jti: string, claims: KilnClaims): Promise<void> {
    const record = await this.keys.find(jti);
    const what = claims.kind === 'access' ? `the credential this access token was issued from (${jti})` : describeToken(claims);
    if (record === null) {
      throw new InvalidTokenError('unknown', `${what} is not known to this registry; create a new one with \`kiln token create\``);
    }
    if (record.revokedAt !== null) {
      throw new InvalidTokenError('revoked', `${what} was revoked at ${record.revokedAt.toISOString()}`);
    }
  }
}

function principalOf(claims: KilnClaims): Principal {
  const principal: Principal = { subject: claims.sub, role: claims.role, tenant: claims.tenant };
  if (claims.role === 'build') {
    if (claims.build !== undefined) principal.buildId = claims.build;
    principal.adminBuild = claims.admin_build ?? false;
    principal.globalCacheKey = claims.global_key ?? null;
    principal.pullRepos = claims.pull_repos ?? [];
  }
  return principal;
}

function buildClaimsOf(principal: Principal): Partial<KilnClaims> {
  if (principal.role !== 'build') return {};
  return {
    ...(principal.buildId !== undefined ? { build: principal.buildId } : {}),
    admin_build: principal.adminBuild ?? false,
    global_key: principal.globalCacheKey ?? null,
    pull_repos: [...(principal.pullRepos ?? [])],
  };
}
