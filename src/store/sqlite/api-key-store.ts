// ApiKeyStore on SQLite.
import type { ApiKeyStore, IssuedKey, RevokeOutcome } from '../api-key-store.js';
import { toIssuedKey, type ApiKeyRow } from '../sql-rows.js';
import type { SqliteDatabase } from './db.js';

export class SqliteApiKeyStore implements ApiKeyStore {
  constructor(private readonly db: SqliteDatabase) {}

  async record(key: Omit<IssuedKey, 'revokedAt'>): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO api_keys(jti, kind, subject, role, tenant, build_id, issued_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(key.jti, key.kind, key.subject, key.role, key.tenant, key.buildId, key.issuedAt.getTime(), key.expiresAt.getTime());
  }

  async find(jti: string): Promise<IssuedKey | null> {
    const row = this.db.prepare('SELECT * FROM api_keys WHERE jti = ?').get(jti) as ApiKeyRow | undefined;
    return row ? toIssuedKey(row) : null;
  }

  async revoke(jti: string, at: Date): Promise<RevokeOutcome> {
    const changed = this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE jti = ? AND revoked_at IS NULL').run(at.getTime(), jti);
    if (changed.changes > 0) return 'revoked';
    const exists = this.db.prepare('SELECT 1 FROM api_keys WHERE jti = ?').get(jti);
    return exists ? 'already_revoked' : 'unknown';
  }

  async purgeExpired(before: Date): Promise<number> {
    return this.db.prepare('DELETE FROM api_keys WHERE expires_at < ?').run(before.getTime()).changes;
  }
}
