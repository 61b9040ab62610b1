// Everything the server and CLI need from auth, wired in one call.
import type { FastifyInstance } from 'fastify';
import type { ApiKeyStore } from '../store/api-key-store.js';
import { OpenAuthorizer, type Authorizer } from './authorizer.js';
import { TokenSigner } from './jwt.js';
import { loadOrCreateSigningKey, loadSigningKey } from './keys.js';
import type { AuthMode } from './mode.js';
import type { LoadBuildOwners, OwnerOfBuild } from './policy.js';
import type { PublicRepos } from './public-repos.js';
import { DEFAULT_SERVICE, TokenAuthorizer } from './token-authorizer.js';
import { tokenRoutes } from './token-routes.js';
import { TokenService } from './token-service.js';

export interface CreateAuthOptions {
  mode: AuthMode;
  /** Where the signing key is generated on first start (the data dir's `authKeyFile`). */
  defaultKeyFile: string;
  /** An operator-provided signing key (`KILN_AUTH_KEY_FILE`); it must exist. Wins over `defaultKeyFile`. */
  keyFile?: string;
  /** Where API keys are recorded (the server passes the SQLite store; auth itself touches no database). */
  keys: ApiKeyStore;
  /** Which tenant owns a build (the builds module); by default no build is known. */
  ownerOfBuild?: OwnerOfBuild;
  /** Loads owners for `ownerOfBuild` before the policy asks it (builds in PostgreSQL). */
  loadBuildOwners?: LoadBuildOwners;
  /** KILN_PUBLIC_REPOS: the platform's base images (default `library/**`). */
  publicRepos?: PublicRepos;
  /** The `service` of challenges and the issuer/audience of tokens. */
  service?: string;
  accessTokenTtlSeconds?: number;
  clock?: () => Date;
}

export interface AuthTokens {
  createApiKey: TokenService['createApiKey'];
  revoke: TokenService['revoke'];
  issueBuildToken: TokenService['issueBuildToken'];
}

export interface Auth {
  mode: AuthMode;
  authorizer: Authorizer;
  /** Adds GET and POST /token. Served in both modes, so clients holding credentials never trip on a 404. */
  registerRoutes(app: FastifyInstance): void;
  tokens: AuthTokens;
}

export async function createAuth(options: CreateAuthOptions): Promise<Auth> {
  const { keys } = options;
  const signingKey = options.keyFile ? await loadSigningKey(options.keyFile) : await loadOrCreateSigningKey(options.defaultKeyFile);
  const service = options.service ?? DEFAULT_SERVICE;
  const clock = options.clock ?? (() => new Date());
  const tokens = new TokenService({
    signer: new TokenSigner(signingKey, service),
    keys,
    ownerOfBuild: options.ownerOfBuild,
    loadBuildOwners: options.loadBuildOwners,
    publicRepos: options.publicRepos,
    accessTokenTtlSeconds: options.accessTokenTtlSeconds,
    clock,
  });
  await keys.purgeExpired(clock());
  return {
    mode: options.mode,
    authorizer: options.mode === 'token' ? new TokenAuthorizer(tokens, service) : new OpenAuthorizer(),
    registerRoutes(app) {
      app.register(tokenRoutes, { tokens, service });
    },
    tokens: {
      createApiKey: (request) => tokens.createApiKey(request),
      revoke: (jti) => tokens.revoke(jti),
      issueBuildToken: (request) => tokens.issueBuildToken(request),
    },
  };
}

export { AuthError, OpenAuthorizer, type AccessRequest, type Action, type AuthDecision, type Authorizer, type Principal } from './authorizer.js';
export { AuthModeError, decideAuthMode, isLoopbackHost, type AuthMode } from './mode.js';
export { parseDuration } from './duration.js';
export { tenantScope, tenantNameProblem } from './tenant.js';
export type { LoadBuildOwners, OwnerOfBuild } from './policy.js';
export { parsePublicRepos, DEFAULT_PUBLIC_REPOS_SETTING, type PublicRepos } from './public-repos.js';
export type { ApiKeyStore } from '../store/api-key-store.js';
export { TokenRequestError, type BuildTokenRequest, type ApiKeyRequest, type IssuedApiKey } from './token-service.js';
export type { SignedToken } from './jwt.js';
