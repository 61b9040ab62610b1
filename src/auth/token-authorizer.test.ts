import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { AuthError, type AccessRequest, type Action } from './authorizer.js';
import { tenantScope } from './tenant.js';
import { foreignSigner, tokenFixture, type TokenFixture } from './testing.js';
import { bearerChallenge, TokenAuthorizer } from './token-authorizer.js';

const BASE = 'http://registry.test:5000';
const REALM = 'Bearer realm="http://registry.test:5000/token",service="kiln"';

let f: TokenFixture;
let authorizer: TokenAuthorizer;
let apiKey: string;
beforeEach(async () => {
  f = await tokenFixture({ ownerOfBuild: (id) => (id === 'b1' ? 'acme' : null) });
  authorizer = new TokenAuthorizer(f.service);
  apiKey = (await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 3600 })).token;
});
afterEach(() => f.close());

const bearer = (token: string): IncomingHttpHeaders => ({ authorization: `Bearer ${token}` });
const basic = (user: string, password: string): IncomingHttpHeaders => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
});
const repo = (name: string, ...actions: Action[]): AccessRequest => ({ repo: name, actions });
const registry: AccessRequest = { repo: null, actions: [] };
const catalog: AccessRequest = { repo: null, actions: [], catalog: true };

async function accessToken(scopes: { name: string; actions: string[] }[], key = apiKey): Promise<string> {
  const identity = await f.service.identify(key);
  return (await f.service.issueAccessToken(identity, scopes.map((s) => ({ type: 'repository', ...s })))).token;
}

function refused(status: 401 | 403, code: 'UNAUTHORIZED' | 'DENIED', message: RegExp, challenge?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof AuthError, `expected an AuthError, got ${String(err)}`);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    assert.match(err.message, message);
    // Refusals of identified callers also say why in the challenge (error_description).
    if (challenge?.includes('error="insufficient_scope"')) assert.ok(err.challenge?.startsWith(`${challenge},error_description="`), err.challenge);
    else assert.equal(err.challenge, challenge);
    return true;
  };
}

describe('TokenAuthorizer: no credentials', () => {
  it('challenges repository requests with the scope they need', () =>
    assert.rejects(
      authorizer.authorize({}, repo('acme/app', 'pull'), BASE),
      refused(401, 'UNAUTHORIZED', /authentication required/, `${REALM},scope="repository:acme/app:pull"`),
    ));
  it('asks for pull and push on pushes', () =>
    assert.rejects(
      authorizer.authorize({}, repo('acme/app', 'push'), BASE),
      refused(401, 'UNAUTHORIZED', /authentication required/, `${REALM},scope="repository:acme/app:pull,push"`),
    ));
  it('challenges /v2/ without a scope', () =>
    assert.rejects(authorizer.authorize({}, registry, `${BASE}/`), refused(401, 'UNAUTHORIZED', /authentication required/, REALM)));
  it('refuses an unknown scheme', () =>
    assert.rejects(
      authorizer.authorize({ authorization: 'Digest x' }, registry, BASE),
      refused(401, 'UNAUTHORIZED', /not supported/, `${REALM},error="invalid_request"`),
    ));
});

describe('TokenAuthorizer: credential forms', () => {
  it('accepts a Bearer access token', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    const decision = await authorizer.authorize(bearer(token), repo('acme/app', 'pull'), BASE);
    assert.equal(decision.principal.tenant, 'acme');
  });
  it('accepts Basic with the token as password and any username', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    await authorizer.authorize(basic('whoever', token), repo('acme/app', 'pull'), BASE);
  });
  it('accepts Basic with the token as username and an empty password', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    await authorizer.authorize(basic(token, ''), repo('acme/app', 'pull'), BASE);
  });
  it('accepts an API key directly, as Bearer or Basic, with all its policy allows', async () => {
    await authorizer.authorize(bearer(apiKey), repo('acme/app', 'pull', 'push', 'delete'), BASE);
    await authorizer.authorize(basic('acme', apiKey), repo('acme/app', 'push'), BASE);
    await authorizer.authorize(basic(apiKey, ''), repo(`cache/${tenantScope('acme')}`, 'push'), BASE);
  });
  it('accepts a build token directly', async () => {
    const build = await f.service.issueBuildToken({ buildId: 'b1', tenant: 'acme', admin: false, globalKey: null, expiresAt: new Date() });
    const decision = await authorizer.authorize(basic('kiln-build', build.token), repo('builds/b1', 'push'), BASE);
    assert.equal(decision.principal.buildId, 'b1');
  });
  it('lets any valid caller reach /v2/', async () => {
    const anonymous = (await f.service.issueAccessToken(null, [])).token;
    assert.equal((await authorizer.authorize(bearer(anonymous), registry, BASE)).principal.role, 'anonymous');
    assert.equal((await authorizer.authorize(bearer(apiKey), registry, BASE)).principal.role, 'tenant');
  });
});

describe('TokenAuthorizer: refused credentials', () => {
  const invalid = `${REALM},scope="repository:acme/app:pull",error="invalid_token"`;
  it('an expired token', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    f.setNow(new Date(Date.now() + 3_600_000));
    await assert.rejects(authorizer.authorize(bearer(token), repo('acme/app', 'pull'), BASE), refused(401, 'UNAUTHORIZED', /expired/, invalid));
  });
  it('a tampered token', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    claims.access = [{ type: 'repository', name: 'acme/app', actions: ['pull', 'push', 'delete'] }];
    const forged = [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), signature].join('.');
    await assert.rejects(authorizer.authorize(bearer(forged), repo('acme/app', 'pull'), BASE), refused(401, 'UNAUTHORIZED', /altered/, invalid));
  });
  it('a token from another key', async () => {
    const other = await foreignSigner();
    const now = new Date();
    const { token } = await other.sign(
      { kind: 'access', sub: 'admin', tenant: null, role: 'admin', access: [{ type: 'repository', name: 'acme/app', actions: ['pull'] }] },
      now,
      new Date(now.getTime() + 60_000),
    );
    await assert.rejects(authorizer.authorize(bearer(token), repo('acme/app', 'pull'), BASE), refused(401, 'UNAUTHORIZED', /another key/, invalid));
  });
  it('a revoked API key', async () => {
    const key = await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 60 });
    await f.service.revoke(key.jti);
    await assert.rejects(authorizer.authorize(basic('x', key.token), repo('acme/app', 'pull'), BASE), refused(401, 'UNAUTHORIZED', /revoked/, invalid));
  });
  it('a password that is no token at all', () =>
    assert.rejects(authorizer.authorize(basic('acme', 'hunter2'), repo('acme/app', 'pull'), BASE), refused(401, 'UNAUTHORIZED', /not a Kiln token/, invalid)));
});

describe('TokenAuthorizer: scope and policy', () => {
  it('sends a token lacking the scope back for a new one', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    await assert.rejects(
      authorizer.authorize(bearer(token), repo('acme/app', 'push'), BASE),
      refused(401, 'UNAUTHORIZED', /does not grant push on acme\/app/, `${REALM},scope="repository:acme/app:pull,push",error="insufficient_scope"`),
    );
  });
  it('treats a token for another repository as lacking scope', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    await assert.rejects(
      authorizer.authorize(bearer(token), repo('acme/other', 'pull'), BASE),
      refused(401, 'UNAUTHORIZED', /does not grant pull/, `${REALM},scope="repository:acme/other:pull",error="insufficient_scope"`),
    );
  });
  it('denies what the policy never allows, whatever the token, with the reason ready for answers without a body', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    await assert.rejects(authorizer.authorize(bearer(token), repo('beta/app', 'pull'), BASE), (err: unknown) => {
      refused(403, 'DENIED', /tenant acme may not pull beta\/app/)(err);
      assert.equal(
        (err as AuthError).bodilessChallenge,
        `${REALM},scope="repository:beta/app:pull",error="insufficient_scope",error_description="tenant acme may not pull beta/app (tenant acme pushes to acme/<name>)"`,
      );
      return true;
    });
  });
  it('challenges anonymous callers holding an empty token to authenticate', async () => {
    const anonymous = (await f.service.issueAccessToken(null, [{ type: 'repository', name: 'acme/app', actions: ['pull'] }])).token;
    await assert.rejects(authorizer.authorize(bearer(anonymous), repo('acme/app', 'pull'), BASE), (err: unknown) => {
      refused(401, 'UNAUTHORIZED', /authentication required: an anonymous caller/, `${REALM},scope="repository:acme/app:pull"`)(err);
      assert.match(String((err as AuthError).bodilessChallenge), /,error="insufficient_scope",error_description="authentication required: an anonymous caller/);
      return true;
    });
  });
  it('keeps tenants out of the global cache', async () => {
    await assert.rejects(authorizer.authorize(bearer(apiKey), repo('cache/global/node20', 'push'), BASE), refused(403, 'DENIED', /may not push/));
    await authorizer.authorize(bearer(apiKey), repo('cache/global/node20', 'pull'), BASE);
  });
  it('keeps a build token inside its build and cache', async () => {
    const build = (await f.service.issueBuildToken({ buildId: 'b1', tenant: 'acme', admin: false, globalKey: 'node20', expiresAt: new Date() })).token;
    await authorizer.authorize(bearer(build), repo('builds/b1', 'pull', 'push'), BASE);
    await authorizer.authorize(bearer(build), repo(`cache/${tenantScope('acme')}`, 'push'), BASE);
    for (const outside of ['acme/app', 'builds/b2', 'cache/global/node20', `cache/${tenantScope('beta')}`]) {
      await assert.rejects(authorizer.authorize(bearer(build), repo(outside, 'push'), BASE), refused(403, 'DENIED', /build b1 may not push/));
    }
  });
  it('denies deleting what a tenant may only pull', async () => {
    await assert.rejects(authorizer.authorize(bearer(apiKey), repo('builds/b1', 'push'), BASE), refused(403, 'DENIED', /may not push builds\/b1/));
    await authorizer.authorize(bearer(apiKey), repo('builds/b1', 'pull', 'delete'), BASE);
  });
  it('names every forbidden action', async () => {
    await assert.rejects(
      authorizer.authorize(bearer(apiKey), repo('cache/global/x', 'pull', 'push', 'delete'), BASE),
      refused(403, 'DENIED', /may not push or delete cache\/global\/x/),
    );
  });
});

describe('TokenAuthorizer: catalog filtering', () => {
  it('lets an API key list what its policy may pull', async () => {
    const decision = await authorizer.authorize(bearer(apiKey), registry, BASE);
    assert.deepEqual(
      ['acme/app', 'acme/x', 'beta/app', 'cache/global/k', 'builds/b1', 'builds/b2'].filter((r) => decision.canPull(r)),
      ['acme/app', 'acme/x', 'cache/global/k', 'builds/b1'],
    );
  });
  it('cuts an access token to what it carries', async () => {
    const decision = await authorizer.authorize(bearer(await accessToken([{ name: 'acme/app', actions: ['pull'] }])), registry, BASE);
    assert.deepEqual(['acme/app', 'acme/x', 'beta/app'].filter((r) => decision.canPull(r)), ['acme/app']);
  });
  it('asks an access token without the catalog for registry:catalog:* on catalog requests', async () => {
    const token = await accessToken([{ name: 'acme/app', actions: ['pull'] }]);
    await assert.rejects(
      authorizer.authorize(bearer(token), catalog, BASE),
      refused(401, 'UNAUTHORIZED', /registry:catalog:\*/, `${REALM},scope="registry:catalog:*",error="insufficient_scope"`),
    );
  });
  it('refuses the catalog to anonymous tokens', async () => {
    const token = (await f.service.issueAccessToken(null, [{ type: 'registry', name: 'catalog', actions: ['*'] }])).token;
    await assert.rejects(
      authorizer.authorize(bearer(token), catalog, BASE),
      refused(401, 'UNAUTHORIZED', /anonymous.*catalog/, `${REALM},scope="registry:catalog:*"`),
    );
  });
  it('lets API keys list the catalog without a scope', async () => {
    const decision = await authorizer.authorize(bearer(apiKey), catalog, BASE);
    assert.equal(decision.canPull('acme/app'), true);
  });
  it('widens an access token granted the catalog to the policy', async () => {
    const identity = await f.service.identify(apiKey);
    const token = (await f.service.issueAccessToken(identity, [{ type: 'registry', name: 'catalog', actions: ['*'] }])).token;
    const decision = await authorizer.authorize(bearer(token), catalog, BASE);
    assert.deepEqual(['acme/app', 'acme/x', 'beta/app'].filter((r) => decision.canPull(r)), ['acme/app', 'acme/x']);
  });
});

describe('bearerChallenge', () => {
  const cases: [string, AccessRequest, string | undefined, string][] = [
    ['registry', registry, undefined, REALM],
    ['catalog', catalog, undefined, `${REALM},scope="registry:catalog:*"`],
    ['pull', repo('a/b', 'pull'), undefined, `${REALM},scope="repository:a/b:pull"`],
    ['push', repo('a/b', 'push'), undefined, `${REALM},scope="repository:a/b:pull,push"`],
    ['delete', repo('a/b', 'delete'), undefined, `${REALM},scope="repository:a/b:delete"`],
    ['ordered', repo('a/b', 'delete', 'pull'), undefined, `${REALM},scope="repository:a/b:pull,delete"`],
    ['error', repo('a/b', 'pull'), 'insufficient_scope', `${REALM},scope="repository:a/b:pull",error="insufficient_scope"`],
    ['no actions', repo('a/b'), undefined, REALM],
  ];
  for (const [name, request, error, expected] of cases) {
    it(name, () => assert.equal(bearerChallenge({ baseUrl: `${BASE}//`, service: 'kiln', request, error }), expected));
  }
});
