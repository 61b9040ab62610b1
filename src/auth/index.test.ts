import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { SqliteApiKeyStore } from '../store/sqlite/api-key-store.js';
import { openSqlite, type SqliteDatabase } from '../store/sqlite/db.js';
import { AuthError, createAuth } from './index.js';

let dir: string;
let db: SqliteDatabase;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-auth-'));
  db = openSqlite(path.join(dir, 'kiln.db'));
});
after(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

describe('createAuth', () => {
  it('wires key, store, endpoint and authorizer for token mode, and survives a restart', async () => {
    const defaultKeyFile = path.join(dir, 'auth-key.json');
    const auth = await createAuth({ mode: 'token', defaultKeyFile, keys: new SqliteApiKeyStore(db), ownerOfBuild: () => null });
    assert.equal((await stat(defaultKeyFile)).mode & 0o777, 0o600);
    assert.equal(auth.authorizer.enabled, true);

    const key = await auth.tokens.createApiKey({ tenant: 'acme', ttlSeconds: 3600 });
    const app = Fastify();
    auth.registerRoutes(app);
    const res = await app.inject({
      method: 'GET',
      url: '/token?service=kiln&scope=repository:acme/app:pull,push',
      headers: { authorization: `Basic ${Buffer.from(`acme:${key.token}`).toString('base64')}` },
    });
    await app.close();
    const headers = { authorization: `Bearer ${res.json().token}` };
    await auth.authorizer.authorize(headers, { repo: 'acme/app', actions: ['push'] }, 'http://127.0.0.1:1');

    const restarted = await createAuth({ mode: 'token', defaultKeyFile, keys: new SqliteApiKeyStore(db) });
    await restarted.authorizer.authorize(headers, { repo: 'acme/app', actions: ['push'] }, 'http://127.0.0.1:1');
    assert.equal(await restarted.tokens.revoke(key.jti), 'revoked');
    await assert.rejects(
      auth.authorizer.authorize(headers, { repo: 'acme/app', actions: ['push'] }, 'http://127.0.0.1:1'),
      (err: unknown) => err instanceof AuthError && err.status === 401 && /revoked/.test(err.message),
    );
  });
  it('lets everyone in when auth is off, while keys can still be made', async () => {
    const auth = await createAuth({ mode: 'off', defaultKeyFile: path.join(dir, 'auth-key.json'), keys: new SqliteApiKeyStore(db) });
    assert.equal(auth.authorizer.enabled, false);
    const decision = await auth.authorizer.authorize({}, { repo: 'beta/app', actions: ['delete'] }, 'http://x');
    assert.equal(decision.canPull('anything'), true);
    await auth.tokens.createApiKey({ admin: true, ttlSeconds: 60 });
  });
  it('insists that KILN_AUTH_KEY_FILE exists', async () => {
    const keyFile = path.join(dir, 'missing-key.pem');
    await assert.rejects(createAuth({ mode: 'token', keyFile, defaultKeyFile: path.join(dir, 'auth-key.json'), keys: new SqliteApiKeyStore(db) }), new RegExp(keyFile));
  });
});
