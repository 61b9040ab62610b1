import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { InvalidTokenError, type RefusalReason } from './jwt.js';
import { buildIdsIn, buildTokenAccess } from './policy.js';
import { tenantScope } from './tenant.js';
import { foreignSigner, tokenFixture, type TokenFixture } from './testing.js';
import { TokenRequestError, type BuildTokenRequest } from './token-service.js';

const T0 = new Date('2026-03-01T12:00:00.000Z');
const minutes = (n: number) => new Date(T0.getTime() + n * 60_000);

let f: TokenFixture;
beforeEach(async () => {
  f = await tokenFixture({ ownerOfBuild: (id) => (id === 'b1' ? 'acme' : null) });
  f.setNow(T0);
});
afterEach(() => f.close());

function refusedFor(reason: RefusalReason, message: RegExp) {
  return (err: unknown) => err instanceof InvalidTokenError && err.reason === reason && message.test(err.message);
}

/** Changes one claim of a signed token without re-signing it. */
function tamper(token: string, change: Record<string, unknown>): string {
  const [header, payload, signature] = token.split('.');
  const claims = { ...JSON.parse(Buffer.from(payload, 'base64url').toString()), ...change };
  return [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), signature].join('.');
}

describe('API keys', () => {
  it('are JWTs with the issue\'s claims and identify their tenant', async () => {
    const key = await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 3600 });
    const claims = decodeJwt(key.token);
    assert.equal(claims.sub, 'acme');
    assert.equal(claims.tenant, 'acme');
    assert.equal(claims.role, 'tenant');
    assert.deepEqual(claims.access, []);
    assert.equal(claims.jti, key.jti);
    assert.equal(claims.iat, T0.getTime() / 1000);
    assert.equal(claims.exp, T0.getTime() / 1000 + 3600);
    const credential = await f.service.authenticate(key.token);
    assert.deepEqual(credential.principal, { subject: 'acme', role: 'tenant', tenant: 'acme' });
    assert.equal(credential.access, null);
    assert.equal(credential.kind, 'api_key');
  });
  it('make admins with or without a tenant', async () => {
    const plain = await f.service.authenticate((await f.service.createApiKey({ admin: true, ttlSeconds: 60 })).token);
    assert.deepEqual(plain.principal, { subject: 'admin', role: 'admin', tenant: null });
    const ofAcme = await f.service.authenticate((await f.service.createApiKey({ admin: true, tenant: 'acme', ttlSeconds: 60 })).token);
    assert.deepEqual(ofAcme.principal, { subject: 'admin', role: 'admin', tenant: 'acme' });
  });
  const refusedRequests: [string, Parameters<TokenFixture['service']['createApiKey']>[0], RegExp][] = [
    ['a tenant key without a tenant', { ttlSeconds: 60 }, /needs --tenant/],
    ['a reserved tenant', { tenant: 'cache', ttlSeconds: 60 }, /reserved/],
    ['a tenant named like a public namespace (KILN_PUBLIC_REPOS, default library/**)', { tenant: 'library', ttlSeconds: 60 }, /reserved for the platform's public images/],
    ['an invalid tenant', { tenant: 'Acme', ttlSeconds: 60 }, /lowercase/],
    ['no lifetime', { tenant: 'acme', ttlSeconds: 0 }, /positive lifetime/],
  ];
  for (const [name, request, message] of refusedRequests) {
    it(`refuses ${name}`, () => assert.rejects(f.service.createApiKey(request), (err: Error) => err instanceof TokenRequestError && message.test(err.message)));
  }
});

describe('refusals', () => {
  it('an expired API key, saying it expired and when', async () => {
    const key = await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 60 });
    f.setNow(minutes(2));
    await assert.rejects(f.service.authenticate(key.token), refusedFor('expired', new RegExp(`API key ${key.jti} expired at 2026-03-01T12:01:00`)));
  });
  it('an expired access token', async () => {
    const key = await f.service.authenticate((await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 86400 })).token);
    const access = await f.service.issueAccessToken(key, []);
    f.setNow(minutes(11));
    await assert.rejects(f.service.authenticate(access.token), refusedFor('expired', /access token expired/));
  });
  it('a tampered token', async () => {
    const key = await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 60 });
    await assert.rejects(f.service.authenticate(tamper(key.token, { role: 'admin' })), refusedFor('tampered', /altered/));
  });
  it('a token signed by another key', async () => {
    const other = await foreignSigner();
    const { token } = await other.sign({ kind: 'api_key', sub: 'acme', tenant: 'acme', role: 'admin', access: [] }, T0, minutes(5));
    await assert.rejects(f.service.authenticate(token), refusedFor('wrong_key', /signed by another key/));
  });
  it('a token claiming our key id but signed by another key', async () => {
    const other = await foreignSigner();
    const { token } = await other.sign({ kind: 'api_key', sub: 'acme', tenant: 'acme', role: 'admin', access: [] }, T0, minutes(5));
    const [, payload, signature] = token.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: f.signingKey.kid, typ: 'JWT' })).toString('base64url');
    await assert.rejects(f.service.authenticate([header, payload, signature].join('.')), refusedFor('tampered', /altered/));
  });
  it('a revoked API key, saying so', async () => {
    const key = await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 60 });
    assert.equal(await f.service.revoke(key.jti), 'revoked');
    await assert.rejects(f.service.authenticate(key.token), refusedFor('revoked', new RegExp(`API key ${key.jti} was revoked`)));
  });
  it('access tokens minted from a key that is later revoked', async () => {
    const key = await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 3600 });
    const access = await f.service.issueAccessToken(await f.service.authenticate(key.token), []);
    await f.service.revoke(key.jti);
    await assert.rejects(f.service.authenticate(access.token), refusedFor('revoked', new RegExp(`issued from \\(${key.jti}\\) was revoked`)));
  });
  it('a well-signed key this registry never recorded', async () => {
    const { token } = await f.signer.sign({ kind: 'api_key', sub: 'acme', tenant: 'acme', role: 'tenant', access: [] }, T0, minutes(5));
    await assert.rejects(f.service.authenticate(token), refusedFor('unknown', /not known to this registry/));
  });
  it('something that is not a JWT', async () => {
    await assert.rejects(f.service.authenticate('hunter2'), refusedFor('malformed', /not a Kiln token/));
  });
  it('a JWT for another service', async () => {
    const { TokenSigner } = await import('./jwt.js');
    const elsewhere = new TokenSigner(f.signingKey, 'other-registry');
    const { token } = await elsewhere.sign({ kind: 'api_key', sub: 'acme', tenant: 'acme', role: 'tenant', access: [] }, T0, minutes(5));
    await assert.rejects(f.service.authenticate(token), refusedFor('malformed', /not valid here/));
  });
  it('an access token offered in exchange for another', async () => {
    const access = await f.service.issueAccessToken(null, []);
    await assert.rejects(f.service.identify(access.token), refusedFor('not_exchangeable', /present the API key/));
  });
});

describe('access tokens', () => {
  it('carry what was asked and allowed, for a short while', async () => {
    const key = await f.service.authenticate((await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 86400 })).token);
    const granted = await f.service.issueAccessToken(key, [
      { type: 'repository', name: 'acme/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'beta/app', actions: ['pull'] },
      { type: 'repository', name: 'cache/global/node20', actions: ['pull', 'push'] },
    ]);
    const expected = [
      { type: 'repository', name: 'acme/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'cache/global/node20', actions: ['pull'] },
    ];
    assert.deepEqual(granted.access, expected);
    assert.equal(granted.expiresIn, 600);
    const credential = await f.service.authenticate(granted.token);
    assert.equal(credential.kind, 'access');
    assert.deepEqual(credential.access, expected);
    assert.deepEqual(credential.principal, { subject: 'acme', role: 'tenant', tenant: 'acme' });
    assert.equal(decodeJwt(granted.token).key, key.jti);
  });
  it('carry nothing for anonymous callers, whatever they ask', async () => {
    const granted = await f.service.issueAccessToken(null, [{ type: 'repository', name: 'acme/app', actions: ['pull'] }]);
    assert.deepEqual(granted.access, []);
    assert.deepEqual((await f.service.authenticate(granted.token)).principal, { subject: 'anonymous', role: 'anonymous', tenant: null });
  });
  it('never outlive the key they came from', async () => {
    const key = await f.service.authenticate((await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 120 })).token);
    assert.equal((await f.service.issueAccessToken(key, [])).expiresIn, 120);
  });
  it('give tenants their own builds through the builds lookup', async () => {
    const key = await f.service.authenticate((await f.service.createApiKey({ tenant: 'acme', ttlSeconds: 60 })).token);
    const granted = await f.service.issueAccessToken(key, [
      { type: 'repository', name: 'builds/b1', actions: ['pull', 'push', 'delete'] },
      { type: 'repository', name: 'builds/b2', actions: ['pull'] },
    ]);
    assert.deepEqual(granted.access, [{ type: 'repository', name: 'builds/b1', actions: ['pull', 'delete'] }]);
  });
});

describe('build tokens', () => {
  const build: BuildTokenRequest = { buildId: 'b1', tenant: 'acme', admin: false, globalKey: 'node20', expiresAt: minutes(90) };

  it('carry the build, its flags and exactly its repositories', async () => {
    const signed = await f.service.issueBuildToken(build);
    const claims = decodeJwt(signed.token);
    assert.equal(claims.role, 'build');
    assert.equal(claims.build, 'b1');
    assert.equal(claims.global_key, 'node20');
    assert.equal(claims.admin_build, false);
    assert.deepEqual(claims.access, buildTokenAccess(build));
    assert.equal(signed.expiresAt.getTime(), minutes(90).getTime());
    const credential = await f.service.authenticate(signed.token);
    assert.deepEqual(credential.principal, {
      subject: 'build:b1', role: 'build', tenant: 'acme', buildId: 'b1', adminBuild: false, globalCacheKey: 'node20', pullRepos: [],
    });
  });
  it('carry the FROM repos given as pullRepos in the access claim and the principal (pull only; cache/ and builds/ left out)', async () => {
    const request = { ...build, pullRepos: ['acme/base', 'library/node', 'acme/base', 'cache/global/other', 'builds/b2'] };
    const signed = await f.service.issueBuildToken(request);
    const claims = decodeJwt(signed.token);
    assert.deepEqual(claims.pull_repos, ['acme/base', 'library/node']);
    assert.deepEqual(claims.access, [
      { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
      { type: 'repository', name: `cache/${tenantScope('acme')}`, actions: ['pull', 'push'] },
      { type: 'repository', name: 'cache/global/node20', actions: ['pull'] },
      { type: 'repository', name: 'acme/base', actions: ['pull'] },
      { type: 'repository', name: 'library/node', actions: ['pull'] },
    ]);
    assert.deepEqual(claims.access, buildTokenAccess(request));
    const credential = await f.service.identify(signed.token);
    assert.deepEqual(credential.principal.pullRepos, ['acme/base', 'library/node']);
    // Exchanged at /token: pull on them, never push or delete, nothing on other tenant repos;
    // the access token keeps the grant for the policy check on /v2.
    const granted = await f.service.issueAccessToken(credential, [
      { type: 'repository', name: 'acme/base', actions: ['pull', 'push', 'delete'] },
      { type: 'repository', name: 'acme/app', actions: ['pull'] },
      { type: 'repository', name: 'cache/global/other', actions: ['push'] },
      { type: 'repository', name: 'builds/b2', actions: ['pull'] },
    ]);
    assert.deepEqual(granted.access, [{ type: 'repository', name: 'acme/base', actions: ['pull'] }]);
    const access = await f.service.authenticate(granted.token);
    assert.deepEqual(access.principal.pullRepos, ['acme/base', 'library/node']);
    assert.deepEqual(decodeJwt(granted.token).pull_repos, ['acme/base', 'library/node']);
  });
  it('without pullRepos carry no FROM repos', async () => {
    const claims = decodeJwt((await f.service.issueBuildToken(build)).token);
    assert.deepEqual(claims.pull_repos, []);
    assert.ok(!(claims.access as Array<{ name: string }>).some((entry) => entry.name.startsWith('acme/')));
  });
  it('live at least 30 minutes', async () => {
    const signed = await f.service.issueBuildToken({ ...build, expiresAt: minutes(1) });
    assert.equal(signed.expiresAt.getTime(), minutes(30).getTime());
    f.setNow(minutes(29));
    await f.service.authenticate(signed.token);
    f.setNow(minutes(31));
    await assert.rejects(f.service.authenticate(signed.token), refusedFor('expired', /build token of build b1 expired/));
  });
  it('can be revoked when the build ends', async () => {
    const signed = await f.service.issueBuildToken(build);
    assert.equal(await f.service.revoke(signed.jti), 'revoked');
    await assert.rejects(f.service.authenticate(signed.token), refusedFor('revoked', /build token of build b1 was revoked/));
  });
  it('exchange at /token for access within the build column only', async () => {
    const credential = await f.service.identify((await f.service.issueBuildToken(build)).token);
    const granted = await f.service.issueAccessToken(credential, [
      { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
      { type: 'repository', name: `cache/${tenantScope('acme')}`, actions: ['pull', 'push'] },
      { type: 'repository', name: 'cache/global/node20', actions: ['pull', 'push'] },
      { type: 'repository', name: 'acme/app', actions: ['pull', 'push'] },
    ]);
    assert.deepEqual(granted.access, [
      { type: 'repository', name: 'builds/b1', actions: ['pull', 'push'] },
      { type: 'repository', name: `cache/${tenantScope('acme')}`, actions: ['pull', 'push'] },
      { type: 'repository', name: 'cache/global/node20', actions: ['pull'] },
    ]);
    const access = await f.service.authenticate(granted.token);
    assert.equal(access.principal.buildId, 'b1');
    assert.equal(access.principal.globalCacheKey, 'node20');
  });
  const refused: [string, Partial<BuildTokenRequest>, RegExp][] = [
    ['a build id that cannot name a repository', { buildId: 'B 1' }, /cannot name a repository builds/],
    ['a nested build id', { buildId: 'a/b' }, /cannot name a repository builds/],
    ['a tenant build without a tenant', { tenant: null }, /needs its tenant/],
    ['a global key that cannot name a repository', { globalKey: 'Node 20' }, /cannot name a repository cache\/global/],
    ['a pullRepos entry that is not a repository name', { pullRepos: ['acme/base', 'Acme/Base:1'] }, /"Acme\/Base:1" in pullRepos is not a repository name/],
  ];
  for (const [name, change, message] of refused) {
    it(`refuses ${name}`, () =>
      assert.rejects(f.service.issueBuildToken({ ...build, ...change }), (err: Error) => err instanceof TokenRequestError && message.test(err.message)));
  }
  it('accept admin builds without a tenant', async () => {
    const signed = await f.service.issueBuildToken({ ...build, tenant: null, admin: true });
    assert.equal((await f.service.authenticate(signed.token)).principal.adminBuild, true);
  });
});

describe('build owners kept elsewhere (loaded before the policy asks)', () => {
  // The owners as a database holds them, and what this process has loaded of them.
  const stored: Record<string, string | null> = { b1: 'acme', b2: null };
  let loaded: Map<string, string | null>;
  let asked: string[][];
  let g: TokenFixture;
  beforeEach(async () => {
    loaded = new Map();
    asked = [];
    g = await tokenFixture({
      ownerOfBuild: (id) => loaded.get(id) ?? null,
      loadBuildOwners: async (ids) => {
        asked.push([...ids]);
        for (const id of ids) if (id in stored) loaded.set(id, stored[id]!);
      },
    });
  });
  afterEach(() => g.close());

  it('loads the owners of the builds/<id> repos a tenant asks for, then grants by them', async () => {
    const acme = await g.service.authenticate((await g.service.createApiKey({ tenant: 'acme', ttlSeconds: 3600 })).token);
    const granted = await g.service.issueAccessToken(acme, [
      { type: 'repository', name: 'builds/b1', actions: ['pull', 'delete'] },
      { type: 'repository', name: 'builds/b2', actions: ['pull'] },
      { type: 'repository', name: 'builds/unknown', actions: ['pull'] },
      { type: 'repository', name: 'acme/app', actions: ['pull'] },
    ]);
    assert.deepEqual(asked, [['b1', 'b2', 'unknown']]);
    assert.deepEqual(granted.access, [
      { type: 'repository', name: 'builds/b1', actions: ['pull', 'delete'] },
      { type: 'repository', name: 'acme/app', actions: ['pull'] },
    ]);
  });

  it('asks nothing for callers the owner does not matter to', async () => {
    const admin = await g.service.authenticate((await g.service.createApiKey({ admin: true, ttlSeconds: 3600 })).token);
    await g.service.issueAccessToken(admin, [{ type: 'repository', name: 'builds/b1', actions: ['pull'] }]);
    await g.service.issueAccessToken(null, [{ type: 'repository', name: 'builds/b1', actions: ['pull'] }]);
    const acme = await g.service.authenticate((await g.service.createApiKey({ tenant: 'acme', ttlSeconds: 3600 })).token);
    await g.service.issueAccessToken(acme, [{ type: 'repository', name: 'acme/app', actions: ['pull'] }]);
    assert.deepEqual(asked, []);
  });

  it('finds the build ids behind repository names', () => {
    assert.deepEqual(buildIdsIn(['builds/a', 'builds/a/b', 'builds', 'acme/builds/x', 'cache/global/k', 'builds/c']), ['a', 'c']);
  });
});
