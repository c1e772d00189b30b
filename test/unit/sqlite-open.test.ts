/**
 * Opening one new SQLite file from two processes at once, as two `kura worker`s starting together
 * on a fresh home do: the switch to WAL reads the file and then writes it, and SQLite ends the
 * upgrade deadlock of two such switches by failing one at once, busy timeout or not. Both opens
 * must succeed, and each file's schema be made once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase } from '../../src/stack/sqlite';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { ImageStore, imageStoreDir } from '../../src/images/store';
import { ErrorType, KuraError } from '../../src/domain/errors';

const ROOT = path.resolve(__dirname, '..', '..');
const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kura-sqlite-open-'));
  dirs.push(d);
  return d;
}

/** A node process running `script` (TypeScript allowed), talking over its IPC channel. */
function child(script: string): ChildProcess {
  const c = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  children.push(c);
  return c;
}

function nextMessage<T>(c: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`the child exited (${code}) before it answered`));
    c.once('exit', onExit);
    c.once('message', (m) => {
      c.off('exit', onExit);
      resolve(m as T);
    });
  });
}

/** The schema and version of a database file, and its journal mode. */
function schemaOf(file: string): { journalMode: unknown; version: unknown; objects: unknown[] } {
  const db = new Database(file, { readonly: true });
  try {
    return {
      journalMode: db.pragma('journal_mode', { simple: true }),
      version: db.pragma('user_version', { simple: true }),
      objects: db.prepare(`SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name`).all(),
    };
  } finally {
    db.close();
  }
}

/**
 * Another process in the middle of its own switch of `file` to WAL: it holds the write lock (taken
 * once it has read the file) until told to go on, then lets it go `holdMs` later.
 */
async function midSwitch(file: string, holdMs: number): Promise<ChildProcess> {
  const holder = child(
    `const Database = require('better-sqlite3');
     const db = new Database(${JSON.stringify(file)});
     db.exec('BEGIN IMMEDIATE');
     process.on('message', () => setTimeout(() => { db.exec('COMMIT'); db.close(); process.send('released', () => process.exit(0)); }, ${holdMs}));
     process.send('holding');`,
  );
  expect(await nextMessage(holder)).toBe('holding');
  return holder;
}

const MIGRATIONS = ['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)', 'CREATE INDEX t_v ON t (v)'];

describe('opening a new database while another process switches it to WAL', () => {
  it('waits for the other switch and opens the file in WAL, migrated once', async () => {
    const file = path.join(tempDir(), 'a.db');
    const holder = await midSwitch(file, 500);
    const released = nextMessage(holder);
    released.catch(() => undefined);
    // Sent before the open blocks this process; the holder lets go 500 ms after it reads it.
    await new Promise((resolve) => holder.send('go', resolve));
    // Without waiting, this open fails at once with "database is locked" (SQLITE_BUSY).
    const db = openDatabase(file, MIGRATIONS, { busyTimeoutMs: 10_000 });
    expect(await released).toBe('released');
    db.prepare('INSERT INTO t (v) VALUES (?)').run('x');
    expect(db.prepare('SELECT v FROM t').pluck().all()).toEqual(['x']);
    db.close();
    const schema = schemaOf(file);
    expect(schema.journalMode).toBe('wal');
    expect(schema.version).toBe(2);
    expect(schema.objects.map((o) => (o as { name: string }).name)).toEqual(['t_v', 't']);
  });

  it('gives up after the busy timeout with an Unavailable error that names the file', async () => {
    const file = path.join(tempDir(), 'b.db');
    await midSwitch(file, 60_000);
    let caught: unknown;
    try {
      openDatabase(file, MIGRATIONS, { busyTimeoutMs: 300 });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(KuraError);
    expect((caught as KuraError).type).toBe(ErrorType.Unavailable);
    expect((caught as KuraError).message).toContain(`switching ${file} to WAL`);
    expect((caught as KuraError).message).toContain('stayed locked by another process for 300 ms');
    expect(((caught as KuraError).cause as { code?: string }).code).toBe('SQLITE_BUSY');
  });
});

describe("processes opening a fresh home's stores at the same moment", () => {
  it('all succeed in every round, and every store has its schema once', async () => {
    const ROUNDS = 30;
    const base = tempDir();
    // Each process opens, on the word, one of the stores a worker opens at its start.
    const opener = `
      const { Catalog } = require(${JSON.stringify(path.join(ROOT, 'src/catalog/store.ts'))});
      const { LabState } = require(${JSON.stringify(path.join(ROOT, 'src/lab/state.ts'))});
      const { ImageStore } = require(${JSON.stringify(path.join(ROOT, 'src/images/store.ts'))});
      const stores = {
        catalog: (home) => new Catalog(home + '/catalog.db'),
        lab: (home) => new LabState(home + '/lab.db'),
        images: (home) => new ImageStore(home),
      };
      process.on('message', (m) => {
        if (m === 'stop') return process.disconnect();
        try { stores[m.store](m.home).close(); process.send('ok'); }
        catch (err) { process.send(m.store + ': ' + err.code + ' ' + err.message); }
      });
      process.send('loaded');`;
    // Three rather than two: three pairs meet in each round instead of one.
    const openers = [child(opener), child(opener), child(opener)];
    await Promise.all(openers.map(async (c) => expect(await nextMessage(c)).toBe('loaded')));

    const failures: string[] = [];
    const homes: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const home = path.join(base, `home-${round}`);
      homes.push(home);
      for (const store of ['catalog', 'lab', 'images']) {
        const answers = openers.map((c) => nextMessage<string>(c));
        for (const c of openers) c.send({ store, home });
        for (const [i, a] of (await Promise.all(answers)).entries())
          if (a !== 'ok') failures.push(`round ${round}, process ${i}: ${a}`);
      }
    }
    for (const c of openers) c.send('stop');
    expect(failures).toEqual([]);

    // The schema each store has when one process alone makes it.
    const alone = path.join(base, 'alone');
    new Catalog(path.join(alone, 'catalog.db')).close();
    new LabState(path.join(alone, 'lab.db')).close();
    new ImageStore(alone).close();
    for (const file of ['catalog.db', 'lab.db', path.relative(alone, path.join(imageStoreDir(alone), 'index.db'))]) {
      const expected = schemaOf(path.join(alone, file));
      expect(expected.journalMode).toBe('wal');
      for (const home of homes) expect({ home, ...schemaOf(path.join(home, file)) }).toEqual({ home, ...expected });
    }
  });
});
