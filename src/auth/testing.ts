// Real collaborators for auth tests: an in-memory SQLite key store and a fresh signing key.
import { SqliteApiKeyStore } from '../store/sqlite/api-key-store.js';
import { openSqlite } from '../store/sqlite/db.js';
import { TokenSigner } from './jwt.js';
import { generatePrivateJwk, signingKeyFromJwk, type SigningKey } from './keys.js';
import type { LoadBuildOwners, OwnerOfBuild } from './policy.js';
import { TokenService } from './token-service.js';

export interface TokenFixture {
  service: TokenService;
  signer: TokenSigner;
  signingKey: SigningKey;
  keys: SqliteApiKeyStore;
  /** Moves the service's clock. */
  setNow(date: Date): void;
  close(): void;
}

export async function tokenFixture(
  options: { ownerOfBuild?: OwnerOfBuild; loadBuildOwners?: LoadBuildOwners; accessTokenTtlSeconds?: number } = {},
): Promise<TokenFixture> {
  const db = openSqlite(':memory:');
  const keys = new SqliteApiKeyStore(db);
  const signingKey = await signingKeyFromJwk(await generatePrivateJwk());
  const signer = new TokenSigner(signingKey, 'kiln');
  let now = new Date();
  const service = new TokenService({ signer, keys, clock: () => now, ...options });
  return { service, signer, signingKey, keys, setNow: (date) => (now = date), close: () => db.close() };
}

/** A signer with a key this registry does not know. */
export async function foreignSigner(): Promise<TokenSigner> {
  return new TokenSigner(await signingKeyFromJwk(await generatePrivateJwk()), 'kiln');
}
