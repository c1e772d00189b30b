/**
 * Opens a SQLite file that several processes share (workers, the CLI): WAL so readers never wait
 * for the writer, a busy timeout set before anything else takes a lock, and schema migrations
 * applied once even when two processes open a new file at the same moment.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';

export interface OpenOptions {
  busyTimeoutMs?: number;
  /** NORMAL trades the last commits on power loss for speed; FULL (SQLite's default) does not. */
  synchronous?: 'NORMAL' | 'FULL';
  foreignKeys?: boolean;
}

/**
 * Opens (creating if needed) the database at `file` and migrates it: `migrations[v]` moves the
 * schema from version v to v+1 (PRAGMA user_version). Never edit a shipped migration; append.
 */
export function openDatabase(file: string, migrations: readonly string[], opts: OpenOptions = {}): Database.Database {
  mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  // busy_timeout first: switching to WAL and migrating both need a lock another process may hold.
  db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 10_000}`);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
  if (opts.foreignKeys) db.pragma('foreign_keys = ON');
  // IMMEDIATE takes the write lock before user_version is read, so two processes opening a new
  // file at once cannot both run the same migration.
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < migrations.length; v++) db.exec(migrations[v] as string);
    if (version < migrations.length) db.pragma(`user_version = ${migrations.length}`);
  }).immediate();
  return db;
}
