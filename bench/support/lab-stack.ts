/**
 * What the orchestration benchmarks share: their flags, and a lab estate of real files with its
 * own dev server on 127.0.0.1, Kura's workers and a client, all torn down when the run ends.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { freePort, startDevServer, type DevServer } from '../../src/stack/devserver';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { loadConfig, type LoadedConfig } from '../../src/config/load';
import { kuraPaths, type KuraPaths } from '../../src/config/paths';
import { createLabFiles } from '../../src/lab/files';
import { startKuraWorkers, type KuraWorkers } from '../../src/worker';
import { DEFAULT_HISTORY_CACHE } from '../../src/domain/server-config';
import { Kura } from '../../src/client';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { ensureKeyFile, keyFileOf } from '../../src/codec/keys';
import type { ConfigInput } from '../../src/domain/inventory';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

/** The value of `--name <value>` on the command line, or the fallback. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : fallback;
}

/**
 * The history cache of the bench's own dev server, from `--server-cache <workflows|cli>`
 * (`history.hostLevelCacheMaxSize`, docs/adr/052): omitted, kura.yaml's default, as `kura start`
 * runs it; `cli`, the Temporal CLI's own 8,096.
 */
export function serverCacheArg(): number | undefined {
  const v = arg('server-cache', String(DEFAULT_HISTORY_CACHE));
  if (v === 'cli') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--server-cache takes a number of workflows (≥ 1) or cli, not "${v}"`);
  return n;
}

/** How the bench's header names its server's history cache. */
export function serverCacheText(cache: number | undefined): string {
  return cache === undefined ? "the CLI's history cache (8,096 workflows)" : `a history cache of ${cache} workflows`;
}

/** The middle value of the runs' figures (the upper middle of an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/**
 * A site of one VM whose data volume is `size` bytes, backed up in failover mode on two streams of
 * ten chunks, each copy written as one piece on cartridges too large to fill: the estate of the
 * benchmarks that time one backup's data path.
 */
export function oneVmBackupConfig(size: number, site: string): ConfigInput {
  const cfg = hospitalPreset({
    vms: 1,
    dataVolumeSize: size,
    softwareVolumeSize: 4096,
    cartridgeCapacity: 64 * 1024 * 1024 * 1024,
    cartridgesPerLibrary: 2,
    site,
  });
  cfg.tuning = {
    pieceSize: '64GiB',
    reserveWait: '10m',
    copyHeartbeatTimeout: '10s',
    streams: 2,
    mode: 'failover',
    chunks: 10,
  };
  return cfg;
}

export interface LabStack {
  dir: string;
  server: DevServer;
  /** The server's Prometheus endpoint on 127.0.0.1 (its history cache's figures, bench/support/server-cache.ts). */
  metricsPort: number;
  loaded: LoadedConfig;
  paths: KuraPaths;
  workers: KuraWorkers;
  client: Client;
  kura: Kura;
}

/**
 * Writes `cfg` as kura.yaml in a fresh directory, creates the lab's files, starts a dev server and
 * the workers, runs `run`, then stops everything and removes the directory, whatever happened.
 * `afterWorkers` runs once the workers are stopped, before the connection closes (e.g. to end
 * long-lived workflows the run started, with nobody left to complete their tasks).
 * `activityInterceptors` go to Kura's workers (a bench that times each step passes one).
 */
export async function withLabStack(
  name: string,
  cfg: ConfigInput,
  run: (s: LabStack) => Promise<void>,
  afterWorkers?: (client: Client) => Promise<void>,
  activityInterceptors?: ActivityInterceptorsFactory[],
): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `kura-bench-${name}-`));
  const workflowCache = serverCacheArg();
  const metricsPort = await freePort();
  const server = await startDevServer({
    headless: true,
    dbFile: path.join(dir, 'temporal.db'),
    workflowCache,
    metricsPort,
  });
  let workers: KuraWorkers | undefined;
  let connection: Connection | undefined;
  let client: Client | undefined;
  try {
    writeFileSync(path.join(dir, 'kura.yaml'), renderConfigYaml(cfg));
    const loaded = loadConfig(path.join(dir, 'kura.yaml'));
    const keyFile = keyFileOf(loaded);
    if (keyFile) ensureKeyFile(keyFile);
    const paths = kuraPaths(loaded);
    await createLabFiles(loaded, paths);
    workers = await startKuraWorkers({ loaded, address: server.address, activityInterceptors });
    connection = await Connection.connect({ address: server.address });
    client = new Client({ connection, dataConverter: kuraDataConverter(loaded) });
    await run({ dir, server, metricsPort, loaded, paths, workers, client, kura: new Kura(client, loaded) });
  } finally {
    await workers?.shutdown();
    if (client && afterWorkers) await afterWorkers(client).catch((err: unknown) => console.error(err));
    await connection?.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a benchmark's main function, printing a failure and exiting non-zero. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
