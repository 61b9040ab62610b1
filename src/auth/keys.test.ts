import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TokenSigner } from './jwt.js';
import { generatePrivateJwk, loadOrCreateSigningKey, loadSigningKey, SigningKeyError, type SigningKey } from './keys.js';

let dir: string;
before(async () => (dir = await mkdtemp(path.join(tmpdir(), 'kiln-keys-'))));
after(() => rm(dir, { recursive: true, force: true }));

async function signsAndVerifies(key: SigningKey): Promise<void> {
  const signer = new TokenSigner(key, 'kiln');
  const now = new Date();
  const { token } = await signer.sign(
    { kind: 'api_key', sub: 'acme', tenant: 'acme', role: 'tenant', access: [] },
    now,
    new Date(now.getTime() + 60_000),
  );
  assert.equal((await signer.verify(token, now)).sub, 'acme');
}

describe('loadOrCreateSigningKey', () => {
  it('generates an owner-only Ed25519 key on first start and loads the same one after', async () => {
    const file = path.join(dir, 'nested', 'auth-key.json');
    const first = await loadOrCreateSigningKey(file);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal(first.algorithm, 'EdDSA');
    const jwk = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(jwk.kty, 'OKP');
    assert.ok(jwk.d, 'the file holds the private key');
    const second = await loadOrCreateSigningKey(file);
    assert.equal(second.kid, first.kid);
    await signsAndVerifies(second);
  });
  it('ends with one key when two starts race', async () => {
    const file = path.join(dir, 'race.json');
    const [a, b] = await Promise.all([loadOrCreateSigningKey(file), loadOrCreateSigningKey(file)]);
    assert.equal(a.kid, b.kid);
    assert.deepEqual((await readdir(dir)).filter((name) => name.endsWith('.tmp')), []);
  });
  it('does not replace a file that exists but is not a key', async () => {
    const file = path.join(dir, 'broken.json');
    await writeFile(file, 'not a key');
    await assert.rejects(loadOrCreateSigningKey(file), SigningKeyError);
    assert.equal(await readFile(file, 'utf8'), 'not a key');
  });
});

describe('loadSigningKey (KILN_AUTH_KEY_FILE)', () => {
  it('refuses a missing file, naming it', async () => {
    const file = path.join(dir, 'missing.json');
    await assert.rejects(loadSigningKey(file), (err: Error) => err instanceof SigningKeyError && err.message.includes(file));
  });
  it('loads a private JWK', async () => {
    const file = path.join(dir, 'given.json');
    await writeFile(file, JSON.stringify(await generatePrivateJwk()));
    await signsAndVerifies(await loadSigningKey(file));
  });
  it('loads an Ed25519 PKCS#8 PEM', async () => {
    const file = path.join(dir, 'ed.pem');
    const { privateKey } = generateKeyPairSync('ed25519');
    await writeFile(file, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const key = await loadSigningKey(file);
    assert.equal(key.algorithm, 'EdDSA');
    await signsAndVerifies(key);
  });
  it('loads a P-256 PKCS#8 PEM as ES256', async () => {
    const file = path.join(dir, 'p256.pem');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(file, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const key = await loadSigningKey(file);
    assert.equal(key.algorithm, 'ES256');
    await signsAndVerifies(key);
  });
  it('refuses an RSA key, saying which keys work', async () => {
    const file = path.join(dir, 'rsa.pem');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(file, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    await assert.rejects(loadSigningKey(file), /RSA key; use an Ed25519 or P-256 private key/);
  });
  it('refuses a public key', async () => {
    const file = path.join(dir, 'public.json');
    const { d: _private, ...publicJwk } = await generatePrivateJwk();
    await writeFile(file, JSON.stringify(publicJwk));
    await assert.rejects(loadSigningKey(file), /public key; token signing needs the private key/);
  });
});
