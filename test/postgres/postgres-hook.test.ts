/**
 * The `postgres` hook against a real PostgreSQL 15: one session from pg_backup_start to
 * pg_backup_stop, the backup label returned and the time in backup mode measured; a copy of the data
 * directory taken while held starts from that label (with the WAL up to the stop); a login refused
 * as AccessDenied before anything starts; and a holder killed mid-hold leaves PostgreSQL with no
 * session in backup mode (PostgreSQL aborts the backup with the session).
 */
import { execFile, spawn } from 'node:child_process';
import { chownSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresHookSchema } from '../../src/domain/inventory';
import { PostgresHook } from '../../src/drivers/postgres-hook';
import { AccessDeniedError } from '../../src/domain/errors';
import { eventually } from '../support/harness';
import { loggedBackupAbort, PG_PASSWORD, startPostgres, startServer, type TestPostgres } from '../support/postgres';

const run = promisify(execFile);

let pg: TestPostgres;

beforeAll(async () => {
  pg = await startPostgres();
}, 60_000);

afterAll(async () => {
  await pg?.stop();
});

const spec = (over: object = {}) =>
  PostgresHookSchema.parse({
    target: 'vm-001',
    kind: 'postgres',
    port: pg.port,
    user: 'postgres',
    passwordEnv: 'KURA_PG_PASSWORD',
    timeout: '10s',
    ...over,
  });

describe('the postgres hook', () => {
  it('holds one session in backup mode from pg_backup_start to pg_backup_stop and returns the label', async () => {
    const hook = new PostgresHook(spec(), { KURA_PG_PASSWORD: PG_PASSWORD });
    let entered: { startLsn: string; pid: number } | undefined;
    let seenInBackup: { pid: number; query: string }[] = [];
    let polls = 0;
    const result = await hook.holdBackupMode('op/split-backup/vm-001 round 1', {
      pollMs: 50,
      entered: async (info) => {
        entered = info;
        seenInBackup = await pg.sessions();
      },
      // The image takes about 400 ms here: eight polls.
      released: () => Promise.resolve(++polls > 8),
      heartbeat: () => undefined,
    });

    expect(seenInBackup).toEqual([
      expect.objectContaining({ pid: entered!.pid, application_name: 'kura op/split-backup/vm-001 round 1' }),
    ]);
    expect(seenInBackup[0]!.query).toContain('pg_backup_start');
    expect(result.startLsn).toBe(entered!.startLsn);
    expect(result.label).toContain(`START WAL LOCATION: ${result.startLsn}`);
    expect(result.label).toContain('LABEL: op/split-backup/vm-001 round 1');
    expect(result.label).toContain('BACKUP METHOD: streamed');
    expect(result.tablespaceMap).toBe('');
    expect(result.stopLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    // Backup mode lasted as long as the image, not longer: eight polls of 50 ms, and then the stop.
    expect(result.seconds).toBeGreaterThanOrEqual(0.35);
    expect(result.seconds).toBeLessThan(5);
    expect(Date.parse(result.leftAt) - Date.parse(result.enteredAt)).toBe(Math.round(result.seconds * 1000));
    // Logged out: no session of the hook is left.
    expect(await pg.sessions()).toEqual([]);
  });

  it('returns the label with which a copy of the data directory taken in backup mode starts', async () => {
    await pg.query('CREATE TABLE ledger (id int PRIMARY KEY, note text)');
    await pg.query("INSERT INTO ledger SELECT g, 'before' FROM generate_series(1, 1000) g");
    const data = path.join(pg.dir, 'data');
    const copy = path.join(pg.dir, 'copy');
    const hook = new PostgresHook(spec(), { KURA_PG_PASSWORD: PG_PASSWORD });
    const result = await hook.holdBackupMode('copied while held', {
      entered: async () => {
        // Written while the copy is taken: only the WAL carries it consistently into the copy.
        await pg.query("INSERT INTO ledger SELECT g, 'during' FROM generate_series(1001, 2000) g");
        await run('cp', ['-a', data, copy]);
      },
      released: () => Promise.resolve(true),
      heartbeat: () => undefined,
    });

    // The copy as a restore leaves it: the label beside the data, the WAL up to the stop, no pid file.
    rmSync(path.join(copy, 'postmaster.pid'), { force: true });
    await run('cp', ['-a', `${data}/pg_wal/.`, `${copy}/pg_wal/`]);
    writeFileSync(path.join(copy, 'backup_label'), result.label);
    const owner = statSync(copy);
    chownSync(path.join(copy, 'backup_label'), owner.uid, owner.gid);
    const restored = await startServer(copy, pg.dir);
    try {
      const rows = await restored.query<{ n: number; during: number }>(
        "SELECT count(*)::int AS n, count(*) FILTER (WHERE note = 'during')::int AS during FROM ledger",
      );
      expect(rows).toEqual([{ n: 2000, during: 1000 }]);
      // It recovered from the backup's start, as the label told it, not from the copy's own control file.
      expect(readFileSync(restored.logFile, 'utf8')).toContain(`redo starts at ${result.startLsn}`);
    } finally {
      await restored.stop();
    }
  });

  it('refuses a login with the wrong password as AccessDenied, before any backup starts', async () => {
    const hook = new PostgresHook(spec(), { KURA_PG_PASSWORD: 'not-the-password' });
    let entered = false;
    const err = await hook
      .holdBackupMode('refused', {
        entered: () => {
          entered = true;
          return Promise.resolve();
        },
        released: () => Promise.resolve(true),
        heartbeat: () => undefined,
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect((err as AccessDeniedError).message).toBe(
      `the postgres hook of vm-001 cannot log in and start a backup as postgres@127.0.0.1:${pg.port}/postgres: password authentication failed for user "postgres" (SQLSTATE 28P01); check the hook's user, database and password in kura.yaml`,
    );
    expect(entered).toBe(false);
    expect(await pg.sessions()).toEqual([]);
  });

  it('leaves PostgreSQL with no session in backup mode when the process holding it is killed', async () => {
    const root = path.resolve(__dirname, '..', '..');
    const child = spawn(
      process.execPath,
      [
        '--require',
        'tsx/cjs',
        path.join(root, 'test', 'support', 'hold-postgres.ts'),
        JSON.stringify({ ...spec(), passwordEnv: 'KURA_PG_PASSWORD' }),
      ],
      { cwd: root, env: { ...process.env, KURA_PG_PASSWORD: PG_PASSWORD }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const pid = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /entered (\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) => reject(new Error(`the holder exited with ${code}: ${out}`)));
      });
      expect((await pg.sessions()).map((s) => s.pid)).toEqual([pid]);

      child.kill('SIGKILL');
      await eventually(async () => (await pg.sessions()).length === 0, 10_000);
      // PostgreSQL aborted the backup of the session that ended without pg_backup_stop.
      await eventually(() => Promise.resolve(loggedBackupAbort(pg)), 10_000);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
