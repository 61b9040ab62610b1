// Auth on: every /v2 (and management API) request must carry a Kiln token.
//
// Order of refusals, as Docker clients expect them: no or bad credentials →
// 401 with a challenge telling where to get a token; a caller the policy never
// lets do this → 403 DENIED; an access token lacking the scope (but whose owner
// could get it) → 401 `insufficient_scope`, so the client fetches a new token.
import type { IncomingHttpHeaders } from 'node:http';
import { AuthError, type AccessRequest, type Action, type AuthDecision, type Authorizer } from './authorizer.js';
import { presentedByAuthorization } from './credentials.js';
import { InvalidTokenError } from './jwt.js';
import { ALL_ACTIONS, allowedActions, grantAccess } from './policy.js';
import { accessAllows, formatScope, type ResourceScope } from './scope.js';
import type { Credential, TokenService } from './token-service.js';

export const DEFAULT_SERVICE = 'kiln';

const CATALOG_SCOPE: ResourceScope = { type: 'registry', name: 'catalog', actions: ['*'] };

export class TokenAuthorizer implements Authorizer {
  readonly enabled = true;

  constructor(
    private readonly tokens: TokenService,
    private readonly service = DEFAULT_SERVICE,
  ) {}

  async authorize(headers: IncomingHttpHeaders, request: AccessRequest, baseUrl: string): Promise<AuthDecision> {
    const challenge = (error?: string) => bearerChallenge({ baseUrl, service: this.service, request, error });
    const presented = presentedByAuthorization(headers.authorization);
    if (presented.kind === 'none') {
      throw new AuthError(401, 'UNAUTHORIZED', `authentication required: get a token from ${realmOf(baseUrl)}`, challenge());
    }
    if (presented.kind === 'malformed') {
      throw new AuthError(401, 'UNAUTHORIZED', presented.reason, challenge('invalid_request'));
    }
    let credential: Credential;
    try {
      credential = await this.tokens.authenticate(presented.token);
    } catch (err) {
      if (err instanceof InvalidTokenError) throw new AuthError(401, 'UNAUTHORIZED', err.message, challenge('invalid_token'));
      throw err;
    }
    const decision: AuthDecision = { principal: credential.principal, canPull: (repo) => this.canPull(credential, repo) };
    if (request.repo === null) {
      if (request.catalog) this.checkCatalog(credential, challenge);
      return decision;
    }

    const repo = request.repo;
    const permitted = allowedActions(credential.principal, repo, this.tokens.policy);
    const forbidden = request.actions.filter((action) => !permitted.includes(action));
    if (forbidden.length > 0) {
      throw new AuthError(403, 'DENIED', `${describeCaller(credential)} may not ${forbidden.join(' or ')} ${repo}`);
    }
    const access = credential.access;
    const unscoped = access === null ? [] : request.actions.filter((action) => !accessAllows(access, 'repository', repo, action));
    if (unscoped.length > 0) {
      throw new AuthError(
        401,
        'UNAUTHORIZED',
        `the token does not grant ${unscoped.join(', ')} on ${repo}; request a token with that scope`,
        challenge('insufficient_scope'),
      );
    }
    return decision;
  }

  // The catalog needs `registry:catalog:*` on access tokens, as in distribution: a
  // token fetched for some repository would otherwise list only that one, silently.
  private checkCatalog(credential: Credential, challenge: (error?: string) => string): void {
    if (grantAccess(credential.principal, [CATALOG_SCOPE], this.tokens.policy).length === 0) {
      throw new AuthError(403, 'DENIED', `${describeCaller(credential)} may not list the catalog`);
    }
    const access = credential.access;
    if (access !== null && !accessAllows(access, 'registry', 'catalog', '*')) {
      throw new AuthError(
        401,
        'UNAUTHORIZED',
        `the token does not grant the catalog; request a token with scope ${formatScope(CATALOG_SCOPE)}`,
        challenge('insufficient_scope'),
      );
    }
  }

  // Listing is cut to the policy, and for access tokens to what they carry
  // unless they were granted the catalog as such.
  private canPull(credential: Credential, repo: string): boolean {
    if (!allowedActions(credential.principal, repo, this.tokens.policy).includes('pull')) return false;
    const access = credential.access;
    return access === null || accessAllows(access, 'registry', 'catalog', '*') || accessAllows(access, 'repository', repo, 'pull');
  }
}

function realmOf(baseUrl: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/token`;
}

/**
 * `Bearer realm="<base>/token",service="kiln"`, plus the scope on repository
 * and catalog requests and an error code when the credentials were refused. A push also
 * asks for pull, as distribution does, so one token covers the whole upload.
 */
export function bearerChallenge(input: { baseUrl: string; service: string; request: AccessRequest; error?: string }): string {
  const parts = [`realm="${realmOf(input.baseUrl)}"`, `service="${input.service}"`];
  const { repo, actions, catalog } = input.request;
  if (repo !== null && actions.length > 0) {
    const wanted = new Set<Action>(actions.includes('push') ? ['pull', ...actions] : actions);
    const ordered = ALL_ACTIONS.filter((action) => wanted.has(action));
    parts.push(`scope="${formatScope({ type: 'repository', name: repo, actions: ordered })}"`);
  } else if (repo === null && catalog) {
    parts.push(`scope="${formatScope(CATALOG_SCOPE)}"`);
  }
  if (input.error) parts.push(`error="${input.error}"`);
  return `Bearer ${parts.join(',')}`;
}

function describeCaller(credential: Credential): string {
  const { principal } = credential;
  switch (principal.role) {
    case 'anonymous':
      return 'an anonymous caller (log in with an API key)';
    case 'build':
      return `the token of build ${principal.buildId ?? '?'}`;
    case 'tenant':
      return `tenant ${principal.tenant}`;
    case 'admin':
      return 'admin';
  }
}
