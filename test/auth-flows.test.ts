// Issue 4's flows over real HTTP: the 401 challenge, GET and POST /token as
// Docker and containerd/BuildKit use them, anonymous tokens, insufficient
// scope, refused credentials (expired, tampered, wrong key, revoked), build
// and tenant tokens kept to their repos (build tokens may pull their FROM
// repos), and the management API.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { TokenSigner, type ClaimsToSign } from '../src/auth/jwt.js';
import { loadSigningKey } from '../src/auth/keys.js';
import { foreignSigner } from '../src/auth/testing.js';
import { basic, basicTokenAsUser, bearer, expectRefusal, jwtPayload, parseChallenge } from './helpers/auth.js';
import { startKiln, type TestKiln } from './helpers/kiln.js';
import {
  OCI_CONFIG,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
  TEST_CONFIG,
  blob,
  descriptor,
  manifestBlob,
  randomBlob,
  rawRequest,
  type Blob,
} from './helpers/registry.js';

const T = 'acme';
const U = 'umbrella';
const K = 'node';
const BUILD = 'b1acme';
const scopeOf = (tenant: string) => 'tenant-' + createHash('sha256').update(tenant).digest('hex').slice(0, 16);
const CACHE_T = `cache/${scopeOf(T)}`;
const CACHE_U = `cache/${scopeOf(U)}`;

let server: TestKiln;
let base: string;
let realm: string;
let keyT: string;
let keyU: string;
let keyAdmin: string;
let buildToken: string;

before(async () => {
  server = await startKiln({ env: { KILN_AUTH: 'token' }, ownerOfBuild: (id) => (id === BUILD ? T : null) });
  base = server.url;
  realm = `${base}/token`;
  const { tokens } = server.kiln.auth;
  keyT = (await tokens.createApiKey({ tenant: T, ttlSeconds: 3600 })).token;
  keyU = (await tokens.createApiKey({ tenant: U, ttlSeconds: 3600 })).token;
  keyAdmin = (await tokens.createApiKey({ admin: true, ttlSeconds: 3600 })).token;
  buildToken = (await tokens.issueBuildToken({ buildId: BUILD, tenant: T, admin: false, globalKey: K, expiresAt: new Date(Date.now() + 3600_000) })).token;
  // Something to pull in each repo the tests read.
  for (const repo of [`${T}/app`, `${U}/app`, `cache/global/${K}`]) await pushImage(repo, 'v1', basic('admin', keyAdmin));
});

after(async () => {
  await server?.close();
});

// ---- helpers ----------------------------------------------------------------------

function v2(p: string, init: RequestInit & { auth?: string } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.auth) headers.set('authorization', init.auth);
  return fetch(`${base}${p}`, { ...init, headers });
}

async function pushBlob(repo: string, b: Blob, auth: string): Promise<Response> {
  const post = await v2(`/v2/${repo}/blobs/uploads/`, { method: 'POST', auth });
  if (post.status !== 202) return post;
  const location = new URL(post.headers.get('location')!, base);
  location.searchParams.set('digest', b.digest);
  return v2(location.pathname + location.search, { method: 'PUT', body: b.bytes, auth, headers: { 'content-type': 'application/octet-stream' } });
}

/** Pushes a config, a layer and a manifest; the first refused answer, or the manifest PUT's. */
async function pushImage(repo: string, tag: string, auth: string, opts: { config?: Blob; layer?: Blob; configType?: string } = {}): Promise<Response> {
  const config = opts.config ?? blob(JSON.stringify({ repo, tag, n: Math.random() }));
  const layer = opts.layer ?? randomBlob(128);
  for (const b of [config, layer]) {
    const res = await pushBlob(repo, b, auth);
    if (res.status !== 201) return res;
  }
  const manifest = manifestBlob({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: descriptor(config, opts.configType ?? TEST_CONFIG),
    layers: [descriptor(layer, OCI_LAYER_GZIP)],
  });
  return v2(`/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: manifest.bytes, auth, headers: { 'content-type': OCI_MANIFEST } });
}

async function mustPushImage(repo: string, tag: string, auth: string, opts: Parameters<typeof pushImage>[3] = {}): Promise<void> {
  const res = await pushImage(repo, tag, auth, opts);
  assert.equal(res.status, 201, `push ${repo}:${tag}: ${res.status} ${await res.text()}`);
}

interface GetTokenAnswer {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
  refresh_token?: string;
}

async function getToken(scopes: string[], auth?: string, extra: Record<string, string> = {}): Promise<Response> {
  const url = new URL(realm);
  url.searchParams.set('service', 'kiln');
  for (const s of scopes) url.searchParams.append('scope', s);
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
  return fetch(url, auth ? { headers: { authorization: auth } } : {});
}

async function mustGetToken(scopes: string[], auth?: string): Promise<string> {
  const res = await getToken(scopes, auth);
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as GetTokenAnswer).token;
}

function postToken(fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(realm, {
    method: 'POST',
    body: new URLSearchParams(fields).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

const accessOf = (token: string) => jwtPayload(token).access as { type: string; name: string; actions: string[] }[];

// ---- the challenge ------------------------------------------------------------------

describe('the 401 challenge', () => {
  it('an unauthenticated /v2/ gets 401 with Bearer realm="<base>/token",service="kiln"', async () => {
    for (const p of ['/v2/', '/v2']) {
      const res = await v2(p);
      assert.equal(res.headers.get('www-authenticate'), `Bearer realm="${base}/token",service="kiln"`);
      await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', scope: null, error: null });
    }
    const head = await v2('/v2/', { method: 'HEAD' });
    assert.equal(head.headers.get('www-authenticate'), `Bearer realm="${base}/token",service="kiln"`);
    await expectRefusal(head, base, { status: 401, code: 'UNAUTHORIZED' }, 'HEAD');
  });

  it('the realm follows the Host the client used', async () => {
    // fetch will not set Host; a plain request does.
    const res = await rawRequest(base, 'GET', '/v2/', { headers: { host: 'registry.example:5000' } });
    assert.equal(res?.status, 401);
    assert.equal(parseChallenge(String(res!.headers['www-authenticate'])).params.realm, 'http://registry.example:5000/token');
  });

  it('repository requests name the scope they need', async () => {
    const cases: [string, string, string][] = [
      ['GET', `/v2/${T}/app/manifests/v1`, 'pull'],
      ['HEAD', `/v2/${T}/app/manifests/v1`, 'pull'],
      ['GET', `/v2/${T}/app/tags/list`, 'pull'],
      ['GET', `/v2/${T}/app/blobs/sha256:${'a'.repeat(64)}`, 'pull'],
      ['POST', `/v2/${T}/app/blobs/uploads/`, 'pull,push'],
      ['PUT', `/v2/${T}/app/manifests/v2`, 'pull,push'],
      ['DELETE', `/v2/${T}/app/manifests/v1`, 'delete'],
    ];
    for (const [method, p, actions] of cases) {
      const res = await v2(p, { method });
      await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', scope: `repository:${T}/app:${actions}`, error: null }, method);
    }
  });

  it('the catalog asks for registry:catalog:*', async () => {
    await expectRefusal(await v2('/v2/_catalog'), base, { status: 401, code: 'UNAUTHORIZED', scope: 'registry:catalog:*' });
  });
});

// ---- GET /token -----------------------------------------------------------------------

describe('GET /token (Docker token flow)', () => {
  it('answers the intersection of repeated scopes and the policy', async () => {
    const res = await getToken(
      [`repository:${T}/app:pull,push`, `repository:${U}/app:pull`, `repository:cache/global/${K}:pull,push`, `repository:${CACHE_T}:push,delete`],
      basic('anyone', keyT),
    );
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = (await res.json()) as GetTokenAnswer;
    assert.equal(body.token, body.access_token);
    assert.ok(body.expires_in > 0 && body.expires_in <= 600, `expires_in ${body.expires_in}`);
    assert.ok(Math.abs(Date.parse(body.issued_at) - Date.now()) < 60_000, `issued_at ${body.issued_at}`);
    assert.deepEqual(accessOf(body.token), [
      { type: 'repository', name: `${T}/app`, actions: ['pull', 'push'] },
      { type: 'repository', name: `cache/global/${K}`, actions: ['pull'] },
      { type: 'repository', name: CACHE_T, actions: ['push'] },
    ]);
    const payload = jwtPayload(body.token);
    assert.equal(payload.tenant, T);
    assert.equal(payload.role, 'tenant');
    assert.equal(typeof payload.jti, 'string');
    assert.equal((payload.exp as number) - (payload.iat as number), body.expires_in);
  });

  it('takes the API key as a Bearer credential too, and the token works on /v2', async () => {
    const token = await mustGetToken([`repository:${T}/app:pull`], bearer(keyT));
    assert.deepEqual(accessOf(token), [{ type: 'repository', name: `${T}/app`, actions: ['pull'] }]);
    const res = await v2(`/v2/${T}/app/manifests/v1`, { auth: bearer(token), headers: { accept: OCI_MANIFEST } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  it('accepts the key as the username with an empty password', async () => {
    const token = await mustGetToken([`repository:${T}/app:pull`], basicTokenAsUser(keyT));
    assert.deepEqual(accessOf(token), [{ type: 'repository', name: `${T}/app`, actions: ['pull'] }]);
  });

  it('hands back the key as refresh_token when asked for an offline token (docker login)', async () => {
    const res = await getToken([], basic('me', keyT), { offline_token: 'true', client_id: 'docker' });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as GetTokenAnswer).refresh_token, keyT);
  });

  it('refuses a malformed scope with 400, naming it', async () => {
    const res = await getToken(['repository:acme-app'], basic('me', keyT));
    assert.equal(res.status, 400);
    assert.match(await res.text(), /acme-app/);
  });

  it('refuses to exchange an access token for another', async () => {
    const token = await mustGetToken([`repository:${T}/app:pull`], basic('me', keyT));
    const res = await getToken([`repository:${T}/app:pull,push,delete`], bearer(token));
    assert.equal(res.status, 401);
    assert.match(await res.text(), /access token cannot be exchanged/);
  });
});

// ---- POST /token ------------------------------------------------------------------------

describe('POST /token (OAuth2 form, as containerd and BuildKit send it)', () => {
  const scope = `repository:${T}/app:pull,push repository:${U}/app:pull`;
  it('grant_type=password answers {access_token, expires_in, issued_at, scope} with the intersection', async () => {
    const res = await postToken({ grant_type: 'password', username: 'ci', password: keyT, service: 'kiln', scope, client_id: 'containerd-client' });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { access_token: string; expires_in: number; issued_at: string; scope: string };
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'expires_in', 'issued_at', 'scope']);
    assert.equal(body.scope, `repository:${T}/app:pull,push`);
    assert.ok(body.expires_in > 0);
    assert.deepEqual(accessOf(body.access_token), [{ type: 'repository', name: `${T}/app`, actions: ['pull', 'push'] }]);
    // The token pushes.
    await mustPushImage(`${T}/app`, 'via-post', bearer(body.access_token));
  });

  it('grant_type=refresh_token takes the API key (a Docker config identitytoken)', async () => {
    const res = await postToken({ grant_type: 'refresh_token', refresh_token: keyT, service: 'kiln', scope, client_id: 'buildkit-client' });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { access_token: string; scope: string };
    assert.equal(body.scope, `repository:${T}/app:pull,push`);
    const pull = await v2(`/v2/${T}/app/manifests/v1`, { auth: bearer(body.access_token) });
    assert.equal(pull.status, 200);
    await pull.arrayBuffer();
  });

  it('repeated scope fields are all taken', async () => {
    const body = new URLSearchParams({ grant_type: 'password', username: 'ci', password: keyT, service: 'kiln' });
    body.append('scope', `repository:${T}/app:pull`);
    body.append('scope', `repository:${CACHE_T}:pull,push`);
    const res = await fetch(realm, { method: 'POST', body: body.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { scope: string }).scope, `repository:${T}/app:pull repository:${CACHE_T}:pull,push`);
  });

  it('access_type=offline returns the key as refresh_token', async () => {
    const res = await postToken({ grant_type: 'password', username: 'ci', password: keyT, service: 'kiln', access_type: 'offline', client_id: 'x' });
    assert.equal(((await res.json()) as { refresh_token?: string }).refresh_token, keyT);
  });

  it('an unknown grant_type is 400 unsupported_grant_type; a bad password is 401 invalid_grant', async () => {
    const odd = await postToken({ grant_type: 'client_credentials', service: 'kiln' });
    assert.equal(odd.status, 400);
    assert.equal(((await odd.json()) as { error: string }).error, 'unsupported_grant_type');
    const bad = await postToken({ grant_type: 'password', username: 'ci', password: 'not-a-key', service: 'kiln', scope });
    assert.equal(bad.status, 401);
    const body = (await bad.json()) as { error: string; error_description: string };
    assert.equal(body.error, 'invalid_grant');
    assert.match(body.error_description, /not a Kiln token/);
  });
});

// ---- anonymous -------------------------------------------------------------------------

describe('anonymous callers', () => {
  it('GET /token without credentials gives a token with no access; using it asks to authenticate, never a crash', async () => {
    const res = await getToken([`repository:${T}/app:pull,push`, `repository:cache/global/${K}:pull`, 'registry:catalog:*']);
    assert.equal(res.status, 200);
    const { token } = (await res.json()) as GetTokenAnswer;
    assert.deepEqual(accessOf(token), []);
    assert.equal(jwtPayload(token).role, 'anonymous');
    for (const [method, p] of [
      ['GET', `/v2/${T}/app/manifests/v1`],
      ['GET', `/v2/cache/global/${K}/manifests/v1`],
      ['POST', `/v2/${T}/app/blobs/uploads/`],
      ['DELETE', `/v2/${T}/app/manifests/v1`],
      ['GET', `/v2/${T}/app/tags/list`],
    ] as const) {
      const answer = await v2(p, { method, auth: bearer(token) });
      await expectRefusal(answer, base, { status: 401, code: 'UNAUTHORIZED', error: null, message: /^authentication required: .*anonymous/ }, method);
    }
    await expectRefusal(await v2('/v2/_catalog', { auth: bearer(token) }), base, { status: 401, code: 'UNAUTHORIZED', error: null });
  });

  it('POST /token without credentials (no grant, or an empty password) gives a token with no access', async () => {
    const forms: Record<string, string>[] = [
      { service: 'kiln', scope: `repository:${T}/app:pull`, client_id: 'containerd' },
      { grant_type: 'password', username: '', password: '', service: 'kiln', scope: `repository:${T}/app:pull` },
    ];
    for (const fields of forms) {
      const res = await postToken(fields);
      assert.equal(res.status, 200, await res.clone().text());
      const body = (await res.json()) as { access_token: string; scope: string };
      assert.equal(body.scope, '');
      assert.deepEqual(accessOf(body.access_token), []);
      const pull = await v2(`/v2/${T}/app/manifests/v1`, { auth: bearer(body.access_token) });
      await expectRefusal(pull, base, { status: 401, code: 'UNAUTHORIZED', error: null, message: /^authentication required/ });
    }
  });
});

// ---- scope ------------------------------------------------------------------------------

describe('scope', () => {
  it('a token for repository:x:pull pulls x but cannot push or delete it: 401 insufficient_scope', async () => {
    const token = await mustGetToken([`repository:${T}/app:pull`], basic('me', keyT));
    const pull = await v2(`/v2/${T}/app/manifests/v1`, { auth: bearer(token) });
    assert.equal(pull.status, 200);
    await pull.arrayBuffer();
    const push = await pushImage(`${T}/app`, 'nope', bearer(token));
    await expectRefusal(push, base, {
      status: 401,
      code: 'UNAUTHORIZED',
      scope: `repository:${T}/app:pull,push`,
      error: 'insufficient_scope',
      message: /does not grant push/,
    });
    const manifest = manifestBlob({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(blob('{}'), TEST_CONFIG), layers: [] });
    const put = await v2(`/v2/${T}/app/manifests/nope`, { method: 'PUT', body: manifest.bytes, auth: bearer(token), headers: { 'content-type': OCI_MANIFEST } });
    await expectRefusal(put, base, { status: 401, code: 'UNAUTHORIZED', error: 'insufficient_scope' });
    const del = await v2(`/v2/${T}/app/manifests/v1`, { method: 'DELETE', auth: bearer(token) });
    await expectRefusal(del, base, { status: 401, code: 'UNAUTHORIZED', scope: `repository:${T}/app:delete`, error: 'insufficient_scope' }, 'DELETE');
    // Another repository the caller owns is not covered either.
    const other = await v2(`/v2/${T}/other/tags/list`, { auth: bearer(token) });
    await expectRefusal(other, base, { status: 401, code: 'UNAUTHORIZED', error: 'insufficient_scope' });
    // Asking again with push, as clients do after that challenge, works.
    const wider = await mustGetToken([`repository:${T}/app:pull,push`], basic('me', keyT));
    await mustPushImage(`${T}/app`, 'now', bearer(wider));
  });

  it('a tenant token cannot write cache/global/...', async () => {
    const repo = `cache/global/${K}`;
    // Directly: DENIED.
    await expectRefusal(await pushImage(repo, 't', basic('me', keyT)), base, { status: 403, code: 'DENIED', message: /tenant acme may not push cache\/global\/node/ });
    await expectRefusal(await v2(`/v2/${repo}/manifests/v1`, { method: 'DELETE', auth: basic('me', keyT) }), base, { status: 403, code: 'DENIED' }, 'DELETE');
    // Through /token: pull only is granted, so the push is DENIED too.
    const token = await mustGetToken([`repository:${repo}:pull,push,delete`, `repository:cache/global/other:push`], basic('me', keyT));
    assert.deepEqual(accessOf(token), [{ type: 'repository', name: repo, actions: ['pull'] }]);
    await expectRefusal(await pushImage(repo, 't', bearer(token)), base, { status: 403, code: 'DENIED' });
    // The tenant's own cache it may write.
    await mustPushImage(CACHE_T, 't', basic('me', keyT));
  });

  it('a build token pushes its build and cache repos and nothing else', async () => {
    await mustPushImage(`builds/${BUILD}`, 'latest', basic('build', buildToken));
    await mustPushImage(CACHE_T, 'build', basicTokenAsUser(buildToken));
    for (const repo of [`${T}/app`, `${U}/app`, 'builds/b9other', CACHE_U, `cache/global/${K}`, 'cache/global/other', 'other/x']) {
      const res = await pushImage(repo, 'escape', basic('build', buildToken));
      await expectRefusal(res, base, { status: 403, code: 'DENIED', message: new RegExp(`build ${BUILD} may not push`) });
    }
    // Through the token endpoint the same holds.
    const res = await postToken({
      grant_type: 'password',
      username: 'build',
      password: buildToken,
      service: 'kiln',
      scope: `repository:builds/${BUILD}:pull,push repository:${CACHE_T}:pull,push repository:cache/global/${K}:pull,push repository:${T}/app:pull,push`,
    });
    const body = (await res.json()) as { access_token: string; scope: string };
    assert.equal(body.scope, `repository:builds/${BUILD}:pull,push repository:${CACHE_T}:pull,push repository:cache/global/${K}:pull`);
    await expectRefusal(await pushImage(`${T}/app`, 'escape', bearer(body.access_token)), base, { status: 403, code: 'DENIED' });
    await mustPushImage(`builds/${BUILD}`, 'again', bearer(body.access_token));
  });

  it('a build token minted with pullRepos pulls those FROM repos and nothing more; one without cannot', async () => {
    await mustPushImage(`${T}/base`, '1', basic('admin', keyAdmin));
    const { tokens } = server.kiln.auth;
    const withBase = (
      await tokens.issueBuildToken({
        buildId: BUILD,
        tenant: T,
        admin: false,
        globalKey: K,
        // cache/ and builds/ entries are ignored: those follow the policy table.
        pullRepos: [`${T}/base`, CACHE_U, 'builds/b9other'],
        expiresAt: new Date(Date.now() + 3600_000),
      })
    ).token;
    const auth = basic('kiln-build', withBase);
    const pull = await v2(`/v2/${T}/base/manifests/1`, { auth });
    assert.equal(pull.status, 200, await pull.clone().text());
    await pull.arrayBuffer();
    const tags = await v2(`/v2/${T}/base/tags/list`, { auth });
    assert.deepEqual(((await tags.json()) as { tags: string[] }).tags, ['1']);
    // Pull only: no push, no delete, and no other repo of the tenant.
    await expectRefusal(await pushImage(`${T}/base`, 'escape', auth), base, { status: 403, code: 'DENIED', message: new RegExp(`build ${BUILD} may not push ${T}/base`) });
    await expectRefusal(await v2(`/v2/${T}/base/manifests/1`, { method: 'DELETE', auth }), base, { status: 403, code: 'DENIED' }, 'DELETE');
    await expectRefusal(await v2(`/v2/${T}/app/manifests/v1`, { auth }), base, { status: 403, code: 'DENIED' });
    for (const repo of [CACHE_U, 'builds/b9other']) {
      await expectRefusal(await v2(`/v2/${repo}/tags/list`, { auth }), base, { status: 403, code: 'DENIED', message: new RegExp(`may not pull ${repo}`) });
    }
    // Through POST /token, as BuildKit fetches it: pull is granted on the FROM repo, push is not.
    const res = await postToken({
      grant_type: 'password',
      username: 'kiln-build',
      password: withBase,
      service: 'kiln',
      scope: `repository:${T}/base:pull,push,delete repository:${T}/app:pull repository:${CACHE_U}:pull`,
    });
    const body = (await res.json()) as { access_token: string; scope: string };
    assert.equal(body.scope, `repository:${T}/base:pull`);
    const viaAccess = await v2(`/v2/${T}/base/manifests/1`, { auth: bearer(body.access_token) });
    assert.equal(viaAccess.status, 200);
    await viaAccess.arrayBuffer();
    await expectRefusal(await pushImage(`${T}/base`, 'escape', bearer(body.access_token)), base, { status: 403, code: 'DENIED' });
    // Without the grant, the build token cannot read the tenant's image.
    await expectRefusal(await v2(`/v2/${T}/base/manifests/1`, { auth: basic('build', buildToken) }), base, {
      status: 403,
      code: 'DENIED',
      message: new RegExp(`build ${BUILD} may not pull ${T}/base`),
    });
  });
});

describe('nothing leaks across tenants', () => {
  it('another tenant’s repositories are refused alike whether they exist or not', async () => {
    for (const repo of [`${U}/app`, `${U}/no-such-repo`]) {
      for (const p of [`/v2/${repo}/tags/list`, `/v2/${repo}/manifests/v1`, `/v2/${repo}/blobs/sha256:${'b'.repeat(64)}`]) {
        const res = await v2(p, { auth: basic('me', keyT) });
        await expectRefusal(res, base, { status: 403, code: 'DENIED', message: new RegExp(`tenant acme may not pull ${repo}`) });
      }
    }
  });

  it('a cross-repository mount from another tenant’s repository is not done: the client uploads instead', async () => {
    const secret = randomBlob(64);
    assert.equal((await pushBlob(`${U}/app`, secret, basic('u', keyU))).status, 201);
    const mount = await v2(`/v2/${T}/app/blobs/uploads/?mount=${secret.digest}&from=${U}/app`, { method: 'POST', auth: basic('me', keyT) });
    assert.equal(mount.status, 202, 'a mount from a repo the caller may not pull must start a plain upload');
    await mount.arrayBuffer();
    const head = await v2(`/v2/${T}/app/blobs/${secret.digest}`, { method: 'HEAD', auth: basic('me', keyT) });
    assert.equal(head.status, 404);
    // An admin, who may pull umbrella/app, gets the mount.
    const own = await v2(`/v2/${T}/web/blobs/uploads/?mount=${secret.digest}&from=${U}/app`, { method: 'POST', auth: basic('a', keyAdmin) });
    assert.equal(own.status, 201);
  });
});

// ---- refused credentials -------------------------------------------------------------------

describe('refused credentials say why', () => {
  const pullPath = `/v2/${T}/app/manifests/v1`;

  /** Refused on /v2 (401 invalid_token), at GET /token (401) and POST /token (invalid_grant), all with `message`. */
  async function refusedEverywhere(token: string, message: RegExp): Promise<void> {
    for (const auth of [bearer(token), basic('x', token), basicTokenAsUser(token)]) {
      await expectRefusal(await v2(pullPath, { auth }), base, { status: 401, code: 'UNAUTHORIZED', error: 'invalid_token', message });
    }
    const get = await getToken([`repository:${T}/app:pull`], basic('x', token));
    assert.equal(get.status, 401);
    assert.match(((await get.json()) as { errors: { message: string }[] }).errors[0]!.message, message);
    const post = await postToken({ grant_type: 'password', username: 'x', password: token, service: 'kiln', scope: `repository:${T}/app:pull` });
    assert.equal(post.status, 401);
    const body = (await post.json()) as { error: string; error_description: string };
    assert.equal(body.error, 'invalid_grant');
    assert.match(body.error_description, message);
  }

  async function serverSigner(): Promise<TokenSigner> {
    return new TokenSigner(await loadSigningKey(server.kiln.dirs.authKeyFile), 'kiln');
  }
  const tenantClaims: ClaimsToSign = { kind: 'api_key', sub: T, tenant: T, role: 'tenant', access: [] };

  it('expired API keys', async () => {
    const signed = await (await serverSigner()).sign(tenantClaims, new Date(Date.now() - 7200_000), new Date(Date.now() - 3600_000));
    await refusedEverywhere(signed.token, /API key .* expired at/);
  });

  it('an API key that runs out of time stops working', async () => {
    const key = await server.kiln.auth.tokens.createApiKey({ tenant: T, ttlSeconds: 1 });
    const ok = await v2(pullPath, { auth: basic('x', key.token) });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    await new Promise((r) => setTimeout(r, 1100));
    await expectRefusal(await v2(pullPath, { auth: basic('x', key.token) }), base, { status: 401, code: 'UNAUTHORIZED', error: 'invalid_token', message: /expired/ });
  });

  it('expired access tokens', async () => {
    const signed = await (await serverSigner()).sign(
      { kind: 'access', sub: T, tenant: T, role: 'tenant', access: [{ type: 'repository', name: `${T}/app`, actions: ['pull'] }] },
      new Date(Date.now() - 7200_000),
      new Date(Date.now() - 3600_000),
    );
    await expectRefusal(await v2(pullPath, { auth: bearer(signed.token) }), base, { status: 401, code: 'UNAUTHORIZED', error: 'invalid_token', message: /access token expired/ });
  });

  it('tampered tokens: claims changed under the signature', async () => {
    const [header, payload, signature] = keyT.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, tenant: U, sub: U, role: 'admin' })).toString('base64url')}.${signature}`;
    await refusedEverywhere(forged, /signature does not verify: the token was altered/);
    const flipped = `${header}.${payload}.${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`;
    await refusedEverywhere(flipped, /altered/);
  });

  it('tokens signed with another key', async () => {
    const signed = await (await foreignSigner()).sign(tenantClaims, new Date(), new Date(Date.now() + 3600_000));
    await refusedEverywhere(signed.token, /signed by another key/);
  });

  it('keys signed by this registry but never issued', async () => {
    const signed = await (await serverSigner()).sign(tenantClaims, new Date(), new Date(Date.now() + 3600_000));
    await refusedEverywhere(signed.token, /not known to this registry/);
  });

  it('revoked API keys, and the access tokens minted from them', async () => {
    const key = await server.kiln.auth.tokens.createApiKey({ tenant: T, ttlSeconds: 3600 });
    const access = await mustGetToken([`repository:${T}/app:pull`], basic('x', key.token));
    const before = await v2(pullPath, { auth: bearer(access) });
    assert.equal(before.status, 200);
    await before.arrayBuffer();
    assert.equal(await server.kiln.auth.tokens.revoke(key.jti), 'revoked');
    await refusedEverywhere(key.token, new RegExp(`API key ${key.jti} was revoked at`));
    await expectRefusal(await v2(pullPath, { auth: bearer(access) }), base, {
      status: 401,
      code: 'UNAUTHORIZED',
      error: 'invalid_token',
      message: new RegExp(`issued from \\(${key.jti}\\) was revoked`),
    });
  });

  it('revoked build tokens', async () => {
    const token = await server.kiln.auth.tokens.issueBuildToken({ buildId: BUILD, tenant: T, admin: false, globalKey: null, expiresAt: new Date() });
    await mustPushImage(`builds/${BUILD}`, 'before-revoke', basic('b', token.token));
    await server.kiln.auth.tokens.revoke(token.jti);
    const res = await pushImage(`builds/${BUILD}`, 'after-revoke', basic('b', token.token));
    await expectRefusal(res, base, { status: 401, code: 'UNAUTHORIZED', error: 'invalid_token', message: new RegExp(`build token of build ${BUILD} was revoked`) });
  });

  it('garbage and unsupported schemes', async () => {
    await refusedEverywhere('not-a-jwt', /not a Kiln token/);
    await expectRefusal(await v2(pullPath, { auth: 'Digest abc' }), base, { status: 401, code: 'UNAUTHORIZED', error: 'invalid_request', message: /Digest/ });
  });
});

// ---- the management API ------------------------------------------------------------------

describe('management API (/api/v1/images)', () => {
  before(async () => {
    // Runnable images (an empty tar layer), so the image list has entries for each tenant.
    const tar = Buffer.alloc(1024);
    const layer = blob(gzipSync(tar));
    const config = (os: string) =>
      blob(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          config: { Cmd: ['/bin/true'], Labels: { for: os } },
          rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(tar).digest('hex')}`] },
        }),
      );
    await mustPushImage(`${T}/web`, 'v1', basic('a', keyAdmin), { config: config(T), layer, configType: OCI_CONFIG });
    await mustPushImage(`${U}/web`, 'v1', basic('a', keyAdmin), { config: config(U), layer, configType: OCI_CONFIG });
  });

  async function listImages(auth?: string): Promise<Response> {
    return fetch(`${base}/api/v1/images`, auth ? { headers: { authorization: auth } } : {});
  }

  it('refuses anonymous callers, with and without an anonymous token', async () => {
    const none = await listImages();
    assert.equal(none.status, 401);
    assert.equal(parseChallenge(none.headers.get('www-authenticate')).params.realm, realm);
    assert.equal(((await none.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    const anonymous = await mustGetToken([`repository:${T}/web:pull`]);
    const withToken = await listImages(bearer(anonymous));
    assert.equal(withToken.status, 401);
    assert.equal(((await withToken.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    const bad = await listImages(bearer('not-a-jwt'));
    assert.equal(bad.status, 401);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /not a Kiln token/);
  });

  it('refuses anonymous callers before looking at what they ask for', async () => {
    const digest = `sha256:${'0'.repeat(64)}`;
    const json = { 'content-type': 'application/json' };
    for (const [method, p, body] of [
      ['GET', `/api/v1/images/${digest}`, undefined],
      ['GET', `/api/v1/images/${digest}/disk`, undefined],
      ['DELETE', `/api/v1/images/${digest}`, undefined],
      ['POST', '/api/v1/images/bake', JSON.stringify({ ref: digest })],
      ['POST', '/api/v1/images/bake', JSON.stringify({ ref: `${T}/web:v1` })],
      ['POST', '/api/v1/images/bake', JSON.stringify({ ref: 'Not A Ref' })],
      ['POST', '/api/v1/images/bake', JSON.stringify({})],
    ] as const) {
      const res = await fetch(`${base}${p}`, { method, body, headers: body ? json : {} });
      assert.equal(res.status, 401, `${method} ${p} ${body ?? ''}: ${res.status}`);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    }
  });

  it('answers a malformed reference with 400, not a server error', async () => {
    const res = await fetch(`${base}/api/v1/images/bake`, {
      method: 'POST',
      body: JSON.stringify({ ref: 'Not A Ref' }),
      headers: { 'content-type': 'application/json', authorization: bearer(keyAdmin) },
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: { message: string } }).error.message, /lowercase/);
  });

  it('lists only the tenant’s own images; admins see all', async () => {
    const repos = async (auth: string) => {
      const res = await listImages(auth);
      assert.equal(res.status, 200);
      return [...new Set(((await res.json()) as { images: { repo: string }[] }).images.map((i) => i.repo))].sort();
    };
    assert.deepEqual(await repos(bearer(keyT)), [`${T}/web`]);
    assert.deepEqual(await repos(basic('x', keyU)), [`${U}/web`]);
    assert.deepEqual(await repos(bearer(keyAdmin)), [`${T}/web`, `${U}/web`]);
  });

  /** The same runnable image (one digest) pushed by T and then by U. */
  let sharedPushed = false;
  async function pushSharedImage(): Promise<void> {
    if (sharedPushed) return;
    sharedPushed = true;
    const tar = Buffer.alloc(1024);
    const layer = blob(gzipSync(tar));
    const config = blob(
      JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(tar).digest('hex')}`] } }),
    );
    await mustPushImage(`${T}/shared`, 'v1', basic('a', keyT), { config, layer, configType: OCI_CONFIG });
    await mustPushImage(`${U}/secret-name`, 'v1', basic('a', keyU), { config, layer, configType: OCI_CONFIG });
  }

  it('never names another tenant’s repository, even for an image both pushed', async () => {
    await pushSharedImage();
    const listing = (await (await fetch(`${base}/api/v1/images`, { headers: { authorization: bearer(keyU) } })).json()) as { images: { repo: string; digest: string }[] };
    const shared = listing.images.find((i) => i.repo === `${U}/secret-name`);
    assert.ok(shared, 'umbrella sees its image');
    for (const p of [`/api/v1/images/${T}/shared:v1`, `/api/v1/images/${shared.digest}`, `/api/v1/images/${T}/shared@${shared.digest}`]) {
      const res = await fetch(`${base}${p}`, { headers: { authorization: bearer(keyT) } });
      const text = await res.text();
      assert.ok(!text.includes('secret-name') && !text.includes(U), `${p}: ${res.status} ${text}`);
    }
  });

  it('keeps an image both tenants pushed visible to both', async () => {
    await pushSharedImage();
    const own = await fetch(`${base}/api/v1/images/${T}/shared:v1`, { headers: { authorization: bearer(keyT) } });
    assert.equal(own.status, 200, await own.clone().text());
    await own.arrayBuffer();
    const listed = (await (await fetch(`${base}/api/v1/images`, { headers: { authorization: bearer(keyT) } })).json()) as { images: { repo: string }[] };
    assert.ok(listed.images.some((i) => i.repo === `${T}/shared`), JSON.stringify(listed.images.map((i) => i.repo)));
  });

  it('refuses another tenant’s image by name', async () => {
    const res = await fetch(`${base}/api/v1/images/${U}/web:v1`, { headers: { authorization: bearer(keyT) } });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'DENIED');
    const del = await fetch(`${base}/api/v1/images/${U}/web:v1`, { method: 'DELETE', headers: { authorization: bearer(keyT) } });
    assert.equal(del.status, 403);
    await del.arrayBuffer();
    const own = await fetch(`${base}/api/v1/images/${T}/web:v1`, { headers: { authorization: bearer(keyT) } });
    assert.equal(own.status, 200, await own.clone().text());
    assert.equal(((await own.json()) as { repo: string }).repo, `${T}/web`);
  });
});
