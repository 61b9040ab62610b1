import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { tenantScope } from './tenant.js';
import { tokenFixture, type TokenFixture } from './testing.js';
import { tokenRoutes } from './token-routes.js';

const ACME_CACHE = `cache/${tenantScope('acme')}`;

let f: TokenFixture;
let app: FastifyInstance;
let apiKey: string;
beforeEach(async () => {
  f = await tokenFixture();
  app = Fastify();
  await app.register(tokenRoutes, { tokens: f.service, service: 'kiln' });
  apiKey = (await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 3600 })).token;
});
afterEach(async () => {
  await app.close();
  f.close();
});

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** What a token handed out by the endpoint actually grants. */
async function accessOf(token: string) {
  return (await f.service.authenticate(token)).access;
}

function get(query: string, authorization?: string) {
  return app.inject({ method: 'GET', url: `/token?${query}`, headers: authorization ? { authorization } : {} });
}

function post(form: Record<string, string | string[]>, authorization?: string) {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(form)) for (const v of [value].flat()) body.append(name, v);
  return app.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) },
    payload: body.toString(),
  });
}

describe('GET /token (Docker token flow)', () => {
  it('answers Basic credentials (any username, password = API key) with the intersection of asked and allowed', async () => {
    const res = await get(
      `service=kiln&scope=repository:acme/app:pull,push&scope=repository:beta/app:pull&scope=repository:cache/global/k:pull,push`,
      basic('whoever', apiKey),
    );
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'expires_in', 'issued_at', 'token']);
    assert.equal(body.token, body.access_token);
    assert.equal(body.expires_in, 600);
    assert.ok(!Number.isNaN(Date.parse(body.issued_at)));
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(await accessOf(body.token), [
      { type: 'repository', name: 'acme/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'cache/global/k', actions: ['pull'] },
    ]);
  });
  it('answers a Bearer API key', async () => {
    const res = await get(`service=kiln&scope=repository:${ACME_CACHE}:pull,push`, `Bearer ${apiKey}`);
    assert.deepEqual(await accessOf(res.json().token), [{ type: 'repository', name: ACME_CACHE, actions: ['pull', 'push'] }]);
  });
  it('answers the token-as-username form', async () => {
    const res = await get('scope=repository:acme/app:pull', basic(apiKey, ''));
    assert.deepEqual(await accessOf(res.json().token), [{ type: 'repository', name: 'acme/app', actions: ['pull'] }]);
  });
  it('gives anonymous callers a token with no access', async () => {
    const res = await get('service=kiln&scope=repository:acme/app:pull,push');
    assert.equal(res.statusCode, 200);
    const credential = await f.service.authenticate(res.json().token);
    assert.equal(credential.principal.role, 'anonymous');
    assert.deepEqual(credential.access, []);
  });
  it('gives a token with no access when nothing is asked', async () => {
    const res = await get('service=kiln', basic('acme', apiKey));
    assert.deepEqual(await accessOf(res.json().token), []);
  });
  it('returns the API key as refresh token for docker login (offline_token=true)', async () => {
    const res = await get('service=kiln&client_id=docker&offline_token=true', basic('acme', apiKey));
    assert.equal(res.json().refresh_token, apiKey);
    assert.equal((await get('service=kiln&offline_token=true')).json().refresh_token, undefined);
  });
  it('refuses a bad password with 401, saying why and how to authenticate', async () => {
    const res = await get('scope=repository:acme/app:pull', basic('acme', 'hunter2'));
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().errors[0].code, 'UNAUTHORIZED');
    assert.match(res.json().errors[0].message, /not a Kiln token/);
    assert.match(String(res.headers['www-authenticate']), /^Basic realm="kiln token service[^"]*"/);
  });
  it('refuses a service other than its own with 400, naming both', async () => {
    const res = await get('service=registry.docker.io&scope=repository:acme/app:pull', basic('acme', apiKey));
    assert.equal(res.statusCode, 400);
    assert.match(res.json().errors[0].message, /issues tokens for service "kiln", not "registry\.docker\.io"/);
    const form = await post({ grant_type: 'password', service: 'elsewhere', username: 'acme', password: apiKey });
    assert.equal(form.statusCode, 400);
    assert.equal(form.json().error, 'invalid_request');
    assert.match(form.json().error_description, /not "elsewhere"/);
    // Its own service, or none at all (curl users), still works.
    assert.equal((await get('service=kiln', basic('acme', apiKey))).statusCode, 200);
    assert.equal((await get('', basic('acme', apiKey))).statusCode, 200);
  });
  it('refuses a revoked key, saying it was revoked', async () => {
    const key = await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 60 });
    await f.service.revoke(key.jti);
    const res = await get('scope=repository:acme/app:pull', basic('acme', key.token));
    assert.equal(res.statusCode, 401);
    assert.match(res.json().errors[0].message, /was revoked/);
  });
  it('refuses to widen an access token', async () => {
    const narrow = (await get('scope=repository:acme/app:pull', basic('acme', apiKey))).json().token;
    const res = await get('scope=repository:acme/app:pull,push,delete', basic('acme', narrow));
    assert.equal(res.statusCode, 401);
    assert.match(res.json().errors[0].message, /cannot be exchanged/);
  });
  it('refuses a malformed scope with 400', async () => {
    const res = await get('scope=repository-acme-app', basic('acme', apiKey));
    assert.equal(res.statusCode, 400);
    assert.match(res.json().errors[0].message, /type:name:actions/);
  });
});

describe('POST /token (OAuth2 form)', () => {
  it('answers grant_type=password with access_token, expires_in, issued_at and the granted scope', async () => {
    const res = await post({
      grant_type: 'password',
      username: 'acme',
      password: apiKey,
      service: 'kiln',
      client_id: 'buildkit-client',
      scope: 'repository:acme/app:pull,push repository:beta/app:pull',
    });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'expires_in', 'issued_at', 'scope']);
    assert.equal(body.scope, 'repository:acme/app:pull,push');
    assert.equal(body.expires_in, 600);
    assert.deepEqual(await accessOf(body.access_token), [{ type: 'repository', name: 'acme/app', actions: ['pull', 'push'] }]);
  });
  it('answers grant_type=refresh_token (BuildKit with an identitytoken)', async () => {
    const res = await post({
      grant_type: 'refresh_token',
      refresh_token: apiKey,
      service: 'kiln',
      client_id: 'buildkit-client',
      scope: ['repository:acme/app:pull', `repository:${ACME_CACHE}:pull,push`],
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().scope, `repository:acme/app:pull repository:${ACME_CACHE}:pull,push`);
  });
  it('answers a build token as password with its build column only', async () => {
    const build = await f.service.issueBuildToken({ buildId: 'b7', tenant: 'acme', admin: false, globalKey: 'k', expiresAt: new Date() });
    const res = await post({
      grant_type: 'password',
      username: 'kiln-build',
      password: build.token,
      scope: `repository:builds/b7:pull,push repository:cache/global/k:pull,push repository:acme/app:pull`,
    });
    assert.equal(res.json().scope, 'repository:builds/b7:pull,push repository:cache/global/k:pull');
  });
  it('returns the key as refresh token when access_type=offline', async () => {
    const res = await post({ grant_type: 'password', username: 'acme', password: apiKey, access_type: 'offline' });
    assert.equal(res.json().refresh_token, apiKey);
  });
  it('gives a request without credentials a token with no access', async () => {
    const res = await post({ service: 'kiln', scope: 'repository:acme/app:pull' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().scope, '');
    assert.deepEqual(await accessOf(res.json().access_token), []);
  });
  it('falls back to the Authorization header', async () => {
    const res = await post({ scope: 'repository:acme/app:pull' }, `Bearer ${apiKey}`);
    assert.equal(res.json().scope, 'repository:acme/app:pull');
  });
  it('refuses bad credentials with invalid_grant', async () => {
    const res = await post({ grant_type: 'password', username: 'acme', password: 'hunter2', scope: 'repository:acme/app:pull' });
    assert.equal(res.statusCode, 401);
    assert.match(String(res.headers['www-authenticate']), /^Basic realm=/);
    assert.equal(res.json().error, 'invalid_grant');
    assert.match(res.json().error_description, /not a Kiln token/);
  });
  it('refuses an unknown grant type', async () => {
    const res = await post({ grant_type: 'client_credentials' });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error, 'unsupported_grant_type');
  });
  it('refuses a malformed scope', async () => {
    const res = await post({ grant_type: 'password', username: 'a', password: apiKey, scope: 'nonsense' });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error, 'invalid_scope');
  });
});

describe('token endpoint over a real socket', () => {
  it('serves both forms on 127.0.0.1', async () => {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const base = `http://127.0.0.1:${port}`;
    const got = await fetch(`${base}/token?service=kiln&scope=repository:acme/app:pull`, { headers: { authorization: basic('acme', apiKey) } });
    assert.equal(got.status, 200);
    assert.deepEqual(await accessOf(((await got.json()) as { token: string }).token), [{ type: 'repository', name: 'acme/app', actions: ['pull'] }]);
    const posted = await fetch(`${base}/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: apiKey, scope: 'repository:acme/app:push' }),
    });
    assert.equal(posted.status, 200);
    assert.equal(((await posted.json()) as { scope: string }).scope, 'repository:acme/app:push');
  });
});
