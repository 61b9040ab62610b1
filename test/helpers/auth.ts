// Clients for the auth tests: the ways a registry client presents credentials
// (Docker's token flow, Basic, Bearer), the challenge parser, and assertions
// for refusals.
import assert from 'node:assert/strict';
import { expectError } from './registry.js';

/** `Basic base64(user:password)`. */
export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** The `base64(token + ":")` form builders write into ~/.docker/config.json. */
export function basicTokenAsUser(token: string): string {
  return `Basic ${Buffer.from(`${token}:`).toString('base64')}`;
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…",error="…"`. */
export function parseChallenge(header: string | null): Challenge {
  assert.ok(header, 'no WWW-Authenticate header');
  const m = /^(\S+)\s+(.*)$/.exec(header);
  assert.ok(m, `WWW-Authenticate "${header}" has no scheme`);
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/([a-z_]+)="([^"]*)"/g)) params[p[1]!] = p[2]!;
  return { scheme: m[1]!, params };
}

/** The payload of a JWT, unverified. */
export function jwtPayload(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  assert.ok(part, `not a JWT: ${token.slice(0, 20)}…`);
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/**
 * How a client authenticates:
 * - `none`: no Authorization header at all;
 * - `header`: a fixed Authorization header on every request (Basic or Bearer straight on /v2);
 * - `token-flow`: Docker's flow: try without credentials, read the 401 challenge,
 *   GET `<realm>?service=…&scope=…` (with Basic when a password is given, anonymously
 *   otherwise), retry with the Bearer token, and keep using that token.
 */
export type ClientAuth =
  | { mode: 'none' }
  | { mode: 'header'; authorization: string }
  | { mode: 'token-flow'; username?: string; password?: string };

export class AuthClient {
  private token: string | null = null;
  /** Every token this client fetched, with the scopes it asked for. */
  readonly fetched: { scope: string[]; token: string }[] = [];

  constructor(
    readonly base: string,
    readonly auth: ClientAuth,
  ) {}

  url(p: string): string {
    return new URL(p, this.base).toString();
  }

  async fetch(p: string, init: RequestInit = {}): Promise<Response> {
    const first = await fetch(this.url(p), this.withAuth(init));
    if (this.auth.mode !== 'token-flow' || first.status !== 401) return first;
    const header = first.headers.get('www-authenticate');
    if (!header || !/^Bearer /i.test(header)) return first;
    // A fresh token for what the challenge names; give up when it is refused, as clients do.
    await first.arrayBuffer();
    const challenge = parseChallenge(header);
    const scope = challenge.params.scope ? [challenge.params.scope] : [];
    const token = await this.requestToken(challenge.params.realm!, challenge.params.service!, scope);
    if (token === null) return first;
    this.token = token;
    return fetch(this.url(p), this.withAuth(init));
  }

  /** GET /token as Docker does; null when the endpoint refuses the credentials. */
  async requestToken(realm: string, service: string, scopes: string[]): Promise<string | null> {
    assert.equal(this.auth.mode, 'token-flow');
    const auth = this.auth as Extract<ClientAuth, { mode: 'token-flow' }>;
    const url = new URL(realm);
    url.searchParams.set('service', service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (auth.password !== undefined) headers.authorization = basic(auth.username ?? 'kiln', auth.password);
    const res = await fetch(url, { headers });
    if (res.status !== 200) {
      await res.arrayBuffer();
      return null;
    }
    const body = (await res.json()) as { token: string };
    this.fetched.push({ scope: scopes, token: body.token });
    return body.token;
  }

  private withAuth(init: RequestInit): RequestInit {
    const headers = new Headers(init.headers);
    if (this.auth.mode === 'header') headers.set('authorization', this.auth.authorization);
    if (this.auth.mode === 'token-flow' && this.token !== null) headers.set('authorization', bearer(this.token));
    return { ...init, headers };
  }
}

export interface RefusalExpectation {
  status: 401 | 403;
  code: 'UNAUTHORIZED' | 'DENIED';
  /** For 401: the challenge's scope (exact), or null when it must have none. */
  scope?: string | null;
  /** For 401: the challenge's error, or null when it must have none. */
  error?: string | null;
  /** The message must match. */
  message?: RegExp;
  /** For 401: the challenge's error_description must match. */
  description?: RegExp;
}

/**
 * Asserts an OCI error answer refusing the request; 401s must carry a Bearer
 * challenge whose realm is `<base>/token` and service `kiln`.
 */
export async function expectRefusal(res: Response, base: string, want: RefusalExpectation, method = 'GET'): Promise<{ message: string }> {
  const challengeHeader = res.headers.get('www-authenticate');
  const error = await expectError(res, { status: want.status, code: want.code }, method);
  if (want.message && method !== 'HEAD') assert.match(error.message, want.message);
  if (want.status === 401) {
    const challenge = parseChallenge(challengeHeader);
    assert.equal(challenge.scheme, 'Bearer');
    assert.equal(challenge.params.realm, `${base}/token`);
    assert.equal(challenge.params.service, 'kiln');
    if (want.scope !== undefined) assert.equal(challenge.params.scope, want.scope ?? undefined, `challenge ${challengeHeader}`);
    if (want.error !== undefined) assert.equal(challenge.params.error, want.error ?? undefined, `challenge ${challengeHeader}`);
    if (want.description) assert.match(challenge.params.error_description ?? '', want.description, `challenge ${challengeHeader}`);
  }
  return { message: error.message };
}
