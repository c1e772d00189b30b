/**
 * Kura as a Nexus service, end to end: the EHR team's upgrade workflow (examples/ehr-upgrade) runs in
 * a namespace of its own and reaches Kura only through a Nexus endpoint. It backs a VM up, breaks it
 * with an upgrade and gets the ladder's outcome back; cancelling it cancels the backup it waits for;
 * a wrong input comes back as a typed failure and starts nothing.
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure, NexusOperationFailure } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as nexus from 'nexus-rpc';
import { Catalog } from '../../src/catalog/store';
import { LabState } from '../../src/lab/state';
import { ensureNexusEndpoint } from '../../src/stack/nexus-endpoint';
import { backupWorkflowId, planQuery, type Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import { createUpgradeActivities } from '../../examples/ehr-upgrade/activities';
import type { ehrUpgrade } from '../../examples/ehr-upgrade/workflows';
import type { callKura } from '../fixtures/nexus-callers';
import type { KuraNexusService } from '../../src/api/nexus-service';
import type { BackupReport, RestoreReport } from '../../src/domain/jobs';
import type { ImageRecord, LadderResult } from '../../src/domain/ladder';
import type { PoolTables } from '../../src/domain/pool';
import { connectKura, eventually, sha256, startWorkers, uniqueId, type TestLab } from '../support/harness';
import { actionsOf, makeVmLab } from '../support/vm-lab';
import { kuraDataConverter } from '../../src/codec/data-converter';

const ROOT = path.resolve(__dirname, '..', '..');
/** The version whose installation leaves a fault that only a middleware restart cures. */
const BREAKING = '2.0-mw';

let lab: TestLab & { vms: string[] };
let workers: KuraWorkers;
let kura: Kura;
let closeKura: () => Promise<void>;
let endpoint: string;
let callerConnection: Connection;
let caller: Client;
let callerNative: NativeConnection;
let callerWorker: Worker;
let callerRun: Promise<void>;
let callerQueue: string;

beforeAll(async () => {
  lab = await makeVmLab({ vms: 3 });
  workers = await startWorkers(lab);
  const connected = await connectKura(lab);
  closeKura = connected.close;
  kura = connected.kura;
  // An endpoint of the test's own, routed to this lab's control queue, as `kura start` routes `kura`.
  endpoint = `kura-${uniqueId()}`;
  expect(
    await ensureNexusEndpoint(connected.client.connection, {
      name: endpoint,
      namespace: inject('temporalNamespace'),
      taskQueue: lab.taskQueue,
    }),
  ).toBe('created');

  const address = inject('temporalAddress');
  callerConnection = await Connection.connect({ address });
  // The callers hold Kura's key file: Nexus inputs and outputs cross namespaces encrypted.
  const dataConverter = kuraDataConverter(lab.loaded);
  caller = new Client({ connection: callerConnection, namespace: inject('callerNamespace'), dataConverter });
  callerNative = await NativeConnection.connect({ address });
  callerQueue = `t-${uniqueId()}-ehr`;
  callerWorker = await Worker.create({
    connection: callerNative,
    dataConverter,
    namespace: inject('callerNamespace'),
    taskQueue: callerQueue,
    workflowsPath: path.join(ROOT, 'test', 'fixtures', 'nexus-callers.ts'),
    activities: createUpgradeActivities({ loaded: lab.loaded, breaks: { [BREAKING]: 'mw' } }),
  });
  callerRun = callerWorker.run();
});

afterAll(async () => {
  if (callerWorker?.getState() === 'RUNNING') callerWorker.shutdown();
  await callerRun?.catch(() => undefined);
  await callerNative?.close();
  await callerConnection?.close();
  await workers?.shutdown();
  await closeKura?.();
  lab?.cleanup();
});

function upgrade(vm: string, version: string) {
  return caller.workflow.start<typeof ehrUpgrade>('ehrUpgrade', {
    taskQueue: callerQueue,
    workflowId: `ehr-upgrade/${vm}/${uniqueId()}`,
    args: [{ vm, version, endpoint }],
  });
}

/** Calls one operation of Kura's service from the callers' namespace; resolves with its output. */
async function call<T>(operation: keyof KuraNexusService['operations'], input: unknown): Promise<T> {
  return (await caller.workflow.execute<typeof callKura>('callKura', {
    taskQueue: callerQueue,
    workflowId: `call-kura/${operation}/${uniqueId()}`,
    args: [{ endpoint, operation, input }],
  })) as T;
}

/** The errors down a failure's cause chain, outermost first. */
function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let cur = err; cur && out.length < 10; cur = (cur as { cause?: unknown }).cause) out.push(cur);
  return out;
}

/**
 * The deepest ApplicationFailure of a failure's cause chain: Kura's own typed error (a failed
 * operation wraps it in one of type `OperationError`).
 */
function rootApplicationFailure(err: unknown): ApplicationFailure | undefined {
  return causes(err)
    .filter((c): c is ApplicationFailure => c instanceof ApplicationFailure)
    .at(-1);
}

describe('Kura through its Nexus service', () => {
  it("backs a VM up from another namespace, and a broken upgrade gets the ladder's outcome back", async () => {
    const vm = lab.vms[0]!;
    const before = await sha256(lab.dataVolume(vm));
    const result = await (await upgrade(vm, BREAKING)).result();

    // The backup is the VM's data volume, byte for byte, and the catalog holds it as complete.
    expect(result.sha256).toBe(before);
    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.backup(result.backupId)).toMatchObject({ target: vm, status: 'complete', sha256: before });
    } finally {
      catalog.close();
    }
    // The upgrade broke the VM; the ladder climbed to the middleware restart, which cured it.
    expect(result.healthyAfterUpgrade).toBe(false);
    expect(result.recovery).toMatchObject({ outcome: 'recovered', rung: 'mw-restart' });
    expect(result.recovery?.ladder).toMatch(new RegExp(`^ladder/${vm}/`));
    expect(actionsOf(lab, vm).map(([event]) => event)).toEqual(['apl-restart', 'mw-restart']);
  });

  it('cancels the backup when the caller is cancelled, releasing every device it held', async () => {
    const vm = lab.vms[1]!;
    const state = new LabState(lab.paths.labState);
    try {
      // Slow copies keep the backup running while the caller is cancelled.
      for (const server of lab.loaded.config.sites[0]!.servers)
        state.addFault({ device: server.name, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 64 * 1024 });
      const handle = await upgrade(vm, '2.0');
      let backupId = '';
      await eventually(async () => {
        for await (const wf of kura.client.workflow.list({
          query: `KuraKind = 'backup' AND KuraTarget = '${vm}' AND ExecutionStatus = 'Running'`,
        }))
          backupId = wf.workflowId;
        return backupId !== '';
      }, 20_000);
      // The backup the caller waits for is the facade's job, under the facade's id.
      expect(backupId.startsWith(backupWorkflowId(vm, new Date().toISOString()).replace(/[^/]+$/, ''))).toBe(true);
      const backup = kura.client.workflow.getHandle(backupId);
      // Cancelled while it copies, as the backup's own cancellation test does.
      await eventually(async () => {
        const plan = await backup.query(planQuery).catch(() => undefined);
        return plan?.steps.some((st) => st.id.startsWith('copy:') && st.status === 'running') === true;
      }, 20_000);

      await handle.cancel();
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(causes(err).some((c) => c instanceof CancelledFailure)).toBe(true);
      expect((await handle.describe()).status.name).toBe('CANCELLED');
      // The backup undoes what it did (cartridges cut back and unloaded, zones removed) before it ends.
      await eventually(async () => (await backup.describe()).status.name !== 'RUNNING', 30_000);
      expect((await backup.describe()).status.name).toBe('CANCELLED');
      const inUse = async () => {
        const t = await kura.pool.tables(lab.site);
        return [...t.drives, ...t.tapes, ...t.servers].filter((d) => d.state === 'in-use').map((d) => d.name);
      };
      await eventually(async () => (await inUse()).length === 0).catch(async () =>
        expect(await inUse(), 'devices still held after the cancelled backup ended').toEqual([]),
      );
    } finally {
      state.clearFaults();
      state.close();
    }
  });

  it('answers an invalid input with a BAD_REQUEST carrying InvalidInput, and an unknown VM with NotFound', async () => {
    const invalid = await (await upgrade('', '2.0')).result().catch((e: unknown) => e);
    const chain = causes(invalid);
    expect(chain[0]).toBeInstanceOf(WorkflowFailedError);
    expect(chain[1]).toBeInstanceOf(NexusOperationFailure);
    expect(chain[1]).toMatchObject({ service: 'kura', operation: 'backup', endpoint });
    // The server wraps the handler's error in one of its own; both say BAD_REQUEST.
    const handlerErrors = chain.filter((c): c is nexus.HandlerError => c instanceof nexus.HandlerError);
    expect(handlerErrors.length).toBeGreaterThan(0);
    expect(handlerErrors.map((h) => h.type)).toEqual(handlerErrors.map(() => 'BAD_REQUEST'));
    expect(rootApplicationFailure(invalid)).toMatchObject({
      type: 'InvalidInput',
      message: expect.stringMatching(/^invalid backup request: target: /),
    });

    const unknown = await (await upgrade(`${lab.site}-vm-999`, '2.0')).result().catch((e: unknown) => e);
    expect(causes(unknown)[1]).toBeInstanceOf(NexusOperationFailure);
    expect(causes(unknown).some((c) => c instanceof nexus.HandlerError)).toBe(false);
    const app = rootApplicationFailure(unknown);
    expect(app?.type).toBe('NotFound');
    expect(app?.message).toContain(`"${lab.site}-vm-999"`);
    // Neither request started a backup.
    const started: string[] = [];
    for await (const wf of kura.client.workflow.list({ query: `KuraKind = 'backup' AND KuraSite = '${lab.site}'` }))
      started.push(wf.workflowId);
    expect(started.filter((id) => id.includes('vm-999') || id.startsWith('op/backup//'))).toEqual([]);
  });

  it("answers poolTables synchronously, and requestDataBackup and restore with their jobs' results", async () => {
    const tables = await call<PoolTables>('poolTables', { site: lab.site });
    expect(tables.site).toBe(lab.site);
    expect(tables.drives.map((d) => d.name)).toEqual((await kura.pool.tables(lab.site)).drives.map((d) => d.name));

    const vm = lab.vms[2]!;
    const volume = await sha256(lab.dataVolume(vm));
    const requestedBy = 'test:nexus';
    const image = await call<ImageRecord>('requestDataBackup', {
      vm,
      requestedBy,
      requestedAt: new Date().toISOString(),
    });
    expect(image).toMatchObject({ vm, site: lab.site, kind: 'data', sha256: volume });
    expect(await sha256(image.file)).toBe(volume);

    const backup = await call<BackupReport>('backup', {
      target: vm,
      requestedBy,
      requestedAt: new Date().toISOString(),
    });
    expect(backup.sha256).toBe(volume);
    const destination = path.join(lab.paths.restoreRoots[0]!, `${vm}-${uniqueId()}.img`);
    const restored = await call<RestoreReport>('restore', {
      backupId: backup.backupId,
      destination,
      requestedBy,
      requestedAt: new Date().toISOString(),
    });
    expect(restored).toMatchObject({ backupId: backup.backupId, destination, sha256: volume });
    expect(await sha256(destination)).toBe(volume);
  });

  it('answers two reports of one failure with the outcome of the one ladder that cured it', async () => {
    const vm = lab.vms[2]!;
    const state = new LabState(lab.paths.labState);
    try {
      state.setVmFault(lab.site, vm, 'os');
    } finally {
      state.close();
    }
    // Two monitors, a millisecond apart: the instant names the report, and one instant is one report.
    const at = Date.now();
    const report = (by: string, ms: number) =>
      call<LadderResult>('reportVmFailure', {
        vm,
        reason: `${by} sees ${vm} down`,
        requestedBy: by,
        requestedAt: new Date(at + ms).toISOString(),
      });
    const [first, second] = await Promise.all([report('monitor-a', 0), report('monitor-b', 1)]);
    expect(first).toMatchObject({ outcome: 'recovered', rung: 'os-reboot' });
    expect(second.view.workflowId).toBe(first.view.workflowId);
    const ladders: string[] = [];
    for await (const wf of kura.client.workflow.list({ query: `KuraKind = 'ladder' AND KuraVm = '${vm}'` }))
      ladders.push(wf.workflowId);
    expect(ladders).toEqual([first.view.workflowId]);
  });
});
