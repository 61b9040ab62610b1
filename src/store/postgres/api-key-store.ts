// ApiKeyStore on PostgreSQL.
import type { ApiKeyStore, IssuedKey, RevokeOutcome } from '../api-key-store.js';
import { toIssuedKey, type ApiKeyRow } from '../sql-rows.js';
import type { PgPool } from './db.js';

export class PostgresApiKeyStore implements ApiKeyStore {
  constructor(private readonly pool: PgPool) {}

  async record(key: Omit<IssuedKey, 'revokedAt'>): Promise<void> {
    await this.pool.query(
      `INSERT INTO api_keys (jti, kind, subject, role, tenant, build_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [key.jti, key.kind, key.subject, key.role, key.tenant, key.buildId, key.issuedAt.getTime(), key.expiresAt.getTime()],
    );
  }

  async find(jti: string): Promise<IssuedKey | null> {
    const { rows } = await this.pool.query<ApiKeyRow>('SELECT * FROM api_keys WHERE jti = $1', [jti]);
    return rows[0] ? toIssuedKey(rows[0]) : null;
  }

  async revoke(jti: string, at: Date): Promise<RevokeOutcome> {
    const { rows } = await this.pool.query<{ revoked: boolean; known: boolean }>(
      `WITH u AS (UPDATE api_keys SET revoked_at = $2 WHERE jti = $1 AND revoked_at IS NULL RETURNING 1)
       SELECT EXISTS (SELECT 1 FROM u) AS revoked, EXISTS (SELECT 1 FROM api_keys WHERE jti = $1) AS known`,
      [jti, at.getTime()],
    );
    return rows[0]!.revoked ? 'revoked' : rows[0]!.known ? 'already_revoked' : 'unknown';
  }

  async purgeExpired(before: Date): Promise<number> {
    return (await this.pool.query('DELETE FROM api_keys WHERE expires_at < $1', [before.getTime()])).rowCount!;
  }
}
