/**
 * Opens a SQLite file that several processes share (workers, the CLI): WAL so readers never wait
 * for the writer, a busy timeout set before anything else takes a lock, and schema migrations
 * applied once even when two processes open a new file at the same moment.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { ErrorType, KuraError } from '../domain/errors';

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
  const busyTimeoutMs = opts.busyTimeoutMs ?? 10_000;
  // busy_timeout first: switching to WAL and migrating both need a lock another process may hold.
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  // The switch of a new file reads its header and then upgrades to a write: two processes switching
  // at once meet the upgrade deadlock, which SQLite ends by failing one of them at once, busy timeout
  // or not. The other's switch commits; the retry finds the file in WAL already (docs/adr/055).
  try {
    retryWhileBusy(() => db.pragma('journal_mode = WAL'), busyTimeoutMs, `switching ${file} to WAL`);
  } catch (err) {
    db.close();
    throw err;
  }
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

/** Whether `err` is SQLite's "database is locked" (SQLITE_BUSY or one of its extended codes). */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Runs `fn` again while SQLite refuses it with SQLITE_BUSY, for up to `timeoutMs`. Only for a
 * statement SQLite can refuse without calling the busy handler, and that is safe to repeat whole: a
 * read that upgrades to a write outside an IMMEDIATE transaction (the journal-mode switch). A
 * read-then-write of the application's own takes `db.transaction(fn).immediate()` instead.
 * Past the timeout, an Unavailable KuraError names `what` and carries SQLite's error as its cause.
 */
export function retryWhileBusy<T>(fn: () => T, timeoutMs: number, what: string): T {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err)) throw err;
      if (Date.now() >= deadline)
        throw new KuraError(
          ErrorType.Unavailable,
          `${what}: the database stayed locked by another process for ${timeoutMs} ms; stop the process that holds it (another kura worker or CLI on the same home) or try again`,
          { cause: err, details: { attempts: attempt + 1 } },
        );
      // A few ms, growing and jittered, so two processes that failed together do not retry together.
      const pauseMs = 2 ** Math.min(attempt, 5) * (0.5 + Math.random());
      Atomics.wait(sleeper, 0, 0, Math.max(1, Math.min(pauseMs, deadline - Date.now())));
    }
  }
}
