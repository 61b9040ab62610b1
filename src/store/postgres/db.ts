// Opens the PostgreSQL pool every Kiln store on PostgreSQL shares, and brings
// the schema up to date under an advisory lock.
import pg from 'pg';
import { SchemaTooNewError } from '../errors.js';
import { POSTGRES_MIGRATIONS, type PostgresMigration } from './migrations.js';

export type PgPool = pg.Pool;
export type PgClient = pg.PoolClient;

/**
 * Advisory lock keys (classid, objid): classid spells KILN. Advisory locks
 * are per database, so two deployments on one server never collide.
 */
const KILN = 0x4b494c4e;
export const LOCKS: Record<'migrate' | 'gcRun' | 'reach' | 'uploadQuota', [number, number]> = {
  /** Held while migrating. */
  migrate: [KILN, 1],
  /** One garbage collection at a time across every process. */
  gcRun: [KILN, 2],
  /**
   * Writers that make content reachable (link a blob, insert a manifest, pin a
   * digest) hold it shared for their transaction; the collector holds it
   * exclusive while it snapshots and deletes rows and while it checks and
   * removes files. See src/gc/collector.ts.
   */
  reach: [KILN, 3],
  /** Held while an upload session is counted against its quota and recorded, so two cannot take the last slot. */
  uploadQuota: [KILN, 4],
};

export interface PostgresOptions {
  /** Connections in the pool (KILN_DATABASE_POOL). */
  poolSize?: number;
  /** Where pool errors go (an idle connection the server closed). */
  onError?: (err: Error) => void;
}

// BIGINT columns (sizes, unix-ms times) fit a JS number; pg would return strings.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/**
 * A fixed query sent as a named statement: each connection parses and plans it
 * once, not on every call. Only for constant text on hot paths, since every
 * connection keeps every name it has seen for its lifetime.
 */
export function prepared(name: string, text: string): { name: string; text: string } {
  return { name, text };
}

export async function openPostgres(url: string, options: PostgresOptions = {}): Promise<PgPool> {
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 20, types });
  pool.on('error', (err) => options.onError?.(err));
  try {
    await migratePostgres(pool, describeUrl(url));
    return pool;
  } catch (err) {
    await pool.end();
    if (err instanceof SchemaTooNewError) throw err;
    throw new Error(`cannot open the PostgreSQL database ${describeUrl(url)} (KILN_DATABASE_URL): ${(err as Error).message}`, { cause: err });
  }
}

/** The URL without its password, for messages. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the configured database';
  }
}

/**
 * Applies the missing steps, each in its own transaction, under a session
 * advisory lock: of several processes starting together one migrates, the
 * others wait and then find nothing to do. A database from a newer Kiln is refused.
 */
export async function migratePostgres(pool: PgPool, where: string, migrations: readonly PostgresMigration[] = POSTGRES_MIGRATIONS): Promise<void> {
  const latest = migrations.at(-1)?.version ?? 0;
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1, $2)', LOCKS.migrate);
    try {
      await client.query('CREATE TABLE IF NOT EXISTS kiln_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
      const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM kiln_schema');
      const current = rows[0]?.v ?? 0;
      if (current > latest) throw new SchemaTooNewError('PostgreSQL database', where, current, latest);
      for (const step of migrations) {
        if (step.version <= current) continue;
        await client.query('BEGIN');
        try {
          await client.query(step.sql);
          await client.query('INSERT INTO kiln_schema (version, name, applied_at) VALUES ($1, $2, $3)', [step.version, step.name, Date.now()]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw err;
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', LOCKS.migrate);
    }
  } finally {
    client.release();
  }
}

/** Runs `fn` in a transaction on one connection of the pool. */
export async function inTransaction<T>(pool: PgPool, fn: (client: PgClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(begin);
    try {
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  } finally {
    client.release();
  }
}
