// The token endpoint, in both forms clients use:
// - GET /token?service=…&scope=…  with Basic (password = API key) or Bearer API key
//   (Docker's token flow): {token, access_token, expires_in, issued_at}
// - POST /token, application/x-www-form-urlencoded, grant_type=password or
//   refresh_token (containerd/BuildKit's OAuth2 form): {access_token, expires_in, issued_at, scope}
// A caller without credentials gets a token with no access: never more, never an error.
// Refused credentials get 401 with a Basic challenge (the endpoint takes the API
// key as a Basic password); a `service` other than this registry's is refused.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { presentedByAuthorization, presentedByPassword, type Presented } from './credentials.js';
import { InvalidTokenError } from './jwt.js';
import { formatScopes, parseScopeParams, ScopeError } from './scope.js';
import type { AccessToken, Credential, TokenService } from './token-service.js';

export interface TokenRoutesOptions {
  tokens: TokenService;
  /** The `service` this endpoint issues tokens for (the registry's challenges name it). */
  service: string;
}

const FORM = 'application/x-www-form-urlencoded';
const FORM_BODY_LIMIT = 64 * 1024;

interface Exchange {
  grant: AccessToken;
  identity: Credential | null;
}

/** A fastify plugin; register it without fastify-plugin so its form parser stays local. */
export async function tokenRoutes(app: FastifyInstance, options: TokenRoutesOptions): Promise<void> {
  const { tokens, service } = options;
  const unknownService = (asked: string | null) =>
    asked !== null && asked !== service ? `this token endpoint issues tokens for service "${service}", not "${asked}"` : null;
  if (!app.hasContentTypeParser(FORM)) {
    app.addContentTypeParser(FORM, { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_req, body, done) => done(null, body));
  }

  async function exchange(presented: Presented, scopeParams: string[]): Promise<Exchange> {
    const requested = parseScopeParams(scopeParams);
    if (presented.kind === 'malformed') throw new InvalidTokenError('malformed', presented.reason);
    const identity = presented.kind === 'token' ? await tokens.identify(presented.token) : null;
    return { grant: await tokens.issueAccessToken(identity, requested), identity };
  }

  app.get('/token', async (request, reply) => {
    const params = new URL(request.url, 'http://token.invalid').searchParams;
    const presented = presentedByAuthorization(request.headers.authorization);
    const badService = unknownService(params.get('service'));
    if (badService) return dockerError(reply, 400, 'UNSUPPORTED', badService);
    let result: Exchange;
    try {
      result = await exchange(presented, params.getAll('scope'));
    } catch (err) {
      if (err instanceof ScopeError) return dockerError(reply, 400, 'UNSUPPORTED', err.message);
      if (err instanceof InvalidTokenError) return dockerError(challenged(reply, service), 401, 'UNAUTHORIZED', err.message);
      throw err;
    }
    const { grant } = result;
    noStore(reply);
    return {
      token: grant.token,
      access_token: grant.token,
      expires_in: grant.expiresIn,
      issued_at: grant.issuedAt.toISOString(),
      ...refreshToken(result, params.get('offline_token') === 'true', presented),
    };
  });

  app.post('/token', { bodyLimit: FORM_BODY_LIMIT }, async (request, reply) => {
    const form = formFields(request.body);
    const grantType = form.get('grant_type');
    let presented: Presented;
    if (grantType === 'password') presented = presentedByPassword(form.get('username') ?? '', form.get('password') ?? '');
    else if (grantType === 'refresh_token') presented = presentedByPassword(undefined, form.get('refresh_token') ?? '');
    else if (grantType === null || grantType === '') presented = { kind: 'none' };
    else return oauthError(reply, 400, 'unsupported_grant_type', `grant_type "${grantType}" is not supported; use password or refresh_token`);
    if (presented.kind === 'none') presented = presentedByAuthorization(request.headers.authorization);
    const badService = unknownService(form.get('service'));
    if (badService) return oauthError(reply, 400, 'invalid_request', badService);

    let result: Exchange;
    try {
      result = await exchange(presented, form.getAll('scope'));
    } catch (err) {
      if (err instanceof ScopeError) return oauthError(reply, 400, 'invalid_scope', err.message);
      if (err instanceof InvalidTokenError) return oauthError(challenged(reply, service), 401, 'invalid_grant', err.message);
      throw err;
    }
    const { grant } = result;
    noStore(reply);
    return {
      access_token: grant.token,
      expires_in: grant.expiresIn,
      issued_at: grant.issuedAt.toISOString(),
      scope: formatScopes(grant.access),
      ...refreshToken(result, form.get('access_type') === 'offline', presented),
    };
  });
}

// Clients asking for an offline token (`docker login`) keep it as their
// identity token; that is the credential they just proved they hold.
function refreshToken(result: Exchange, wanted: boolean, presented: Presented): { refresh_token?: string } {
  return wanted && result.identity !== null && presented.kind === 'token' ? { refresh_token: presented.token } : {};
}

function formFields(body: unknown): URLSearchParams {
  if (typeof body === 'string') return new URLSearchParams(body);
  if (body instanceof URLSearchParams) return body;
  if (body !== null && typeof body === 'object') {
    const fields = new URLSearchParams();
    for (const [name, value] of Object.entries(body)) {
      for (const item of Array.isArray(value) ? value : [value]) fields.append(name, String(item));
    }
    return fields;
  }
  return new URLSearchParams();
}

/** A 401 says how to authenticate (RFC 9110): here, Basic with the API key as the password. */
function challenged(reply: FastifyReply, service: string): FastifyReply {
  return reply.header('www-authenticate', `Basic realm="${service} token service: send an API key as the password", charset="UTF-8"`);
}

function noStore(reply: FastifyReply): void {
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

function dockerError(reply: FastifyReply, status: 400 | 401, code: string, message: string) {
  noStore(reply);
  return reply.code(status).send({ errors: [{ code, message, detail: null }] });
}

function oauthError(reply: FastifyReply, status: 400 | 401, error: string, description: string) {
  noStore(reply);
  return reply.code(status).send({ error, error_description: description });
}
