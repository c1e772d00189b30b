/**
 * A throwaway PostgreSQL 15 cluster for tests: initdb as the `postgres` user in a temporary
 * directory, password login over loopback on a free port, the Unix socket in the same directory,
 * stopped by its postmaster's pid at the end.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { freePort } from '../../src/stack/devserver';

const run = promisify(execFile);
/** Where Debian's PostgreSQL 15 programs are. */
export const BIN = '/usr/lib/postgresql/15/bin';

/** The superuser's password of every test cluster. */
export const PG_PASSWORD = 'kura-test-secret';

export interface TestPostgres extends TestServer {
  /** The cluster's temporary directory: data directory `data`, the socket, the logs. */
  dir: string;
  /** Stops the server and removes the directory. */
  stop(): Promise<void>;
}

/** What PostgreSQL logs when a session ends in backup mode without pg_backup_stop. */
const BACKUP_ABORTED = 'aborting backup due to backend exiting before pg_backup_stop was called';

/** True once the server has logged that it aborted a backup whose session ended without a stop. */
export function loggedBackupAbort(server: Pick<TestServer, 'logFile'>): boolean {
  return readFileSync(server.logFile, 'utf8').includes(BACKUP_ABORTED);
}

/** Whether PostgreSQL 15 is installed where the tests expect it. */
export const havePostgres = existsSync(path.join(BIN, 'initdb'));

/** Creates and starts a cluster; the caller stops it. */
export async function startPostgres(): Promise<TestPostgres> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-pg-'));
  const { stdout } = await run('id', ['-u', 'postgres']);
  const uid = Number(stdout.trim());
  const { stdout: g } = await run('id', ['-g', 'postgres']);
  chownSync(dir, uid, Number(g.trim()));
  const data = path.join(dir, 'data');
  const pwfile = path.join(dir, 'pw');
  writeFileSync(pwfile, `${PG_PASSWORD}\n`);
  chownSync(pwfile, uid, Number(g.trim()));
  const as = (cmd: string, args: string[]) => run('runuser', ['-u', 'postgres', '--', path.join(BIN, cmd), ...args]);
  await as('initdb', [
    '-D',
    data,
    '-U',
    'postgres',
    `--pwfile=${pwfile}`,
    '--auth-host=scram-sha-256',
    '--auth-local=trust',
    '--no-sync',
  ]);
  const server = await startServer(data, dir);
  return {
    ...server,
    dir,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A running postmaster of a test: its port, log, a superuser query, and its stop by pid. */
export interface TestServer {
  port: number;
  logFile: string;
  query<R extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  sessions(prefix?: string): Promise<{ pid: number; application_name: string; query: string; state: string }[]>;
  stop(): Promise<void>;
}

/** How a test server runs beyond the defaults. */
export interface ServerOptions {
  /** The port (default: a free one). */
  port?: number;
  /**
   * Whether PostgreSQL flushes to disk (default off, for speed). A server whose volume is split or
   * snapshotted must flush, or the image lacks what its checkpoint and WAL claim is on disk.
   */
  fsync?: boolean;
  /** More server settings, as `-c name=value` strings. */
  settings?: string[];
}

/**
 * Starts a postmaster on the data directory `data` (owned by `postgres`) on a free loopback port,
 * with its socket and log in `dir`; the caller stops it.
 */
export async function startServer(data: string, dir: string, opts: ServerOptions = {}): Promise<TestServer> {
  const port = opts.port ?? (await freePort());
  const logFile = path.join(dir, `server-${port}.log`);
  await run('runuser', [
    '-u',
    'postgres',
    '--',
    path.join(BIN, 'pg_ctl'),
    '-D',
    data,
    '-l',
    logFile,
    '-w',
    '-o',
    [
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=${opts.fsync ? 'on' : 'off'}`,
      ...(opts.settings ?? []).map((x) => `-c ${x}`),
    ].join(' '),
    'start',
  ]);
  const pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const query = async <R extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> => {
    const c = new Client({ host: dir, port, user: 'postgres', database: 'postgres' });
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    port,
    logFile,
    query,
    sessions: (prefix = 'kura ') =>
      query<{ pid: number; application_name: string; query: string; state: string }>(
        "SELECT pid, application_name, query, state FROM pg_stat_activity WHERE backend_type = 'client backend' AND starts_with(application_name, $1)",
        [prefix],
      ),
    async stop() {
      // Fast shutdown: SIGINT to the postmaster, then wait for it to be gone.
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        /* already gone */
      }
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
