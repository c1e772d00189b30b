/**
 * Two installations on the one dev server of the test run: two estates made by `kura lab init`, each
 * with its own id, the same site and VM names, and default settings. Backups run in both at once and
 * each job completes in its own installation; work sent to the other's workers is refused with
 * `WrongInstallation` before it touches a device.
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { loadConfig, type LoadedConfig } from '../../src/config/load';
import { kuraPaths, type KuraPaths } from '../../src/config/paths';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { startKuraWorkers, type KuraWorkers } from '../../src/worker';
import { INSTALLATION_HEADER, installationOfHeaders } from '../../src/api/installation-header';
import { Kura, installationClientInterceptors } from '../../src/client';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { keyFileOf } from '../../src/codec/keys';
import { ErrorType } from '../../src/domain/errors';
import { failureOf, treeFingerprint, uniqueId } from '../support/harness';

const ROOT = path.resolve(__dirname, '..', '..');

interface Estate {
  dir: string;
  loaded: LoadedConfig;
  paths: KuraPaths;
  installation: string;
  workers: KuraWorkers;
  kura: Kura;
}

/** Runs `kura lab init` in a fresh directory, as a person sets up an estate. */
function labInit(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      path.join(ROOT, 'bin', 'kura'),
      ['lab', 'init', '--vms', '4', '--volume-size', '4MiB', '--json'],
      { cwd: dir, env: { ...process.env, KURA_CONFIG: path.join(dir, 'kura.yaml') }, timeout: 120_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve()),
    );
  });
}

let connection: Connection;
const estates: Estate[] = [];

/**
 * An estate made by `kura lab init`, its workers started. `keysOf` names another estate's key file
 * to take instead of its own: installations with keys of their own cannot even read each other's
 * payloads (the worker fails to decode them, KeyUnavailable), so the installation check is seen
 * only between installations that share their keys.
 */
async function makeEstate(keysOf?: string): Promise<Estate> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-estate-'));
  await labInit(dir);
  const loaded = loadConfig(path.join(dir, 'kura.yaml'));
  const own = keyFileOf(loaded);
  if (keysOf !== undefined && own !== undefined) {
    copyFileSync(keysOf, own);
    chmodSync(own, 0o600);
  }
  const workers = await startKuraWorkers({
    loaded,
    address: inject('temporalAddress'),
    namespace: inject('temporalNamespace'),
    workflowBundle: { codePath: inject('workflowBundlePath') },
  });
  const client = new Client({
    connection,
    namespace: inject('temporalNamespace'),
    dataConverter: kuraDataConverter(loaded),
    interceptors: installationClientInterceptors(loaded.config.installation),
  });
  const estate = {
    dir,
    loaded,
    paths: kuraPaths(loaded),
    installation: loaded.config.installation,
    workers,
    kura: new Kura(client, loaded),
  };
  estates.push(estate);
  return estate;
}

let a: Estate;
let b: Estate;

beforeAll(async () => {
  delete process.env.KURA_TASK_QUEUE;
  connection = await Connection.connect({ address: inject('temporalAddress') });
  a = await makeEstate();
  b = await makeEstate(keyFileOf(a.loaded));
});

afterAll(async () => {
  for (const e of estates) await e.workers.shutdown();
  await connection?.close();
  for (const e of estates) rmSync(e.dir, { recursive: true, force: true });
});

/** What a lab holds that a job could change: its files, and its event log. */
function labSnapshot(e: Estate): { files: string; events: number } {
  const state = new LabState(e.paths.labState);
  try {
    return { files: treeFingerprint(e.paths.lab), events: state.events().length };
  } finally {
    state.close();
  }
}

describe('two estates made by kura lab init', () => {
  it('each have an installation of their own, in the name of the queue their workers poll', () => {
    expect(a.installation).toMatch(/^[0-9a-f]{8}$/);
    expect(b.installation).toMatch(/^[0-9a-f]{8}$/);
    expect(a.installation).not.toBe(b.installation);
    expect(a.loaded.config.sites.map((s) => s.name)).toEqual(b.loaded.config.sites.map((s) => s.name));
    expect(a.workers.taskQueue).toBe(`kura-control@${a.installation}`);
    expect(b.workers.taskQueue).toBe(`kura-control@${b.installation}`);
  });

  it('refuse a workflow of the other installation sent to their queue, before it touches the lab', async () => {
    const before = labSnapshot(b);
    const vm = a.loaded.config.sites[0]!.vms[0]!.name;
    const job = a.kura.backupJob(vm, { requestedBy: 'test' });
    // A's own client, pointed at B's queue: the header still says A.
    const handle = await a.kura.client.workflow.start(job.workflowType, {
      ...job.options,
      taskQueue: b.workers.taskQueue,
    } as typeof job.options);
    const err = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const f = failureOf(err);
    expect(f.type).toBe(ErrorType.WrongInstallation);
    expect(f.message).toBe(
      `workflow ${handle.workflowId} (sanOperation) belongs to installation ${a.installation}, but this worker serves installation ${b.installation}; ` +
        `nothing was done. Start the work with the client of installation ${a.installation} (its kura.yaml), on its own task queue, ` +
        `or run a worker of installation ${a.installation}`,
    );
    expect(labSnapshot(b)).toEqual(before);
    const catalog = new Catalog(b.paths.catalog);
    try {
      expect(catalog.listBackups()).toEqual([]);
    } finally {
      catalog.close();
    }
  });

  it('refuse an activity of the other installation sent to their queue, before it touches a device', async () => {
    const before = labSnapshot(b);
    const native = await NativeConnection.connect({ address: inject('temporalAddress') });
    // A workflow of installation A (its queue says so) that sends a VM restart to B's control queue.
    const queue = `t-${uniqueId()}-foreign@${a.installation}`;
    const worker = await Worker.create({
      connection: native,
      namespace: inject('temporalNamespace'),
      taskQueue: queue,
      dataConverter: kuraDataConverter(a.loaded),
      workflowsPath: path.join(ROOT, 'test', 'fixtures', 'foreign-activity.ts'),
      interceptors: { workflowModules: [path.join(ROOT, 'src', 'workflows', 'installation.ts')] },
    });
    const site = b.loaded.config.sites[0]!.name;
    const vm = b.loaded.config.sites[0]!.vms[0]!.name;
    try {
      const err = await worker.runUntil(
        a.kura.client.workflow
          .execute('callActivityOn', {
            taskQueue: queue,
            workflowId: `t-${uniqueId()}-foreign-activity`,
            args: [
              {
                taskQueue: b.workers.taskQueue,
                activity: 'restartVm',
                input: { site, vm, scope: 'os', request: `r-${uniqueId()}`, rung: 'os', incident: 'i-1' },
              },
            ],
          })
          .then(
            () => undefined,
            (e: unknown) => e,
          ),
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const f = failureOf(err);
      expect(f.type).toBe(ErrorType.WrongInstallation);
      expect(f.message).toMatch(
        new RegExp(
          `^activity restartVm of workflow t-[0-9a-f]+-foreign-activity belongs to installation ${a.installation}, ` +
            `but this worker serves installation ${b.installation}; nothing was done\\.`,
        ),
      );
    } finally {
      await native.close();
    }
    expect(labSnapshot(b)).toEqual(before);
  });

  it('back up in both at once: every job completes in its own installation, on its own workers', async () => {
    // The same instant in both: without the installation in the ids, the two fleet runs and their
    // backups would be one workflow id each.
    const requestedAt = new Date().toISOString();
    const [ha, hb] = await Promise.all(
      [a, b].map((e) => e.kura.startFleet('all', { requestedAt, requestedBy: 'test', concurrency: 4 })),
    );
    expect(ha!.workflowId).toBe(`${a.installation}/fleet/all/${ha!.workflowId.split('/').at(-1)}`);
    expect(hb!.workflowId).toBe(`${b.installation}/fleet/all/${hb!.workflowId.split('/').at(-1)}`);
    const [ra, rb] = await Promise.all([ha!.result(), hb!.result()]);

    for (const [e, report] of [
      [a, ra!],
      [b, rb!],
    ] as const) {
      expect(report.failed).toBe(0);
      expect(report.succeeded).toBe(4);
      expect(report.targets.map((t) => t.state)).toEqual(['done', 'done', 'done', 'done']);
      const jobs = report.targets.map((t) => t.workflowId ?? '');
      for (const job of jobs) expect(job.startsWith(`${e.installation}/op/backup/`)).toBe(true);

      // Its catalog (written by its control worker) holds exactly its own jobs, complete.
      const catalog = new Catalog(e.paths.catalog);
      const state = new LabState(e.paths.labState);
      try {
        const backups = catalog.listBackups();
        expect(backups.map((r) => r.job).sort()).toEqual([...jobs].sort());
        expect(backups.every((r) => r.status === 'complete')).toBe(true);
        // Its cartridges hold exactly the pieces its catalog records: no copy of the other's ran here,
        // and none of its own ran elsewhere.
        const recorded = backups.flatMap((r) => catalog.piecesOf(r.backupId)).map((p) => `${p.tape}@${p.position}`);
        const copied = state
          .events({ event: 'copy-done' })
          .map((ev) => `${String(ev.detail.tape)}@${String(ev.detail.position)}`);
        expect(new Set(copied)).toEqual(new Set(recorded));
      } finally {
        catalog.close();
        state.close();
      }

      // Nothing of the installation failed, and its children and activities carried its id.
      const failed = await e.kura.client.workflow.count(
        `TaskQueue = "${e.workers.taskQueue}" AND ExecutionStatus = "Failed" AND StartTime >= "${requestedAt}"`,
      );
      expect(failed.count).toBe(0);
      const history = await e.kura.client.workflow.getHandle(jobs[0]!).fetchHistory();
      const events = history.events ?? [];
      const started = events[0]?.workflowExecutionStartedEventAttributes;
      expect(installationOfHeaders(started?.header?.fields ?? undefined)).toBe(e.installation);
      const scheduled = events.filter((ev) => ev.activityTaskScheduledEventAttributes);
      expect(scheduled.length).toBeGreaterThan(0);
      for (const ev of scheduled) {
        const attrs = ev.activityTaskScheduledEventAttributes!;
        expect(attrs.header?.fields?.[INSTALLATION_HEADER]).toBeDefined();
        expect(installationOfHeaders(attrs.header?.fields ?? undefined)).toBe(e.installation);
        expect(attrs.taskQueue?.name?.endsWith(`@${e.installation}`)).toBe(true);
      }
    }
  });
});
