import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command, CommanderError } from 'commander';
import { decodeJwt } from 'jose';
import { createAuth, type Auth } from '../auth/index.js';
import { SqliteApiKeyStore } from '../store/sqlite/api-key-store.js';
import { openSqlite, type SqliteDatabase } from '../store/sqlite/db.js';
import { registerTokenCommands } from './token-command.js';

let dir: string;
let auth: Auth;
let db: SqliteDatabase;
let closes = 0;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-token-cli-'));
  db = openSqlite(path.join(dir, 'kiln.db'));
  auth = await createAuth({ mode: 'token', defaultKeyFile: path.join(dir, 'auth-key.json'), keys: new SqliteApiKeyStore(db) });
});
after(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

async function kiln(...args: string[]): Promise<{ out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command().exitOverride().configureOutput({ writeErr: (s) => err.push(s), writeOut: (s) => out.push(s) });
  const open = async () => ({ tokens: auth.tokens, close: () => void closes++ });
  registerTokenCommands(program, open, { out: (s) => out.push(s), err: (s) => err.push(s) });
  await program.parseAsync(['node', 'kiln', ...args]);
  return { out: out.join(''), err: err.join('') };
}

async function failure(args: string[], message: RegExp): Promise<void> {
  await assert.rejects(kiln(...args), (e: unknown) => e instanceof CommanderError && e.exitCode === 1 && message.test(e.message));
}

describe('kiln token', () => {
  it('create prints only the key on stdout, and its id and expiry on stderr', async () => {
    const before = closes;
    const { out, err } = await kiln('token', 'create', '--tenant', 'acme', '--ttl', '30d');
    const key = out.trim();
    const claims = decodeJwt(key);
    assert.equal(claims.tenant, 'acme');
    assert.equal(claims.role, 'tenant');
    assert.equal(claims.exp! - claims.iat!, 30 * 86400);
    assert.match(err, new RegExp(`API key ${claims.jti} for tenant acme, expires .*kiln token revoke ${claims.jti}`));
    assert.equal(closes, before + 1, 'the stores are closed after the command');
    const decision = await auth.authorizer.authorize({ authorization: `Bearer ${key}` }, { repo: 'acme/app', actions: ['push'] }, 'http://x');
    assert.equal(decision.principal.tenant, 'acme');
  });
  it('create --admin makes an admin key, with a default lifetime of 90 days', async () => {
    const claims = decodeJwt((await kiln('token', 'create', '--admin')).out.trim());
    assert.equal(claims.role, 'admin');
    assert.equal(claims.exp! - claims.iat!, 90 * 86400);
  });
  it('create refuses a missing tenant, a bad tenant and a bad ttl', async () => {
    await failure(['token', 'create'], /needs --tenant/);
    await failure(['token', 'create', '--tenant', 'cache'], /reserved/);
    await failure(['token', 'create', '--tenant', 'acme', '--ttl', 'forever'], /--ttl: "forever" is not a duration/);
  });
  it('revoke refuses the key from then on and says so when repeated', async () => {
    const key = (await kiln('token', 'create', '--tenant', 'acme')).out.trim();
    const jti = String(decodeJwt(key).jti);
    assert.equal((await kiln('token', 'revoke', jti)).out, `revoked ${jti}\n`);
    assert.equal((await kiln('token', 'revoke', jti)).out, `${jti} was already revoked\n`);
    await assert.rejects(
      auth.authorizer.authorize({ authorization: `Bearer ${key}` }, { repo: 'acme/app', actions: ['pull'] }, 'http://x'),
      /was revoked/,
    );
  });
  it('revoke of an unknown id fails', () => failure(['token', 'revoke', 'no-such-id'], /no API key has the id no-such-id/));
});
