// ApiKeyStore on SQLite.
import type { ApiKeyStore, IssuedKey, IssuedKeyKind, RevokeOutcome } from '../api-key-store.js';
import type { SqliteDatabase } from './db.js';

interface Row {
  jti: string;
  kind: IssuedKeyKind;
  subject: string;
  role: IssuedKey['role'];
  tenant: string | null;
  build_id: string | null;
  issued_at: number;
  expires_at: number;
  revoked_at: number | null;
}

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
    const row = this.db.prepare('SELECT * FROM api_keys WHERE jti = ?').get(jti) as Row | undefined;
    return row ? fromRow(row) : null;
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

function fromRow(row: Row): IssuedKey {
  return {
    jti: row.jti,
    kind: row.kind,
    subject: row.subject,
    role: row.role,
    tenant: row.tenant,
    buildId: row.build_id,
    issuedAt: new Date(row.issued_at),
    expiresAt: new Date(row.expires_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}
