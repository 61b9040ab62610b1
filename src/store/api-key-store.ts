// Where issued long-lived credentials (API keys and build tokens) are recorded
// and revoked.

export type IssuedKeyKind = 'api_key' | 'build';

export interface IssuedKey {
  jti: string;
  kind: IssuedKeyKind;
  subject: string;
  role: 'admin' | 'tenant' | 'build';
  tenant: string | null;
  buildId: string | null;
  issuedAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
}

export type RevokeOutcome = 'revoked' | 'already_revoked' | 'unknown';

export interface ApiKeyStore {
  record(key: Omit<IssuedKey, 'revokedAt'>): Promise<void>;
  find(jti: string): Promise<IssuedKey | null>;
  revoke(jti: string, at: Date): Promise<RevokeOutcome>;
  /** Forgets keys that expired before `before`; they are refused by their expiry anyway. Answers how many. */
  purgeExpired(before: Date): Promise<number>;
}
