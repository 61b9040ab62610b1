// Opens the embedded SQLite database with the settings every Kiln table relies on.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { PRIVATE_FILE_MODE } from './data-dir.js';

export type SqliteDatabase = Database.Database;

export function openSqlite(file: string): SqliteDatabase {
  // SQLite gives its -wal and -shm files the database file's mode: create it private first.
  if (!existsSync(file)) closeSync(openSync(file, 'a', PRIVATE_FILE_MODE));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, PRIVATE_FILE_MODE);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // FULL: a transaction the client was told about survives power loss, not just a process crash.
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = OFF');
  return db;
}
