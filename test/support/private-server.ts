/**
 * A Temporal dev server of one test file's own (its own port and SQLite file), which the test may
 * SIGKILL and start again on the same file and port without hurting the server other test files
 * share; plus the seeded dice that pick the instant of the kill.
 */
import * as path from 'node:path';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { startDevServer, freePort, type DevServer } from '../../src/stack/devserver';
import { seededRandom } from '../../src/domain/seeded-random';
import { startKuraWorkers, type KuraWorkers } from '../../src/worker';
import { Kura, installationClientInterceptors } from '../../src/client';
import { kuraDataConverter } from '../../src/codec/data-converter';
import type { TestLab } from './harness';

/** The namespace the private server registers, as the shared one does. */
export const PRIVATE_NAMESPACE = 'default';

export interface PrivateServer {
  address: string;
  namespace: string;
  dbFile: string;
  /** How many times the server was started (1 after the first start). */
  starts: number;
  /** SIGKILLs the server's whole process group and resolves once it is gone. */
  kill(): Promise<void>;
  /** Starts the server again on the same SQLite file and port; resolves once it answers. */
  restart(): Promise<void>;
  /** Stops the server by its pid (the test's afterAll). */
  stop(): Promise<void>;
}

/** Starts a dev server on a free port with its state in `dir/temporal.db`; its log goes to `dir/temporal.log`. */
export async function startPrivateServer(dir: string): Promise<PrivateServer> {
  const port = await freePort();
  const dbFile = path.join(dir, 'temporal.db');
  const start = () =>
    startDevServer({
      port,
      headless: true,
      dbFile,
      logFile: path.join(dir, 'temporal.log'),
      readyTimeoutMs: 90_000,
    });
  let server: DevServer = await start();
  const self: PrivateServer = {
    address: server.address,
    namespace: server.namespace,
    dbFile,
    starts: 1,
    kill: async () => {
      try {
        process.kill(-server.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      // stop() resolves once the process has exited; after the SIGKILL it has nothing left to signal.
      await server.stop();
    },
    restart: async () => {
      // The killed server's listening port can take a moment to be released: retry on a taken port.
      for (let attempt = 0; ; attempt++) {
        try {
          server = await start();
          break;
        } catch (err) {
          if (attempt >= 10) throw err;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      self.starts++;
    },
    stop: () => server.stop(),
  };
  return self;
}

/** A client on the private server, which reconnects by itself when the server comes back. */
export async function privateClient(
  server: PrivateServer,
  opts: Omit<ConstructorParameters<typeof Client>[0], 'connection' | 'namespace'> = {},
): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address: server.address });
  return { client: new Client({ ...opts, connection, namespace: server.namespace }), connection };
}

/**
 * The seed of a chaos run: `KURA_CHAOS_SEED` when set (to replay a failing run), else a fresh one.
 * It is printed, so any run can be repeated exactly.
 */
export function chaosSeed(scenario: string): { seed: number; random: () => number } {
  const fromEnv = process.env.KURA_CHAOS_SEED;
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.log(`chaos seed for ${scenario}: ${seed} (replay with KURA_CHAOS_SEED=${seed})`);
  return { seed, random: seededRandom(seed) };
}

/**
 * Retries `op` while the server is down or restarting (connection errors), up to `ms`: a client's
 * long poll on a job's result fails when the server dies under it; the job itself does not.
 */
export async function acrossOutage<T>(op: () => Promise<T>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      if (Date.now() > end || !isConnectionError(err)) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

function isConnectionError(err: unknown): boolean {
  const text = `${(err as { name?: string })?.name ?? ''} ${(err as Error)?.message ?? String(err)}`;
  return /ServiceError|UNAVAILABLE|ECONNREFUSED|connect|Deadline|DEADLINE_EXCEEDED|transport|socket|14 /i.test(text);
}

/** A lab's workers and client API on a private server, which survive its kill and restart. */
export interface PrivateKura {
  server: PrivateServer;
  workers: KuraWorkers;
  kura: Kura;
  client: Client;
  /** Stops the workers, the client and the server. */
  close(): Promise<void>;
}

/** Starts a private server in the lab's directory, the lab's workers in this process, and a client. */
export async function startPrivateKura(
  lab: TestLab,
  workerOpts: Pick<Parameters<typeof startKuraWorkers>[0], 'sites'> = {},
): Promise<PrivateKura> {
  const server = await startPrivateServer(path.join(lab.dir, 'temporal'));
  const workers = await startKuraWorkers({
    ...workerOpts,
    loaded: lab.loaded,
    address: server.address,
    namespace: server.namespace,
    taskQueue: lab.taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
  });
  const { client, connection } = await privateClient(server, {
    dataConverter: kuraDataConverter(lab.loaded),
    interceptors: installationClientInterceptors(lab.loaded.config.installation),
  });
  const kura = new Kura(client, lab.loaded, lab.taskQueue);
  return {
    server,
    workers,
    kura,
    client,
    close: async () => {
      await workers.shutdown().catch(() => undefined);
      await connection.close().catch(() => undefined);
      await server.stop();
    },
  };
}

/** Kills the server at `atMs` after `since`, waits `downMs`, and starts it again on its SQLite file. */
export async function killAndRestart(
  server: PrivateServer,
  opts: { since: number; atMs: number; downMs?: number },
): Promise<{ killedAtMs: number }> {
  const wait = opts.since + opts.atMs - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const killedAtMs = Date.now() - opts.since;
  await server.kill();
  await new Promise((r) => setTimeout(r, opts.downMs ?? 1500));
  await server.restart();
  return { killedAtMs };
}
