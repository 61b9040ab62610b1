// Opens the embedded SQLite database with the settings every Kiln table relies
// on, and brings its schema up to date.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { PRIVATE_FILE_MODE } from '../data-dir.js';
import { SchemaTooNewError } from '../errors.js';
import { SQLITE_MIGRATIONS, type SqliteMigration } from './migrations.js';

export type SqliteDatabase = Database.Database;

/** better-sqlite3's name for a database that lives in memory only (tests). */
const IN_MEMORY = ':memory:';

/** How long a process waits for another one that is migrating the same file. */
const MIGRATION_WAIT_MS = 60_000;
const BUSY_WAIT_MS = 5000;

/** `durable: false` (KILN_FSYNC=false, throwaway stores) lets commits return before they reach the disk. */
export function openSqlite(file: string, options: { durable?: boolean } = {}): SqliteDatabase {
  if (file !== IN_MEMORY) {
    // SQLite gives its -wal and -shm files the database file's mode: create it private first.
    if (!existsSync(file)) closeSync(openSync(file, 'a', PRIVATE_FILE_MODE));
    for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, PRIVATE_FILE_MODE);
  }
  const db = new Database(file);
  try {
    db.pragma(`busy_timeout = ${BUSY_WAIT_MS}`);
    useWal(db);
    // FULL: a transaction the client was told about survives power loss, not just a process crash.
    db.pragma(options.durable === false ? 'synchronous = OFF' : 'synchronous = FULL');
    db.pragma('foreign_keys = OFF');
    migrateSqlite(db, file);
    db.pragma(`busy_timeout = ${BUSY_WAIT_MS}`);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Switches to WAL, waiting out other processes doing the same to a new file
 * at the same moment: there SQLite answers SQLITE_BUSY at once instead of
 * calling the busy handler (waiting could deadlock), so this retries.
 */
export function useWal(db: SqliteDatabase): void {
  const deadline = Date.now() + BUSY_WAIT_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw err;
      Atomics.wait(pause, 0, 0, 10);
    }
  }
}

/** The schema version of an open database (`PRAGMA user_version`). */
export function sqliteSchemaVersion(db: SqliteDatabase): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Applies the missing steps in one write transaction (BEGIN IMMEDIATE), so of
 * several processes opening the file at once one migrates and the others wait
 * for it, then find nothing left to do. A database from a newer Kiln is refused.
 */
export function migrateSqlite(db: SqliteDatabase, where: string, migrations: readonly SqliteMigration[] = SQLITE_MIGRATIONS): void {
  const latest = migrations.at(-1)?.version ?? 0;
  const check = (found: number) => {
    if (found > latest) throw new SchemaTooNewError('SQLite database', where, found, latest);
  };
  check(sqliteSchemaVersion(db));
  if (sqliteSchemaVersion(db) === latest) return;
  db.pragma(`busy_timeout = ${MIGRATION_WAIT_MS}`);
  db.transaction(() => {
    const current = sqliteSchemaVersion(db);
    check(current);
    for (const step of migrations) if (step.version > current) db.exec(step.sql);
    db.pragma(`user_version = ${latest}`);
  }).immediate();
}
