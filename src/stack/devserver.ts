/**
 * Starts and stops the embedded Temporal dev server (the CLI built from source into .tools/bin),
 * on loopback only, with Kura's search attributes registered and Updates enabled.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { KuraError, ErrorType } from '../domain/errors';
import { KURA_SEARCH_ATTRIBUTES, searchAttributeTypeName } from '../search-attributes';

const DYNAMIC_CONFIG = [
  'frontend.enableUpdateWorkflowExecution=true',
  'frontend.enableUpdateWorkflowExecutionAsyncAccepted=true',
  'frontend.enableExecuteMultiOperation=true',
  // One partition per task queue: on one host, the default four only add forwarding between them,
  // and a task whose partition has no poller waiting waits for one (docs/adr/059).
  'matching.numTaskqueueReadPartitions=1',
  'matching.numTaskqueueWritePartitions=1',
];

/** The project's root (where package.json lives). */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');

/** The Temporal CLI to run: $KURA_TEMPORAL_BIN, else the one `npm start`/`npm test` built. */
export function temporalBinary(): string {
  return process.env.KURA_TEMPORAL_BIN ?? path.join(PROJECT_ROOT, '.tools', 'bin', 'temporal');
}

export interface DevServerOptions {
  /** Frontend port; a free one is picked when omitted. */
  port?: number;
  /** Web UI port; omitted with `headless`. */
  uiPort?: number;
  headless?: boolean;
  /** SQLite file that makes the server's state survive restarts; in memory when omitted. */
  dbFile?: string;
  /** Where the server's own log goes; discarded when omitted. */
  logFile?: string;
  namespace?: string;
  /** More namespaces to register at start (a Nexus caller's, say). */
  extraNamespaces?: string[];
  /** How long to wait for the server to answer. */
  readyTimeoutMs?: number;
  /** Gives up waiting when aborted: the server is stopped and the abort's reason thrown. */
  signal?: AbortSignal;
  /** The codec server the Web UI decodes payloads through (`--ui-codec-endpoint`). */
  uiCodecEndpoint?: string;
  /** The server's Prometheus endpoint (`--metrics-port`); a random free port when omitted. */
  metricsPort?: number;
  /**
   * Workflows whose state the history service keeps in memory, closed ones included, for up to an
   * hour (`history.hostLevelCacheMaxSize`); the CLI's own 8,096 when omitted. `kura start` passes
   * kura.yaml's `server.historyCacheSize` (docs/adr/052).
   */
  workflowCache?: number;
  /** Called as soon as the process runs, before it answers: from then on the caller can stop it. */
  onSpawn?: (server: DevServer) => void;
}

export interface DevServer {
  address: string;
  namespace: string;
  uiUrl?: string;
  pid: number;
  /** Stops the server (SIGTERM, then SIGKILL after a few seconds) and resolves once it has exited. */
  stop(): Promise<void>;
}

/** How long a stopping server gets after SIGTERM before it is killed. */
const STOP_GRACE_MS = 5000;

/** Asks the OS for a free TCP port on loopback. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** True when a Temporal frontend answers at the address. */
export async function serverAnswers(address: string, namespace = 'default'): Promise<boolean> {
  let conn: Connection | undefined;
  try {
    conn = await Connection.connect({ address, connectTimeout: 1500 });
    await conn.workflowService.describeNamespace({ namespace });
    return true;
  } catch {
    return false;
  } finally {
    await conn?.close().catch(() => undefined);
  }
}

/**
 * The command line of `temporal server start-dev` for these options, on a chosen port: loopback only,
 * Kura's search attributes and dynamic config, the history cache when `workflowCache` is given.
 */
export function devServerArgs(opts: DevServerOptions & { port: number; namespace: string }): string[] {
  const { port, namespace } = opts;
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--namespace',
    namespace,
    '--log-level',
    'warn',
  ];
  for (const ns of opts.extraNamespaces ?? []) args.push('--namespace', ns);
  if (opts.metricsPort !== undefined) args.push('--metrics-port', String(opts.metricsPort));
  if (opts.headless) args.push('--headless');
  else {
    args.push('--ui-port', String(opts.uiPort ?? port + 1000));
    if (opts.uiCodecEndpoint) args.push('--ui-codec-endpoint', opts.uiCodecEndpoint);
  }
  if (opts.dbFile) {
    args.push('--db-filename', opts.dbFile);
    // WAL with synchronous=NORMAL survives any process crash and is ~3x faster than the default
    // rollback journal (docs/adr/005); KURA_TEMPORAL_SYNC=full restores fsync on every commit.
    const sync = process.env.KURA_TEMPORAL_SYNC === 'full' ? 'full' : 'normal';
    args.push('--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', `synchronous=${sync}`);
  }
  for (const key of KURA_SEARCH_ATTRIBUTES)
    args.push('--search-attribute', `${key.name}=${searchAttributeTypeName(key)}`);
  for (const kv of DYNAMIC_CONFIG) args.push('--dynamic-config-value', kv);
  if (opts.workflowCache !== undefined)
    args.push('--dynamic-config-value', `history.hostLevelCacheMaxSize=${opts.workflowCache}`);
  return args;
}

/**
 * Starts `temporal server start-dev` bound to 127.0.0.1 and waits until it answers.
 * Throws Unavailable with the way out when the binary is missing or the server does not come up.
 */
export async function startDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  const binary = temporalBinary();
  if (!existsSync(binary)) {
    throw new KuraError(
      ErrorType.Unavailable,
      `the Temporal CLI is not at ${binary}; run \`npm run setup\` to build it, or set KURA_TEMPORAL_BIN, or point TEMPORAL_ADDRESS at a running server`,
    );
  }
  const port = opts.port ?? (await freePort());
  const namespace = opts.namespace ?? 'default';
  const args = devServerArgs({ ...opts, port, namespace });
  if (opts.dbFile) mkdirSync(path.dirname(opts.dbFile), { recursive: true });

  let logFd: number | undefined;
  if (opts.logFile) {
    mkdirSync(path.dirname(opts.logFile), { recursive: true });
    logFd = openSync(opts.logFile, 'a');
  }
  // A process group of its own: the terminal's Ctrl-C goes to the foreground group, and the server
  // must not die before the workers that still talk to it have stopped. Whoever started it stops
  // it, by pid, on every way out (stop(), the process's exit, an uncaught error).
  const child: ChildProcess = spawn(binary, args, {
    stdio: ['ignore', logFd ?? 'ignore', logFd ?? 'ignore'],
    detached: true,
  });
  if (logFd !== undefined) closeSync(logFd);
  const pid = child.pid ?? -1;
  let exited: number | null = null;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exited = code ?? -1;
      process.removeListener('exit', killOnExit);
      resolve();
    }),
  );
  // Spawning fails (ENOENT, EACCES) with an 'error' event instead of an exception.
  child.once('error', () => {
    exited ??= -1;
  });
  const kill = (sig: NodeJS.Signals) => {
    if (exited !== null || pid < 0) return;
    try {
      process.kill(-pid, sig); // the server's whole group
    } catch {
      child.kill(sig);
    }
  };
  const killOnExit = () => kill('SIGKILL');
  process.once('exit', killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (exited !== null) return;
      kill('SIGTERM');
      const timer = setTimeout(() => kill('SIGKILL'), STOP_GRACE_MS);
      await gone;
      clearTimeout(timer);
    })());

  const address = `127.0.0.1:${port}`;
  const server: DevServer = {
    address,
    namespace,
    uiUrl: opts.headless ? undefined : `http://127.0.0.1:${opts.uiPort ?? port + 1000}`,
    pid,
    stop,
  };
  opts.onSpawn?.(server);

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  const aborted = new Promise<void>((resolve) =>
    opts.signal?.addEventListener('abort', () => resolve(), { once: true }),
  );
  while (!(await serverAnswers(address, namespace))) {
    if (opts.signal?.aborted) {
      await stop();
      throw opts.signal.reason;
    }
    if (exited !== null) {
      throw new KuraError(
        ErrorType.Unavailable,
        `the Temporal dev server exited with code ${exited} during start-up (is port ${port} taken?)${opts.logFile ? `; see ${opts.logFile}` : ''}`,
      );
    }
    if (Date.now() > deadline) {
      await stop();
      throw new KuraError(
        ErrorType.Unavailable,
        `the Temporal dev server did not answer at ${address} within ${(opts.readyTimeoutMs ?? 60_000) / 1000}s${opts.logFile ? `; see ${opts.logFile}` : ''}`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([aborted, new Promise((r) => (timer = setTimeout(r, 250)))]);
    clearTimeout(timer);
  }
  return server;
}
