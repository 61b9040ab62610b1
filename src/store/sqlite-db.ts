// Opens the embedded SQLite database with the settings every Kiln table relies on.
import Database from 'better-sqlite3';

export type SqliteDatabase = Database.Database;

export function openSqlite(file: string): SqliteDatabase {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // FULL: a transaction the client was told about survives power loss, not just a process crash.
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = OFF');
  return db;
}
