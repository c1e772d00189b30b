/**
 * Runs a real Temporal cluster on PostgreSQL on this machine, the production shape in miniature:
 * a PostgreSQL of its own, the temporal and visibility schemas set up by temporal-sql-tool, and the
 * server as five processes (frontend, two history hosts, matching, worker) on loopback ports, with
 * Kura's namespaces and search attributes registered through the operator API (docs/adr/040).
 *
 * Usage: tsx scripts/cluster.ts [start | stop | status | test]
 *   start   builds the server and temporal-sql-tool into .tools/bin once, starts the cluster, prints
 *           its addresses (a running one is reused)
 *   stop    stops every process of the cluster by its pid and removes its directory
 *   status  prints the processes, the membership and which history host owns each shard
 *   test    starts a fresh cluster, runs the workflow and chaos suites chosen for it and the
 *           cluster's own chaos cases against it, and stops it whatever the outcome; a failed run
 *           first copies the server logs and the cluster's last status to a directory it prints
 * Environment: KURA_CLUSTER_DIR (state directory; default <tmp>/kura-cluster),
 *   KURA_CLUSTER_LOGS (where a failed test run's logs go; default test-artifacts/cluster-<time>),
 *   KURA_CLUSTER_KEEP=1 (a failed test run leaves the stopped cluster's directory in place too),
 *   KURA_TEMPORAL_SERVER_BIN, KURA_TEMPORAL_SQL_TOOL_BIN (use these binaries instead of building).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { z } from 'zod';
import { Client as PgClient } from 'pg';
import { stringify } from 'yaml';
import { Connection } from '@temporalio/client';
import { KuraError, ErrorType } from '../src/domain/errors';
import { parseWith } from '../src/domain/validate';
import { KURA_SEARCH_ATTRIBUTES, searchAttributeTypeName } from '../src/search-attributes';
import { freePort, temporalBinary } from '../src/stack/devserver';

const run = promisify(execFile);

/** The server release the cluster runs: the one the Temporal CLI of .tools/bin embeds. */
export const SERVER_VERSION = 'v1.29.1';
const SERVER_MODULE = 'go.temporal.io/server';
const ROOT = path.resolve(__dirname, '..');
const TOOLS_BIN = path.join(ROOT, '.tools', 'bin');
/** History shards: a few, so that two history hosts each own some and one can take all. */
export const HISTORY_SHARDS = 4;
/** The namespaces Kura runs in: its own, and the one its Nexus callers run in (as the test setup's). */
export const CLUSTER_NAMESPACES = ['default', 'kura-callers'];
const PG_USER = 'temporal';
const PG_PASSWORD = 'temporal';
const DATABASES = { temporal: 'temporal', visibility: 'temporal_visibility' } as const;

/** The server processes, in start order: history first, so the frontend finds its shards owned. */
export const SERVICES = [
  { name: 'history-1', service: 'history' },
  { name: 'history-2', service: 'history' },
  { name: 'matching', service: 'matching' },
  { name: 'frontend', service: 'frontend' },
  { name: 'worker', service: 'worker' },
] as const;
export type ServiceName = (typeof SERVICES)[number]['name'];

const processSchema = z.object({
  name: z.string(),
  service: z.enum(['frontend', 'history', 'matching', 'worker']),
  pid: z.number().int(),
  grpcPort: z.number().int(),
  membershipPort: z.number().int(),
  log: z.string(),
});
const stateSchema = z.object({
  dir: z.string(),
  frontend: z.string(),
  httpPort: z.number().int(),
  postgres: z.object({ port: z.number().int(), pid: z.number().int(), data: z.string(), socketDir: z.string() }),
  processes: z.array(processSchema),
});
export type ClusterState = z.infer<typeof stateSchema>;
export type ClusterProcess = z.infer<typeof processSchema>;

/** The cluster's state directory. */
export function clusterDir(): string {
  return process.env.KURA_CLUSTER_DIR ?? path.join(os.tmpdir(), 'kura-cluster');
}

const stateFile = (dir: string) => path.join(dir, 'state.json');

/** The running cluster's state (addresses, pids), or undefined when none was started here. */
export function readClusterState(dir = clusterDir()): ClusterState | undefined {
  const file = stateFile(dir);
  if (!existsSync(file)) return undefined;
  return parseWith(stateSchema, JSON.parse(readFileSync(file, 'utf8')), `cluster state ${file}`);
}

function writeState(state: ClusterState): void {
  writeFileSync(stateFile(state.dir), JSON.stringify(state, null, 2) + '\n');
}

const log = (line: string) => console.log(`cluster: ${line}`);
const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)}s`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Binaries: built once from the Go module proxy into .tools/bin, as scripts/setup.mjs builds the CLI.

interface Binaries {
  server: string;
  sqlTool: string;
  /** The server module's source in the module cache: its schemas and sample configs. */
  module: string;
}

function goBinary(): string {
  for (const candidate of ['go', '/usr/local/go/bin/go']) {
    if (spawnSync(candidate, ['version']).status === 0) return candidate;
  }
  throw new KuraError(
    ErrorType.Unavailable,
    'the Temporal server is built from source, and its schemas and sample configuration come from the Go module cache, and no Go toolchain was found; install Go >= 1.24',
  );
}

/** Runs `go install` of the server and temporal-sql-tool, printing a progress count every 30 s. */
async function goInstall(go: string, gobin: string): Promise<void> {
  const started = Date.now();
  let packages = 0;
  const tail: string[] = [];
  const child = spawn(
    go,
    [
      'install',
      '-v',
      `${SERVER_MODULE}/cmd/server@${SERVER_VERSION}`,
      `${SERVER_MODULE}/cmd/tools/sql@${SERVER_VERSION}`,
    ],
    { cwd: ROOT, env: { ...process.env, GOBIN: gobin } },
  );
  const onData = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      if (!line.startsWith('go: ') && !line.includes(' ')) packages += 1;
      tail.push(line);
      if (tail.length > 20) tail.shift();
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const beat = setInterval(() => log(`  building: ${packages} packages compiled, ${seconds(started)}`), 30_000);
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(127));
    child.on('close', (c) => resolve(c ?? 1));
  });
  clearInterval(beat);
  if (code !== 0) {
    throw new KuraError(
      ErrorType.Unavailable,
      `go install of the Temporal server ${SERVER_VERSION} failed (exit ${code}); its last lines:\n${tail.join('\n')}`,
    );
  }
  log(`  built ${packages} packages in ${seconds(started)}`);
}

/** The Temporal server binary: $KURA_TEMPORAL_SERVER_BIN, else the one built into .tools/bin. */
export function serverBinary(): string {
  return process.env.KURA_TEMPORAL_SERVER_BIN ?? path.join(TOOLS_BIN, 'temporal-server');
}

/** The server and temporal-sql-tool binaries (built when missing) and the server module's source. */
export async function ensureBinaries(): Promise<Binaries> {
  const server = serverBinary();
  const sqlTool = process.env.KURA_TEMPORAL_SQL_TOOL_BIN ?? path.join(TOOLS_BIN, 'temporal-sql-tool');
  const go = goBinary();
  if (!existsSync(server) || !existsSync(sqlTool)) {
    log(`building the Temporal server ${SERVER_VERSION} and temporal-sql-tool (minutes the first time)`);
    // go install names the binaries after their packages (server, sql): build beside and rename.
    const gobin = path.join(ROOT, '.tools', 'go-server-build');
    mkdirSync(gobin, { recursive: true });
    await goInstall(go, gobin);
    mkdirSync(TOOLS_BIN, { recursive: true });
    renameSync(path.join(gobin, 'server'), server);
    renameSync(path.join(gobin, 'sql'), sqlTool);
    rmSync(gobin, { recursive: true, force: true });
  }
  const modcache = spawnSync(go, ['env', 'GOMODCACHE'], { encoding: 'utf8' }).stdout.trim();
  const module = path.join(modcache, `${SERVER_MODULE}@${SERVER_VERSION}`);
  if (!existsSync(path.join(module, 'schema'))) {
    await run(go, ['mod', 'download', `${SERVER_MODULE}@${SERVER_VERSION}`], { cwd: os.tmpdir() });
  }
  return { server, sqlTool, module };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a cluster of its own, as the postgres user when run as root (initdb refuses root).

function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(path.join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0]) return path.join(base, versions[0], 'bin');
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (r.status === 0 && existsSync(path.join(r.stdout.trim(), 'initdb'))) return r.stdout.trim();
  throw new KuraError(
    ErrorType.Unavailable,
    'PostgreSQL is not installed (no initdb under /usr/lib/postgresql or pg_config --bindir); install it with: apt-get install postgresql',
  );
}

const asRoot = process.getuid?.() === 0;

/** Runs a PostgreSQL program as the user that owns the cluster: postgres when we are root. */
async function pgRun(bin: string, cmd: string, args: string[]): Promise<void> {
  const program = path.join(bin, cmd);
  if (asRoot) await run('runuser', ['-u', 'postgres', '--', program, ...args]);
  else await run(program, args);
}

async function startPostgres(dir: string): Promise<ClusterState['postgres']> {
  const bin = postgresBin();
  const pgDir = path.join(dir, 'pg');
  mkdirSync(pgDir, { recursive: true });
  if (asRoot) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(pgDir, uid, gid);
  }
  const data = path.join(pgDir, 'data');
  await pgRun(bin, 'initdb', ['-D', data, '-U', 'postgres', '--auth-host=scram-sha-256', '--auth-local=trust']);
  const port = await freePort();
  // synchronous_commit=off loses at most the last few commits on a crash of the machine, never on a
  // crash of a process: the chaos cases kill server processes, not the host (docs/adr/040).
  const settings = `-p ${port} -k ${pgDir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c synchronous_commit=off`;
  await pgRun(bin, 'pg_ctl', ['-D', data, '-l', path.join(pgDir, 'postgres.log'), '-w', '-o', settings, 'start']);
  const pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const admin = new PgClient({ host: pgDir, port, user: 'postgres', database: 'postgres' });
  await admin.connect();
  try {
    await admin.query(`CREATE ROLE ${PG_USER} LOGIN CREATEDB PASSWORD '${PG_PASSWORD}'`);
  } finally {
    await admin.end();
  }
  return { port, pid, data, socketDir: pgDir };
}

/** Creates one database and brings its schema to the newest version of the module's versioned schema. */
async function setupSchema(bins: Binaries, port: number, database: string, schemaDir: string): Promise<void> {
  const common = [
    '--plugin',
    'postgres12',
    '--endpoint',
    '127.0.0.1',
    '--port',
    String(port),
    '--user',
    PG_USER,
    '--password',
    PG_PASSWORD,
    '--database',
    database,
  ];
  await run(bins.sqlTool, [...common, 'create-database']);
  await run(bins.sqlTool, [...common, 'setup-schema', '-v', '0.0']);
  await run(bins.sqlTool, [...common, 'update-schema', '-d', schemaDir]);
}

/** A superuser query on the cluster's PostgreSQL, in one of its databases. */
async function pgQuery<R extends Record<string, unknown>>(
  state: ClusterState,
  database: string,
  sql: string,
): Promise<R[]> {
  const c = new PgClient({ host: state.postgres.socketDir, port: state.postgres.port, user: 'postgres', database });
  await c.connect();
  try {
    return (await c.query<R>(sql)).rows;
  } finally {
    await c.end();
  }
}

// ---------------------------------------------------------------------------------------------
// The server's configuration: the module's development-postgres12.yaml, one copy per process.

interface Ports {
  grpcPort: number;
  membershipPort: number;
}

/**
 * The configuration of one server process, from the module's sample for PostgreSQL: every service
 * gets its ports (the process starts only its own), archival and the metrics listener are dropped,
 * and the dynamic config is the cluster's.
 */
function serverConfig(
  sample: Record<string, unknown>,
  state: Pick<ClusterState, 'frontend' | 'httpPort' | 'postgres'>,
  ports: Record<'frontend' | 'history' | 'matching' | 'worker', Ports>,
  dynamicConfigFile: string,
): Record<string, unknown> {
  const cfg = structuredClone(sample) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  cfg.log = { stdout: true, level: 'info' };
  cfg.persistence.numHistoryShards = HISTORY_SHARDS;
  for (const store of Object.values(cfg.persistence.datastores) as { sql: Record<string, unknown> }[]) {
    store.sql.connectAddr = `127.0.0.1:${state.postgres.port}`;
    store.sql.user = PG_USER;
    store.sql.password = PG_PASSWORD;
  }
  cfg.persistence.datastores['postgres-visibility'].sql.maxConns = 10;
  cfg.persistence.datastores['postgres-visibility'].sql.maxIdleConns = 10;
  cfg.global = { membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' } };
  const rpc = (p: Ports, extra: Record<string, unknown> = {}) => ({
    rpc: { grpcPort: p.grpcPort, membershipPort: p.membershipPort, bindOnLocalHost: true, ...extra },
  });
  cfg.services = {
    frontend: rpc(ports.frontend, { httpPort: state.httpPort }),
    history: rpc(ports.history),
    matching: rpc(ports.matching),
    worker: rpc(ports.worker),
  };
  cfg.clusterMetadata.clusterInformation.active.rpcAddress = state.frontend;
  cfg.publicClient = { hostPort: state.frontend };
  delete cfg.archival;
  delete cfg.namespaceDefaults;
  cfg.dynamicConfigClient = { filepath: dynamicConfigFile, pollInterval: '10s' };
  return cfg;
}

/** The module's dynamic config for SQL, plus what Kura needs (Updates, update-with-start, Nexus callbacks here). */
function dynamicConfig(sample: Record<string, unknown>, httpPort: number): Record<string, unknown> {
  const on = [{ value: true }];
  return {
    ...sample,
    'frontend.enableUpdateWorkflowExecution': on,
    'frontend.enableUpdateWorkflowExecutionAsyncAccepted': on,
    'frontend.enableExecuteMultiOperation': on,
    'system.forceSearchAttributesCacheRefreshOnRead': on,
    'component.nexusoperations.callback.endpoint.template': [
      { value: `http://127.0.0.1:${httpPort}/namespaces/{{.NamespaceName}}/nexus/callback` },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Processes.

const taken = new Set<number>();

/**
 * A free loopback port below 32768: the membership table keeps a host's port in a SMALLINT, and
 * the OS's own choice of a free port comes from the ephemeral range above it.
 */
async function lowPort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) {
      taken.add(port);
      return port;
    }
  }
  throw new KuraError(ErrorType.Unavailable, 'found no free loopback port between 20000 and 32000');
}

/** Starts (or restarts, after a kill) one process of the cluster with its own configuration. */
export function startService(state: ClusterState, name: ServiceName): ClusterProcess {
  const entry = state.processes.find((p) => p.name === name);
  if (!entry) throw new KuraError(ErrorType.NotFound, `the cluster in ${state.dir} has no process "${name}"`);
  if (alive(entry.pid)) return entry;
  entry.pid = spawnService(serverBinary(), state.dir, entry);
  writeState(state);
  return entry;
}

/** Starts one server process detached (its own process group), logging to its own file. */
function spawnService(server: string, dir: string, p: Omit<ClusterProcess, 'pid'>): number {
  const fd = openSync(p.log, 'a');
  const child = spawn(
    server,
    [
      '--root',
      dir,
      '--config',
      path.join('config', p.name),
      '--env',
      'development',
      '--allow-no-auth',
      'start',
      '--service',
      p.service,
    ],
    { cwd: dir, stdio: ['ignore', fd, fd], detached: true },
  );
  child.unref();
  closeSync(fd);
  if (child.pid === undefined) throw new KuraError(ErrorType.Unavailable, `could not start ${server}`);
  return child.pid;
}

/** Whether a server process has written the cluster's metadata record (throws until it has). */
async function clusterMetadataWritten(state: ClusterState): Promise<void> {
  const rows = await pgQuery<{ n: string }>(
    state,
    DATABASES.temporal,
    'SELECT count(*) AS n FROM cluster_metadata_info',
  );
  if (Number(rows[0]?.n ?? 0) === 0) throw new Error('no cluster metadata record yet');
}

/** A server log's line that says why its process ended (see reportFatalLines). */
const FATAL_LINE = /^Unable to |"level":"(fatal|panic|dpanic)"|^(panic|fatal error): /;

/**
 * The line a server process that exited left last, prefixed for an error message: the server
 * prints why it could not be created or started ("Unable to create server. Error: ...") past its
 * logger, as plain text.
 */
function lastWords(log: string): string {
  if (!existsSync(log)) return '';
  const lines = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const why = lines.filter((l) => FATAL_LINE.test(l)).at(-1);
  return why ? `; it said: ${why.slice(0, 600)}` : '';
}

/** Runs the Temporal CLI of .tools/bin against the cluster's frontend. */
async function temporalCli(frontend: string, args: string[]): Promise<string> {
  if (!existsSync(temporalBinary())) {
    throw new KuraError(
      ErrorType.Unavailable,
      `the Temporal CLI is not at ${temporalBinary()}; run \`npm run setup\` to build it, or set KURA_TEMPORAL_BIN`,
    );
  }
  const { stdout } = await run(temporalBinary(), [...args, '--address', frontend], { timeout: 60_000 });
  return stdout;
}

/**
 * Retries `fn` until it resolves or the deadline passes; throws the last error then, or at once
 * when `fatal` names a reason no retry can cure (a server process that exited).
 */
async function retry<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T>,
  fatal: () => string | undefined = () => undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const reason = fatal();
    if (reason) throw new KuraError(ErrorType.Unavailable, `${what} failed: ${reason}`);
    try {
      return await fn();
    } catch (error) {
      last = error;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  throw new KuraError(
    ErrorType.Unavailable,
    `${what} did not succeed within ${timeoutMs / 1000}s: ${last instanceof Error ? last.message : String(last)}`,
  );
}

/**
 * The members of each role in the membership table the server processes heartbeat into (every 10
 * to 15 s), each with the age of its last heartbeat. A record stays for 48 hours after its process
 * is gone, so only those that heartbeated within 20 s are listed unless `all`: the cutoff the
 * server itself uses to pick the hosts it joins. The table's times are UTC without a zone.
 */
export async function membership(state: ClusterState, all = false): Promise<Record<string, string[]>> {
  const roles = ['all', 'frontend', 'history', 'matching', 'worker'];
  const rows = await pgQuery<{ role: number; rpc_address: string; rpc_port: number; age: number }>(
    state,
    DATABASES.temporal,
    `SELECT role, rpc_address, rpc_port,
            EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - last_heartbeat)::float8 AS age
       FROM cluster_membership
      WHERE record_expiry > (now() AT TIME ZONE 'UTC')
        ${all ? '' : "AND last_heartbeat > (now() AT TIME ZONE 'UTC') - interval '20 seconds'"}
      ORDER BY role, rpc_port, last_heartbeat`,
  );
  const out: Record<string, string[]> = {};
  for (const r of rows)
    (out[roles[r.role] ?? String(r.role)] ??= []).push(
      `${r.rpc_address}:${r.rpc_port} (heartbeat ${Math.round(r.age)}s ago)`,
    );
  return out;
}

/** Field 3 (owner, a string) of a persistence ShardInfo, read from its protobuf encoding. */
export function shardOwnerOf(data: Buffer): string {
  let i = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = data[i++] ?? 0;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) return v;
    }
  };
  while (i < data.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      if (field === 3) return data.subarray(i, i + len).toString('utf8');
      i += len;
    } else break;
  }
  return '';
}

/** Which history host (its name) owns each shard, and the shard's range id (it grows on every takeover). */
export async function shardOwners(state: ClusterState): Promise<{ shard: number; owner: string; rangeId: number }[]> {
  const rows = await pgQuery<{ shard_id: number; range_id: string; data: Buffer }>(
    state,
    DATABASES.temporal,
    'SELECT shard_id, range_id, data FROM shards ORDER BY shard_id',
  );
  const byPort = new Map(state.processes.map((p) => [String(p.grpcPort), p.name]));
  return rows.map((r) => {
    // The owner is the host's identity and the acquisition: "<address>:<gRPC port>-<shard>-<uuid>".
    const owner = shardOwnerOf(r.data);
    const port = /^[^:]+:(\d+)-/.exec(owner)?.[1] ?? '';
    return { shard: r.shard_id, owner: byPort.get(port) ?? owner, rangeId: Number(r.range_id) };
  });
}

/** Stops the cluster's processes by pid (SIGTERM, SIGKILL after 10 s), then PostgreSQL, then removes its directory. */
export async function stopCluster(dir = clusterDir(), opts: { keep?: boolean } = {}): Promise<void> {
  const state = existsSync(stateFile(dir)) ? readClusterState(dir) : undefined;
  if (state) {
    const pids = state.processes.map((p) => p.pid).filter(alive);
    for (const pid of pids) {
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        process.kill(pid, 'SIGTERM');
      }
    }
    const deadline = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
    const postgresUp = alive(state.postgres.pid);
    if (postgresUp) {
      // Fast shutdown: SIGINT to the postmaster rolls back open sessions and stops cleanly.
      process.kill(state.postgres.pid, 'SIGINT');
      const pgDeadline = Date.now() + 30_000;
      while (alive(state.postgres.pid) && Date.now() < pgDeadline) await new Promise((r) => setTimeout(r, 200));
      if (alive(state.postgres.pid)) process.kill(state.postgres.pid, 'SIGKILL');
    }
    log(`stopped ${pids.length} server processes${postgresUp ? ` and PostgreSQL (pid ${state.postgres.pid})` : ''}`);
  }
  if (!opts.keep) rmSync(dir, { recursive: true, force: true });
}

/**
 * Starts a fresh cluster in `dir` and waits until Kura can run workflows on it. A start that fails
 * stops whatever it started, and keeps the directory with the logs for a look.
 */
export async function startCluster(dir = clusterDir()): Promise<ClusterState> {
  try {
    return await startFresh(dir);
  } catch (error) {
    await stopCluster(dir, { keep: true });
    const why = error instanceof Error ? error.message : String(error);
    throw new KuraError(ErrorType.Unavailable, `${why}\n  (the logs are in ${path.join(dir, 'logs')})`);
  }
}

async function startFresh(dir: string): Promise<ClusterState> {
  const existing = existsSync(stateFile(dir)) ? readClusterState(dir) : undefined;
  if (existing) {
    const up = existing.processes.every((p) => alive(p.pid)) && alive(existing.postgres.pid);
    if (up) {
      log(`already running in ${dir}`);
      return existing;
    }
    log(`a previous cluster in ${dir} is not whole; stopping what is left of it`);
  }
  await stopCluster(dir);
  const started = Date.now();
  const bins = await ensureBinaries();
  mkdirSync(path.join(dir, 'logs'), { recursive: true });
  // The postgres user must reach its directory below this one.
  chmodSync(dir, 0o755);

  log('starting PostgreSQL');
  const postgres = await startPostgres(dir);
  const state: ClusterState = { dir, frontend: '', httpPort: 0, postgres, processes: [] };
  const exited = () => {
    const dead = state.processes.find((p) => !alive(p.pid));
    return dead && `${dead.name} exited; its log: ${dead.log}${lastWords(dead.log)}`;
  };
  writeState(state);
  log(`PostgreSQL on 127.0.0.1:${postgres.port}; setting up the temporal and visibility schemas`);
  const schema = path.join(bins.module, 'schema', 'postgresql', 'v12');
  await setupSchema(bins, postgres.port, DATABASES.temporal, path.join(schema, 'temporal', 'versioned'));
  await setupSchema(bins, postgres.port, DATABASES.visibility, path.join(schema, 'visibility', 'versioned'));

  const port = async (): Promise<Ports> => ({ grpcPort: await lowPort(), membershipPort: await lowPort() });
  const frontendPorts = await port();
  state.frontend = `127.0.0.1:${frontendPorts.grpcPort}`;
  state.httpPort = await lowPort();
  const { parse } = await import('yaml');
  const sample = parse(readFileSync(path.join(bins.module, 'config', 'development-postgres12.yaml'), 'utf8'));
  const dynSample = parse(
    readFileSync(path.join(bins.module, 'config', 'dynamicconfig', 'development-sql.yaml'), 'utf8'),
  );
  const dynFile = path.join(dir, 'config', 'dynamic.yaml');
  mkdirSync(path.dirname(dynFile), { recursive: true });
  writeFileSync(dynFile, stringify(dynamicConfig(dynSample ?? {}, state.httpPort)));
  const shared = { frontend: frontendPorts, matching: await port(), worker: await port() };
  for (const s of SERVICES) {
    const own = s.service === 'history' ? await port() : shared[s.service];
    const ports = { ...shared, history: s.service === 'history' ? own : { grpcPort: 0, membershipPort: 0 } };
    const cfgDir = path.join(dir, 'config', s.name);
    mkdirSync(cfgDir, { recursive: true });
    writeFileSync(path.join(cfgDir, 'development.yaml'), stringify(serverConfig(sample, state, ports, dynFile)));
    const entry = { name: s.name, service: s.service, ...own, log: path.join(dir, 'logs', `${s.name}.log`) };
    state.processes.push({ ...entry, pid: spawnService(bins.server, dir, entry) });
    writeState(state);
    // Each process writes the cluster's metadata record when it finds none, with an insert that
    // fails rather than overwrite: a process that loses that race on a fresh database exits
    // ("Failed to apply cluster metadata", then "Unable to create server"). The first writes it alone.
    if (state.processes.length === 1)
      await retry('the cluster metadata record', 60_000, () => clusterMetadataWritten(state), exited);
  }
  log(`server processes started: ${state.processes.map((p) => `${p.name} (pid ${p.pid})`).join(', ')}`);

  await retry(
    'the frontend answering',
    120_000,
    () => temporalCli(state.frontend, ['operator', 'cluster', 'health']),
    exited,
  );
  for (const namespace of CLUSTER_NAMESPACES) {
    await retry(`registering namespace ${namespace}`, 60_000, async () => {
      const list = await temporalCli(state.frontend, ['operator', 'namespace', 'list', '-o', 'json']);
      if (list.includes(`"${namespace}"`)) return;
      await temporalCli(state.frontend, ['operator', 'namespace', 'create', '-n', namespace, '--retention', '72h']);
    });
    const attrs = KURA_SEARCH_ATTRIBUTES.flatMap((k) => ['--name', k.name, '--type', searchAttributeTypeName(k)]);
    await retry(`registering Kura's search attributes in ${namespace}`, 60_000, async () => {
      const have = await temporalCli(state.frontend, ['operator', 'search-attribute', 'list', '-n', namespace]);
      if (KURA_SEARCH_ATTRIBUTES.every((k) => have.includes(k.name))) return;
      await temporalCli(state.frontend, ['operator', 'search-attribute', 'create', '-n', namespace, ...attrs]);
      throw new Error('registered; checking again');
    });
  }
  await retry('the namespaces reaching every host', 60_000, () => probeWorkflowStart(state.frontend));
  log(`ready in ${seconds(started)}`);
  return state;
}

/**
 * Starts and terminates a workflow in each namespace: the namespace cache of history and matching
 * refreshes on its own schedule, and until it does a start fails with "namespace not found".
 */
async function probeWorkflowStart(frontend: string): Promise<void> {
  const connection = await Connection.connect({ address: frontend });
  try {
    for (const namespace of CLUSTER_NAMESPACES) {
      const workflowId = `kura-cluster-probe-${Date.now()}`;
      await connection.workflowService.startWorkflowExecution({
        namespace,
        workflowId,
        workflowType: { name: 'probe' },
        taskQueue: { name: 'kura-cluster-probe' },
        requestId: workflowId,
      });
      await connection.workflowService.terminateWorkflowExecution({
        namespace,
        workflowExecution: { workflowId },
        reason: 'readiness probe',
      });
    }
  } finally {
    await connection.close();
  }
}

async function printStatus(state: ClusterState): Promise<void> {
  console.log(`frontend   ${state.frontend}   (TEMPORAL_ADDRESS=${state.frontend})`);
  console.log(`http       127.0.0.1:${state.httpPort}`);
  console.log(`postgres   127.0.0.1:${state.postgres.port}   (pid ${state.postgres.pid})`);
  for (const p of state.processes) {
    console.log(
      `${p.name.padEnd(10)} 127.0.0.1:${p.grpcPort}  membership :${p.membershipPort}  pid ${p.pid}${alive(p.pid) ? '' : ' (not running)'}`,
    );
  }
  for (const [role, members] of Object.entries(await membership(state)))
    console.log(`ring ${role}: ${members.join(', ')}`);
  for (const s of await shardOwners(state)) console.log(`shard ${s.shard}: ${s.owner} (range ${s.rangeId})`);
  console.log(`state      ${stateFile(state.dir)}`);
}

/** The workflow and chaos test files `npm run test:cluster` runs against the cluster (docs/adr/040). */
export const CLUSTER_SUITE = [
  'test/workflows/backup-restore.test.ts',
  'test/workflows/store.test.ts',
  'test/workflows/ladder.test.ts',
  'test/workflows/online-backup.test.ts',
  'test/workflows/remote-copy.test.ts',
  'test/chaos/worker-kill.test.ts',
  'test/chaos/store-kill.test.ts',
  'test/chaos/ladder-worker-kill.test.ts',
];

/** The vitest run in progress, for a signal to stop it. */
let running: ChildProcess | undefined;

function vitest(files: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const child = spawn(
    process.execPath,
    [path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'vitest.cluster.config.mts', ...files],
    { cwd: ROOT, env, stdio: 'inherit' },
  );
  running = child;
  return new Promise((resolve) => child.on('close', (code) => resolve(code ?? 1)));
}

async function runTests(): Promise<number> {
  const dir = clusterDir();
  let code = 1;
  // The server processes run in process groups of their own, out of reach of a Ctrl-C or of a CI
  // job's cancellation: a signal stops the tests and the cluster before this process goes.
  // The signal comes twice when it went to the whole process group (tsx relays it): the second
  // must not end this process before the first has stopped the cluster.
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping the tests and the cluster`);
    running?.kill(signal);
    void stopCluster(dir).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    // Fresh: a cluster left running (by `npm run cluster`) may hold another run's state.
    await stopCluster(dir);
    const state = await startCluster(dir);
    await printStatus(state);
    const env = { ...process.env, KURA_TEMPORAL_ADDRESS: state.frontend, KURA_CLUSTER_DIR: dir };
    const suite = await vitest(CLUSTER_SUITE, env);
    // The history host kill runs alone, last: it takes a host out from under everything running.
    const chaos = await vitest(['test/cluster'], env);
    code = suite !== 0 ? suite : chaos;
  } finally {
    if (code !== 0) {
      reportFatalLines(dir);
      // The cluster's directory goes with the stop: a failure is diagnosed from a copy of its logs.
      const kept = await keepDiagnostics(dir, failedRunDir());
      if (kept) log(`the cluster's logs, configuration and last status are kept in ${kept}`);
    }
    await stopCluster(dir, { keep: code !== 0 && process.env.KURA_CLUSTER_KEEP === '1' });
  }
  return code;
}

/** Where a failed `test` run's diagnostics go: $KURA_CLUSTER_LOGS, else test-artifacts/cluster-<time> of the repository. */
function failedRunDir(): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return process.env.KURA_CLUSTER_LOGS ?? path.join(ROOT, 'test-artifacts', `cluster-${stamp}`);
}

/**
 * Copies what a failed run is diagnosed from into `dest` while the cluster is still up: every
 * server process's log, PostgreSQL's log, the configurations and state.json, and status.txt (which
 * process still runs, the membership table, each shard's owner and range id). Returns `dest`, or
 * undefined when the cluster left nothing to keep.
 */
export async function keepDiagnostics(dir: string, dest: string): Promise<string | undefined> {
  if (!existsSync(dir)) return undefined;
  mkdirSync(dest, { recursive: true });
  const copies: [string, string][] = [
    ['logs', 'logs'],
    ['config', 'config'],
    ['state.json', 'state.json'],
    [path.join('pg', 'postgres.log'), path.join('logs', 'postgres.log')],
  ];
  for (const [from, to] of copies) {
    const source = path.join(dir, from);
    if (existsSync(source)) cpSync(source, path.join(dest, to), { recursive: true });
  }
  const state = existsSync(stateFile(dir)) ? readClusterState(dir) : undefined;
  if (state) writeFileSync(path.join(dest, 'status.txt'), await statusText(state));
  return dest;
}

/** The status of `printStatus` as text; a part that cannot be read (PostgreSQL gone) says why instead. */
async function statusText(state: ClusterState): Promise<string> {
  const lines = [
    `at ${new Date().toISOString()}`,
    `postgres pid ${state.postgres.pid}${alive(state.postgres.pid) ? '' : ' (not running)'}`,
  ];
  for (const p of state.processes)
    lines.push(
      `${p.name.padEnd(10)} grpc :${p.grpcPort}  membership :${p.membershipPort}  pid ${p.pid}${alive(p.pid) ? '' : ' (not running)'}`,
    );
  try {
    for (const [role, members] of Object.entries(await membership(state, true)))
      lines.push(`ring ${role}: ${members.join(', ')}`);
    for (const s of await shardOwners(state)) lines.push(`shard ${s.shard}: ${s.owner} (range ${s.rangeId})`);
  } catch (error) {
    lines.push(`membership and shards unreadable: ${error instanceof Error ? error.message : String(error)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Prints each server process's fatal log lines (why one exited): the logger's fatal and panic
 * levels, and the server's own `Unable to ...` and the Go runtime's `panic:` and `fatal error:`,
 * which bypass the logger.
 */
function reportFatalLines(dir: string): void {
  const state = existsSync(stateFile(dir)) ? readClusterState(dir) : undefined;
  for (const p of state?.processes ?? []) {
    const fatal = existsSync(p.log)
      ? readFileSync(p.log, 'utf8')
          .split('\n')
          .filter((line) => FATAL_LINE.test(line))
      : [];
    const status = alive(p.pid) ? 'running' : 'exited';
    log(`${p.name} (pid ${p.pid}) ${status}${fatal.length ? `; fatal: ${fatal.at(-1)!.slice(0, 400)}` : ''}`);
  }
}

async function main(): Promise<void> {
  const command = process.argv[2] ?? 'start';
  if (command === 'start') {
    const state = await startCluster();
    await printStatus(state);
    console.log(`stop it with: npm run cluster -- stop`);
  } else if (command === 'stop') {
    await stopCluster();
  } else if (command === 'status') {
    const state = readClusterState();
    if (!state)
      throw new KuraError(ErrorType.NotFound, `no cluster state in ${clusterDir()}; start one with npm run cluster`);
    await printStatus(state);
  } else if (command === 'test') {
    process.exitCode = await runTests();
  } else {
    throw new KuraError(ErrorType.InvalidInput, `unknown command "${command}"; use start, stop, status or test`);
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(`cluster: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  });
}
