/**
 * Test harness: a small lab estate of real files in a temporary directory, Kura's workers on a
 * task queue of the test's own (so test files sharing the one dev server never take each other's
 * work), and a client API bound to both.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { loadConfig, type LoadedConfig } from '../../src/config/load';
import { kuraPaths, type KuraPaths } from '../../src/config/paths';
import { hospitalPreset, renderConfigYaml, type HospitalPresetOptions } from '../../src/lab/preset';
import { createLabFiles, labVolumePath } from '../../src/lab/files';
import { startKuraWorkers, type KuraWorkers, type KuraWorkersOptions } from '../../src/worker';
import { Kura, installationClientInterceptors } from '../../src/client';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { ensureKeyFile, keyFileOf } from '../../src/codec/keys';
import type { ConfigInput } from '../../src/domain/inventory';
import type { PoolTables } from '../../src/domain/pool';
import type { LabState } from '../../src/lab/state';
import { DatapathClient } from '../../src/datapath/client';
import { controlTokenFile, readControlToken } from '../../src/datapath/token';
import { freePort } from './nbd';

export interface TestLab {
  dir: string;
  configFile: string;
  loaded: LoadedConfig;
  paths: KuraPaths;
  site: string;
  /** The control task queue this lab's workers and jobs use. */
  taskQueue: string;
  /** Absolute path of a VM's data volume file. */
  dataVolume(vm: string): string;
  cleanup(): void;
}

export interface LabOptions extends HospitalPresetOptions {
  /** Changes to the generated configuration before it is written. */
  edit?: (cfg: ConfigInput) => void;
  pieceSize?: string;
  copyHeartbeatTimeout?: string;
  deviceAttempts?: number;
  reserveWait?: string;
  /** Copy settings of kura.yaml's tuning (defaults: 2 streams, failover, 10 chunks). */
  streams?: number;
  mode?: 'failover' | 'parallel';
  chunks?: number;
}

/** A unique, readable suffix for ids of one test. */
export function uniqueId(): string {
  return randomBytes(4).toString('hex');
}

/** Creates a small hospital-like lab (4 VMs of 4 MiB by default) under a fresh temp directory. */
export async function makeLab(opts: LabOptions = {}): Promise<TestLab> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-lab-'));
  const site = opts.site ?? `t${uniqueId()}`;
  const cfg = hospitalPreset({
    vms: 4,
    hosts: 2,
    dataVolumeSize: 4 * 1024 * 1024,
    softwareVolumeSize: 1024 * 1024,
    cartridgesPerLibrary: 4,
    cartridgeCapacity: 1024 * 1024 * 1024,
    drivesPerLibrary: 2,
    ...opts,
    site,
  });
  cfg.tuning = {
    pieceSize: opts.pieceSize ?? '1MiB',
    copyHeartbeatTimeout: opts.copyHeartbeatTimeout ?? '3s',
    deviceAttempts: opts.deviceAttempts ?? 3,
    reserveWait: opts.reserveWait ?? '60s',
    ...(opts.streams === undefined ? {} : { streams: opts.streams }),
    ...(opts.mode === undefined ? {} : { mode: opts.mode }),
    ...(opts.chunks === undefined ? {} : { chunks: opts.chunks }),
  };
  // Encrypted, as the preset is, with the test run's one key file (a lab may name its own in `edit`).
  cfg.security = { keyFile: inject('keyFilePath') };
  opts.edit?.(cfg);
  const configFile = path.join(dir, 'kura.yaml');
  writeFileSync(configFile, renderConfigYaml(cfg));
  const loaded = loadConfig(configFile);
  const keyFile = keyFileOf(loaded);
  if (keyFile) ensureKeyFile(keyFile);
  const paths = kuraPaths(loaded);
  await createLabFiles(loaded, paths);
  const vmVolume = (vm: string) => {
    const s = loaded.config.sites[0];
    const ref = s?.vms.find((v) => v.name === vm)?.dataVolume ?? '';
    const [array, volume] = ref.split('/');
    return labVolumePath(paths, site, array ?? '', volume ?? '');
  };
  return {
    dir,
    configFile,
    loaded,
    paths,
    site,
    taskQueue: `t-${uniqueId()}-kura-control`,
    dataVolume: vmVolume,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Runs Kura's workers for the lab in this process, against the test run's dev server; `loaded`
 * runs them on another configuration of the lab than the one it was made with.
 */
export async function startWorkers(
  lab: TestLab,
  loaded: LoadedConfig = lab.loaded,
  more: Pick<KuraWorkersOptions, 'activityInterceptors' | 'sites'> = {},
): Promise<KuraWorkers> {
  return startKuraWorkers({
    loaded,
    address: inject('temporalAddress'),
    namespace: inject('temporalNamespace'),
    taskQueue: lab.taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
    ...more,
  });
}

/** The environment a child process needs to reach this test run's Temporal server. */
export function serverEnv(): Record<string, string> {
  return { TEMPORAL_ADDRESS: inject('temporalAddress'), TEMPORAL_NAMESPACE: inject('temporalNamespace') };
}

/** The environment a child process (the CLI, a worker) needs to act as the lab's installation. */
export function labEnv(lab: TestLab): NodeJS.ProcessEnv {
  return { ...process.env, ...serverEnv(), KURA_CONFIG: lab.configFile, KURA_TASK_QUEUE: lab.taskQueue };
}

/** A client API bound to the lab's configuration and task queue. */
export async function connectKura(lab: TestLab): Promise<{ kura: Kura; client: Client; close(): Promise<void> }> {
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  const client = new Client({
    connection,
    namespace: inject('temporalNamespace'),
    dataConverter: kuraDataConverter(lab.loaded),
    interceptors: installationClientInterceptors(lab.loaded.config.installation),
  });
  return { kura: new Kura(client, lab.loaded, lab.taskQueue), client, close: () => connection.close() };
}

/** SHA-256 of a whole file. */
export async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** A fingerprint of every file below a directory (path, size, mtime), to prove nothing changed. */
export function treeFingerprint(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (!/\.db(-wal|-shm)?$/.test(name)) out.push(`${path.relative(dir, p)} ${st.size} ${st.mtimeMs}`);
    }
  };
  walk(dir);
  return out.join('\n');
}

/** The type and message of the typed failure at the root of a failed job (down the cause chain). */
export { failureOf } from '../../src/api/failures';

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * Waits until a child process prints `marker` (on stdout, or on stderr too when `stderr` is set),
 * and fails with everything it printed when it exits first or is silent for a minute.
 */
export async function untilPrinted(child: ChildProcess, what: string, marker: string, stderr: boolean): Promise<void> {
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${output}`)), 60_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes(marker)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', stderr ? onData : (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${output}`)));
  });
}

/**
 * Starts `src/worker.ts` as its own process for the lab (so a test can SIGKILL it) and waits until
 * it says it is running. The caller kills it; `procs` collects every process started.
 */
export async function startWorkerProcess(
  lab: TestLab,
  procs: ChildProcess[],
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(ROOT, 'src', 'worker.ts')], {
    cwd: ROOT,
    env: { ...labEnv(lab), KURA_WORKFLOW_BUNDLE: inject('workflowBundlePath'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(child);
  await untilPrinted(child, 'worker', 'workers running', true);
  return child;
}

/** A one-VM lab for the datapath's kill tests, with the datapath's ports and a control client. */
export interface DatapathLab {
  lab: TestLab;
  nbdPort: number;
  control: DatapathClient;
}

/**
 * A one-VM lab whose datapath listens on free ports and, unless `paced` is false, paces its copies
 * at 1 MiB/s, so a test has seconds in which to see a backup's phase and kill the datapath in it;
 * `settings` adds to its kura.yaml datapath section.
 */
export async function makeDatapathLab(
  dataVolumeSize: number,
  opts: { paced?: boolean; settings?: Record<string, unknown> } = {},
): Promise<DatapathLab> {
  const nbdPort = await freePort();
  const controlPort = await freePort();
  const pace = opts.paced === false ? {} : { copyRate: '1MiB' };
  const lab = await makeLab({
    vms: 1,
    dataVolumeSize,
    edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort, ...pace, ...opts.settings }),
  });
  const control = new DatapathClient(`http://127.0.0.1:${controlPort}`, () =>
    readControlToken(controlTokenFile(lab.loaded, lab.paths)),
  );
  return { lab, nbdPort, control };
}

/** The first value a probe gives that is not undefined, asking again every 20 ms; a probe that throws counts as undefined. */
export async function untilDefined<T>(probe: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `kura datapath` for the lab as a child process (one a test can SIGKILL), pushed to `procs`
 * for the test's cleanup, and waits until it reports ready.
 */
export async function startDatapathProcess(
  lab: TestLab,
  procs: ChildProcess[],
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'kura'), 'datapath'], {
    cwd: ROOT,
    env: { ...labEnv(lab), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(child);
  await untilPrinted(child, 'datapath', '"ready":true', false);
  return child;
}

/** What a run of the `kura` CLI left: its exit code and output. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `bin/kura` as a person does, in the lab's directory, as the lab's installation. */
export function runKura(lab: TestLab, args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      path.join(ROOT, 'bin', 'kura'),
      args,
      { cwd: lab.dir, env: { ...labEnv(lab), ...env }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** The JSON a `--json` run printed; fails with the whole output when it is not JSON. */
export function cliJson<T = Record<string, unknown>>(r: CliRun): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

/** The devices a pool holds out of service, with their reasons, every table of it. */
export function unavailableDevices(t: PoolTables): { name: string; reason: string }[] {
  return [...t.servers, ...t.libraries, ...t.drives, ...t.tapes, ...t.switches, ...t.copyDevices]
    .filter((r) => r.state === 'unavailable')
    .map((r) => ({ name: r.name, reason: r.reason ?? '' }));
}

/** Polls `check` every 100 ms until it holds; throws when it does not within `ms`. */
export async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Clears the lab's faults and brings every device the pool holds out of service back, as an
 * operator would after fixing them (`kura pool mark … available`, which waits for the pool to show it).
 */
export async function repairLab(kura: Kura, site: string, state: LabState): Promise<void> {
  state.clearFaults();
  for (const d of unavailableDevices(await kura.pool.tables(site))) {
    await kura.pool.mark(site, { device: d.name, state: 'available' });
  }
  await eventually(async () => unavailableDevices(await kura.pool.tables(site)).length === 0);
}
