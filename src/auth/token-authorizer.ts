// Auth on: every /v2 (and management API) request must carry a Kiln token.
//
// Order of refusals, as Docker clients expect them: no or bad credentials, or
// an anonymous token → 401 with a challenge telling where to get a token; a
// caller the policy never lets do this → 403 DENIED (the reason in the body);
// an access token lacking the scope (but whose owner could get it) → 401
// `insufficient_scope`, so the client fetches a new token. A HEAD answer has
// no body, so its refusals are the 401 `insufficient_scope` challenge with the
// reason as `error_description`, where Docker's and containers/image's clients
// look for one (see refusal()).
import type { IncomingHttpHeaders } from 'node:http';
import { AuthError, type AccessRequest, type Action, type AuthDecision, type Authorizer, type RepoVisibility } from './authorizer.js';
import { presentedByAuthorization } from './credentials.js';
import { InvalidTokenError } from './jwt.js';
import { ALL_ACTIONS, allowedActions, grantAccess, visibleRepos } from './policy.js';
import type { PublicRepos } from './public-repos.js';
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
    const challenge = (error?: string, description?: string) => bearerChallenge({ baseUrl, service: this.service, request, error, description });
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
    const decision: AuthDecision = {
      principal: credential.principal,
      canPull: (repo) => this.canPull(credential, repo),
      visible: visibleTo(credential, this.tokens.policy.publicRepos),
      preparePull: (repos) => this.tokens.preparePolicy(credential.principal, repos),
    };
    if (request.repo === null) {
      if (request.catalog) this.checkCatalog(credential, challenge);
      return decision;
    }

    const repo = request.repo;
    await this.tokens.preparePolicy(credential.principal, [repo]);
    const permitted = allowedActions(credential.principal, repo, this.tokens.policy);
    const forbidden = request.actions.filter((action) => !permitted.includes(action));
    if (forbidden.length > 0) {
      const reason = `${describeCaller(credential)} may not ${forbidden.join(' or ')} ${repo}${hintFor(credential, permitted)}`;
      throw refusal(credential, reason, challenge);
    }
    const access = credential.access;
    const unscoped = access === null ? [] : request.actions.filter((action) => !accessAllows(access, 'repository', repo, action));
    if (unscoped.length > 0) {
      const reason = `the token does not grant ${unscoped.join(', ')} on ${repo}; request a token with that scope`;
      throw new AuthError(401, 'UNAUTHORIZED', reason, challenge('insufficient_scope', reason));
    }
    return decision;
  }

  // The catalog needs `registry:catalog:*` on access tokens, as in distribution: a
  // token fetched for some repository would otherwise list only that one, silently.
  private checkCatalog(credential: Credential, challenge: (error?: string, description?: string) => string): void {
    if (grantAccess(credential.principal, [CATALOG_SCOPE], this.tokens.policy).length === 0) {
      const reason = `${describeCaller(credential)} may not list the catalog`;
      throw refusal(credential, reason, challenge);
    }
    const access = credential.access;
    if (access !== null && !accessAllows(access, 'registry', 'catalog', '*')) {
      const reason = `the token does not grant the catalog; request a token with scope ${formatScope(CATALOG_SCOPE)}`;
      throw new AuthError(401, 'UNAUTHORIZED', reason, challenge('insufficient_scope', reason));
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

/** An access token without the catalog reaches only the repositories it names; other credentials what the policy allows. */
function visibleTo(credential: Credential, publicRepos: PublicRepos): RepoVisibility {
  const access = credential.access;
  if (access === null || accessAllows(access, 'registry', 'catalog', '*')) return visibleRepos(credential.principal, publicRepos);
  return { all: false, prefixes: [], names: access.filter((entry) => entry.type === 'repository').map((entry) => entry.name) };
}

/**
 * A caller the policy refuses: anonymous tokens are asked to authenticate
 * (401, a plain challenge: containerd then reports the answer's status line,
 * which carries the reason); identified callers are DENIED (403). Both carry,
 * for answers without a body, the `insufficient_scope` challenge with the reason.
 */
function refusal(credential: Credential, reason: string, challenge: (error?: string, description?: string) => string): AuthError {
  if (credential.principal.role === 'anonymous') {
    const message = `authentication required: ${reason}`;
    return new AuthError(401, 'UNAUTHORIZED', message, challenge(), challenge('insufficient_scope', message));
  }
  return new AuthError(403, 'DENIED', reason, undefined, challenge('insufficient_scope', reason));
}

function realmOf(baseUrl: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/token`;
}

/**
 * `Bearer realm="<base>/token",service="kiln"`, plus the scope on repository
 * and catalog requests and an error code when the credentials were refused. A push also
 * asks for pull, as distribution does, so one token covers the whole upload.
 */
export function bearerChallenge(input: { baseUrl: string; service: string; request: AccessRequest; error?: string; description?: string }): string {
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
  if (input.description) parts.push(`error_description="${quotable(input.description)}"`);
  return `Bearer ${parts.join(',')}`;
}

/** Text fit for a quoted header parameter: printable ASCII, no quote or backslash. */
function quotable(text: string): string {
  return text.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '?');
}

/** Where the caller may write instead, when it has no right at all on the repository. */
function hintFor(credential: Credential, permitted: readonly Action[]): string {
  const { principal } = credential;
  if (permitted.length > 0) return '';
  if (principal.role === 'tenant' && principal.tenant !== null) return ` (tenant ${principal.tenant} pushes to ${principal.tenant}/<name>)`;
  if (principal.role === 'build') return ` (a build token reaches only builds/${principal.buildId ?? '<id>'} and its caches)`;
  return '';
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
