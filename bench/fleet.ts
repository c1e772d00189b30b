/**
 * Fleet scale benchmark: the night of `npm start` — every VM of a hospital-preset lab backed up
 * once by one fleet run, `--k` at a time, with the preset's own tuning (2 streams, failover, 10
 * chunks) — at several estate sizes, each on a fresh dev server (SQLite file) and a fresh worker
 * process. For each size it prints the time per VM, the peak RSS and CPU time of the worker and
 * of the server, the server's database size, and a profile of one backup's history (activities,
 * local activities, workflow tasks); then the time per VM at the largest size ÷ at the smallest
 * (target ≤ 1.3), and the curve as an SVG in bench/out/fleet.svg (and docs/bench/fleet.svg when
 * the default sizes ran).
 *
 *   npx tsx bench/fleet.ts [--sizes 77,300,1000] [--k 4] [--size 8MiB] [--limit 20m] [--guardians on|off] [--cpu-prof]
 *                          [--server-cache cli|WORKFLOWS]
 *
 * `--limit` bounds each size's fleet run: past it the run is cancelled and reported as over.
 * `--guardians off` starts no VM guardian (the recovery ladder's per-VM workflows that npm start runs).
 * `--server-cache` bounds the dev server's history cache (docs/adr/052): kura.yaml's default (512) unless given;
 * `cli` keeps the Temporal CLI's 8,096.
 * `--cpu-prof` writes a V8 CPU profile of each worker process to bench/out/worker-cpu/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { WORKFLOW_BUNDLE_CONVERTERS, kuraDataConverter } from '../src/codec/data-converter';
import { ensureKeyFile, keyFileOf } from '../src/codec/keys';
import { freePort, startDevServer, type DevServer } from '../src/stack/devserver';
import { hospitalPreset, renderConfigYaml } from '../src/lab/preset';
import { loadConfig } from '../src/config/load';
import { kuraPaths } from '../src/config/paths';
import { createLabFiles } from '../src/lab/files';
import { Kura, poolWorkflowId } from '../src/client';
import { workflowInterceptorModules, workflowsEntry } from '../src/worker';
import { formatBytes, parseDuration, parseSize } from '../src/domain/units';
import type { FleetReport } from '../src/domain/fleet';
import { arg, runBench, serverCacheArg, serverCacheText } from './support/lab-stack';
import { printVerdict } from './support/verdict';
import { fleetSvg } from './support/fleet-svg';
import { cacheDelta, serverCacheStats } from './support/server-cache';

const ROOT = path.resolve(__dirname, '..');
const DEFAULT_SIZES = '77,300,1000';
const TARGET = 1.3;

/** What one estate size measured. */
export interface FleetRun {
  vms: number;
  seconds: number;
  perVm: number;
  succeeded: number;
  failed: number;
  overLimit: boolean;
  workerPeakRss: number;
  serverPeakRss: number;
  workerCpu: number;
  serverCpu: number;
  dbBytes: number;
  profile: HistoryProfile;
  fleetEvents: number;
  poolRuns: number;
  /** The server's history cache during the fleet run: held at its end, lookups, misses. */
  cache: string;
}

/** What one backup's history says it cost. */
interface HistoryProfile {
  events: number;
  activities: number;
  localActivities: number;
  workflowTasks: number;
}

/** Peak resident set (VmHWM) of a process, in bytes. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** User + system CPU seconds a process has used. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Starts `src/worker.ts` as its own process (so its RSS and CPU are its own) and waits until it runs. */
async function startWorker(env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const profile = process.argv.includes('--cpu-prof')
    ? ['--cpu-prof', '--cpu-prof-dir', path.join(ROOT, 'bench', 'out', 'worker-cpu')]
    : [];
  const child = spawn(process.execPath, [...profile, '--require', 'tsx/cjs', path.join(ROOT, 'src', 'worker.ts')], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the worker did not start:\n${output}`)), 120_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes('workers running')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`the worker exited with ${code}:\n${output}`)));
  });
  return child;
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await gone;
  clearTimeout(timer);
}

/** Counts what one workflow's history holds: activities, local activities (markers), workflow tasks. */
async function profileOf(client: Client, workflowId: string): Promise<HistoryProfile> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  let activities = 0;
  let localActivities = 0;
  let workflowTasks = 0;
  for (const e of events) {
    if (e.activityTaskScheduledEventAttributes) activities++;
    if (e.workflowTaskCompletedEventAttributes) workflowTasks++;
    if (e.markerRecordedEventAttributes?.markerName === 'core_local_activity') localActivities++;
  }
  return { events: events.length, activities, localActivities, workflowTasks };
}

/** Backs up a fresh estate of `vms` VMs as one fleet run and measures it. */
async function runSize(
  vms: number,
  opts: { k: number; size: number; limitMs: number; bundlePath: string; guardians: boolean; serverCache?: number },
): Promise<FleetRun> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `kura-bench-fleet-${vms}-`));
  let server: DevServer | undefined;
  let worker: ChildProcess | undefined;
  let connection: Connection | undefined;
  try {
    const cfg = hospitalPreset({ vms, dataVolumeSize: opts.size, softwareVolumeSize: 4096, site: 'bench' });
    if (!opts.guardians) cfg.ladder = { guardVms: false };
    writeFileSync(path.join(dir, 'kura.yaml'), renderConfigYaml(cfg));
    const loaded = loadConfig(path.join(dir, 'kura.yaml'));
    const keyFile = keyFileOf(loaded);
    if (keyFile) ensureKeyFile(keyFile);
    const t0 = performance.now();
    await createLabFiles(loaded, kuraPaths(loaded));
    console.log(`  ${vms} VMs: lab files created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const dbFile = path.join(dir, 'temporal.db');
    const metricsPort = await freePort();
    server = await startDevServer({ headless: true, dbFile, workflowCache: opts.serverCache, metricsPort });
    worker = await startWorker({
      ...process.env,
      KURA_CONFIG: path.join(dir, 'kura.yaml'),
      TEMPORAL_ADDRESS: server.address,
      KURA_WORKFLOW_BUNDLE: opts.bundlePath,
    });
    connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection, dataConverter: kuraDataConverter(loaded) });
    const kura = new Kura(client, loaded);

    const cache0 = await serverCacheStats(metricsPort);
    const cpu0 = { worker: cpuSeconds(worker.pid!), server: cpuSeconds(server.pid) };
    const start = performance.now();
    const fleet = await kura.startFleet('all', { concurrency: opts.k, requestedBy: 'bench/fleet' });
    let overLimit = false;
    const timer = setTimeout(() => {
      overLimit = true;
      void fleet.cancel().catch(() => undefined);
    }, opts.limitMs);
    let report: FleetReport | undefined;
    try {
      report = (await fleet.result()) as FleetReport;
    } catch (err) {
      if (!(overLimit && err instanceof WorkflowFailedError)) throw err;
    } finally {
      clearTimeout(timer);
    }
    const seconds = (performance.now() - start) / 1000;
    const cpu = { worker: cpuSeconds(worker.pid!) - cpu0.worker, server: cpuSeconds(server.pid) - cpu0.server };
    const cache = cacheDelta(cache0, await serverCacheStats(metricsPort));

    const done = report?.targets.find((t) => t.state === 'done' && t.workflowId);
    const profile = done?.workflowId
      ? await profileOf(client, done.workflowId)
      : { events: 0, activities: 0, localActivities: 0, workflowTasks: 0 };
    const fleetEvents = (await fleet.describe()).historyLength;
    const poolRuns = await countRuns(client, poolWorkflowId('bench'));
    const run: FleetRun = {
      vms,
      seconds,
      perVm: seconds / vms,
      succeeded: report?.succeeded ?? 0,
      failed: report?.failed ?? 0,
      overLimit,
      workerPeakRss: peakRss(worker.pid!),
      serverPeakRss: peakRss(server.pid),
      workerCpu: cpu.worker,
      serverCpu: cpu.server,
      dbBytes: fileSize(dbFile) + fileSize(`${dbFile}-wal`),
      profile,
      fleetEvents,
      poolRuns,
      cache,
    };
    console.log(
      `  ${vms} VMs: ${seconds.toFixed(1)} s, ${run.perVm.toFixed(3)} s/VM, ${run.succeeded} succeeded, ${run.failed} failed${overLimit ? ', OVER THE LIMIT (cancelled)' : ''}; ` +
        `worker peak RSS ${formatBytes(run.workerPeakRss)}, server ${formatBytes(run.serverPeakRss)}; database ${formatBytes(run.dbBytes)}; ${cache}; load average ${os.loadavg()[0]!.toFixed(2)}`,
    );
    return run;
  } finally {
    await connection?.close().catch(() => undefined);
    if (worker) await stopWorker(worker);
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** How many runs a workflow id has had (the pool continues as new as its history grows). */
async function countRuns(client: Client, workflowId: string): Promise<number> {
  let n = 0;
  for await (const _ of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) n++;
  return n;
}

async function main(): Promise<void> {
  const sizesArg = arg('sizes', DEFAULT_SIZES);
  const sizes = sizesArg.split(',').map((s) => Number(s.trim()));
  if (sizes.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error(`--sizes must list VM counts, not "${sizesArg}"`);
  const k = Number(arg('k', '4'));
  const size = parseSize(arg('size', '8MiB')) ?? 8 * 1024 * 1024;
  const limitMs = parseDuration(arg('limit', '20m')) ?? 20 * 60_000;
  const guardians = arg('guardians', 'on') !== 'off';
  const serverCache = serverCacheArg();

  console.log(
    `fleet benchmark: one fleet run per estate size (${sizes.join(', ')} VMs of ${formatBytes(size)}), ${k} at a time, ` +
      `2 streams in failover mode with 10 chunks each (the preset's tuning, as npm start runs it); dev server (SQLite, WAL, ${serverCacheText(serverCache)}) and worker ` +
      `process on 127.0.0.1, ${guardians ? 'a guardian per VM (as npm start runs them)' : 'no VM guardians'}, ${os.availableParallelism()} CPU(s), load average ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} at the start; each run bounded by ${formatDurationMs(limitMs)}`,
  );
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'kura-bench-fleet-bundle-'));
  const runs: FleetRun[] = [];
  try {
    const bundle = await bundleWorkflowCode({
      workflowsPath: workflowsEntry(),
      ...WORKFLOW_BUNDLE_CONVERTERS,
      workflowInterceptorModules: workflowInterceptorModules(),
      logger: quiet,
    });
    const bundlePath = path.join(bundleDir, 'workflows.js');
    writeFileSync(bundlePath, bundle.code);
    for (const vms of sizes) runs.push(await runSize(vms, { k, size, limitMs, bundlePath, guardians, serverCache }));
  } finally {
    rmSync(bundleDir, { recursive: true, force: true });
  }

  console.log('');
  console.log(
    '   VMs   time     s/VM   worker RSS  server RSS  worker CPU/VM  server CPU/VM  database   fleet events  pool runs',
  );
  for (const r of runs) {
    console.log(
      `  ${String(r.vms).padStart(4)}  ${r.seconds.toFixed(1).padStart(6)} s  ${r.perVm.toFixed(3)}  ${formatBytes(r.workerPeakRss).padStart(10)}  ${formatBytes(r.serverPeakRss).padStart(10)}  ${r.workerCpu / r.vms >= 0 ? (r.workerCpu / r.vms).toFixed(3).padStart(11) : ''} s  ${(r.serverCpu / r.vms).toFixed(3).padStart(11)} s  ${formatBytes(r.dbBytes).padStart(9)}  ${String(r.fleetEvents).padStart(12)}  ${String(r.poolRuns).padStart(9)}${r.overLimit ? '  (over the limit)' : ''}`,
    );
  }
  const p = runs.find((r) => r.profile.events > 0)?.profile;
  if (p) {
    console.log(
      `one backup's history: ${p.events} events, ${p.activities} activities, ${p.localActivities} local activities, ${p.workflowTasks} workflow tasks`,
    );
  }
  console.log(growth(runs));

  const svg = fleetSvg(runs, { target: TARGET, k, size, guardians, date: new Date().toISOString().slice(0, 10) });
  mkdirSync(path.join(ROOT, 'bench', 'out'), { recursive: true });
  writeFileSync(path.join(ROOT, 'bench', 'out', 'fleet.svg'), svg);
  const written = ['bench/out/fleet.svg'];
  if (sizesArg === DEFAULT_SIZES) {
    mkdirSync(path.join(ROOT, 'docs', 'bench'), { recursive: true });
    writeFileSync(path.join(ROOT, 'docs', 'bench', 'fleet.svg'), svg);
    written.push('docs/bench/fleet.svg');
  }
  console.log(`curve: ${written.join(' and ')}`);

  const first = runs[0]!;
  const last = runs[runs.length - 1]!;
  printVerdict({
    bench: 'fleet',
    metric: `time per VM at ${last.vms} ÷ at ${first.vms}`,
    now: last.overLimit ? Number.POSITIVE_INFINITY : last.perVm / first.perVm,
    target: TARGET,
    direction: 'atMost',
    note: `${first.perVm.toFixed(3)} s/VM at ${first.vms}, ${last.perVm.toFixed(3)} s/VM at ${last.vms}; ${k} at a time; ${formatBytes(size)} VMs; guardians ${guardians ? 'on' : 'off'}; server cache ${serverCache ?? 'cli'}`,
  });
  if (runs.some((r) => r.failed > 0 || r.overLimit)) process.exitCode = 1;
}

/** Says where the cost per VM grows from the smallest size to the largest, if it does. */
function growth(runs: FleetRun[]): string {
  if (runs.length < 2) return 'one size only: no growth to report';
  const a = runs[0]!;
  const b = runs[runs.length - 1]!;
  const ratio = (x: number, y: number) => (y > 0 ? x / y : 0);
  const parts = [
    `time/VM ×${ratio(b.perVm, a.perVm).toFixed(2)}`,
    `worker CPU/VM ×${ratio(b.workerCpu / b.vms, a.workerCpu / a.vms).toFixed(2)}`,
    `server CPU/VM ×${ratio(b.serverCpu / b.vms, a.serverCpu / a.vms).toFixed(2)}`,
    `database/VM ×${ratio(b.dbBytes / b.vms, a.dbBytes / a.vms).toFixed(2)}`,
    `worker RSS ×${ratio(b.workerPeakRss, a.workerPeakRss).toFixed(2)}`,
    `server RSS ×${ratio(b.serverPeakRss, a.serverPeakRss).toFixed(2)}`,
  ];
  return `from ${a.vms} to ${b.vms} VMs: ${parts.join(', ')}`;
}

function formatDurationMs(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${(ms / 1000).toFixed(0)} s`;
}

const quiet = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (m: string) => console.error(m),
};

runBench(main);
