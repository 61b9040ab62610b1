// A process that opens a SQLite file at an agreed moment and migrates it with
// the real steps plus one that fails if it runs twice (for the migration race
// test). Prints the schema version it found afterwards.
import Database from 'better-sqlite3';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrateSqlite, sqliteSchemaVersion, useWal } from '../../src/store/sqlite/db.js';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite/migrations.js';

const [file, startAt] = process.argv.slice(2) as [string, string];
const steps = [
  ...SQLITE_MIGRATIONS,
  // ADD COLUMN is not idempotent: a second run fails with "duplicate column name".
  { version: SQLITE_MIGRATIONS.length + 1, name: 'race-probe', sql: 'ALTER TABLE repos ADD COLUMN race_probe TEXT;' },
];
await sleep(Math.max(0, Number(startAt) - Date.now()));
const db = new Database(file);
useWal(db);
migrateSqlite(db, file, steps);
process.stdout.write(`${sqliteSchemaVersion(db)}\n`);
db.close();
