/**
 * A throwaway PostgreSQL 15 cluster for tests: initdb as the `postgres` user in a temporary
 * directory, password login over loopback on a free port, the Unix socket in the same directory,
 * stopped by its postmaster's pid at the end.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';

const run = promisify(execFile);
const BIN = '/usr/lib/postgresql/15/bin';

/** The superuser's password of every test cluster. */
export const PG_PASSWORD = 'kura-test-secret';

export interface TestPostgres {
  dir: string;
  port: number;
  /** The server's log (pg_ctl -l). */
  logFile: string;
  /** Runs one statement as the superuser and answers its rows. */
  query<R extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** The client backends whose application_name starts with `prefix` (the hook's sessions are `kura …`). */
  sessions(prefix?: string): Promise<{ pid: number; application_name: string; query: string }[]>;
  stop(): Promise<void>;
}

/** Whether PostgreSQL 15 is installed where the tests expect it. */
export const havePostgres = existsSync(path.join(BIN, 'initdb'));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

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
  const port = await freePort();
  const logFile = path.join(dir, 'server.log');
  await as('pg_ctl', [
    '-D',
    data,
    '-l',
    logFile,
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
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
    dir,
    port,
    logFile,
    query,
    sessions: (prefix = 'kura ') =>
      query<{ pid: number; application_name: string; query: string }>(
        "SELECT pid, application_name, query FROM pg_stat_activity WHERE backend_type = 'client backend' AND starts_with(application_name, $1)",
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
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
