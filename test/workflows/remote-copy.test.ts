/**
 * The remoteCopy workflow on the real dev server, with the main site's shipper and the remote
 * site's applier on their sites' queues and the hosts writing through the datapath: a 10 s
 * partition of the lab WAN makes the backlog grow, then it drains and the remote ends identical;
 * a failover reports as lost exactly what had not been shipped, and the failback resynchronises
 * only the blocks that differ, after which both sites hold the same bytes and shipping resumes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { connectKura, eventually, makeLab, startWorkers, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { KuraRemote } from '../../src/api/remote';
import type { Kura } from '../../src/client';
import { Volume } from '../../src/datapath/volume';
import { remoteCopyHooks, type RemoteCopyHooks } from '../../src/datapath/remote-hooks';
import { resolveRemoteGroup, type ResolvedRemoteGroup } from '../../src/config/remote';
import { wanFaultsFile, writeWanFaults } from '../../src/lab/wan';
import { KuraLagBytes } from '../../src/search-attributes';
import { RESYNC_BLOCK_BYTES } from '../../src/remote/replica';
import { DatapathConfigSchema } from '../../src/domain/inventory';
import { ErrorType } from '../../src/domain/errors';
import type { RemoteStatus } from '../../src/domain/remote';
import { freePort } from '../remote/ledger';
import { DATA, WAL, groupName, withRemoteSite } from '../remote/lab';

const KiB = 1024;
const MiB = 1024 * KiB;
const GROUP = groupName();

let lab: TestLab;
let workers: KuraWorkers;
let remote: KuraRemote;
let kura: Kura;
let close: () => Promise<void>;
let group: ResolvedRemoteGroup;
let mainHooks: RemoteCopyHooks;
let firstRunId: string;
const volumes = new Map<string, Volume>();

/** The datapath's volume of `name` at the main site, journaling into the group. */
async function mainVolume(name: string): Promise<Volume> {
  let v = volumes.get(name);
  if (!v) {
    const file = group.volumes.find((x) => x.name === name)!.mainFile;
    v = await Volume.open({
      name,
      mainFile: file,
      stateDir: path.join(lab.dir, 'dp-state', name.replace('/', '-')),
      settings: DatapathConfigSchema.parse({}),
      onWrite: mainHooks.hookFor(name)!,
    });
    volumes.set(name, v);
  }
  return v;
}

function filesEqual(): boolean {
  return group.volumes.every((v) => readFileSync(v.mainFile).equals(readFileSync(v.remoteFile)));
}

async function drained(): Promise<RemoteStatus> {
  let st: RemoteStatus | undefined;
  await eventually(async () => {
    st = await remote.status(GROUP);
    return st.lag !== null && st.lag.writes === 0 && st.lag.appliedSeq === st.lag.mainSeq && filesEqual();
  }, 40_000);
  return st!;
}

beforeAll(async () => {
  const port = await freePort();
  lab = await makeLab({ vms: 2, dataVolumeSize: 2 * MiB, edit: withRemoteSite(port, GROUP) });
  group = resolveRemoteGroup(lab.loaded, lab.paths, GROUP);
  mainHooks = remoteCopyHooks(lab.loaded, lab.paths, lab.site);
  workers = await startWorkers(lab);
  const conn = await connectKura(lab);
  close = conn.close;
  remote = new KuraRemote(conn.client, lab.loaded, lab.taskQueue);
  kura = conn.kura;
  // Few rounds per run: the tests go through several continue-as-new, failover and failback included.
  firstRunId = (await remote.start(GROUP, { roundMs: 1000, heartbeatTimeoutMs: 2000, roundsPerRun: 4 }))
    .firstExecutionRunId;
});

afterAll(async () => {
  await workers?.client.workflow
    .getHandle(remote.workflowId(GROUP))
    .terminate('test over')
    .catch(() => undefined);
  for (const v of volumes.values()) await v.close();
  mainHooks?.close();
  await workers?.shutdown();
  await close?.();
  lab?.cleanup();
});

describe('async remote copy', () => {
  it('grows a backlog during a 10 s partition, then drains it and ends identical', async () => {
    const data = await mainVolume(DATA);
    const wal = await mainVolume(WAL);
    for (let i = 0; i < 8; i++) {
      await data.write(i * 64 * KiB, randomBytes(64 * KiB), false);
      await wal.write(i * 64 * KiB, randomBytes(64 * KiB), false);
    }
    await drained();

    const faults = wanFaultsFile(lab.paths.lab);
    const partitionEnds = Date.now() + 10_000;
    writeWanFaults(faults, { partitionUntil: partitionEnds });
    const backlog = 6 * 2 * 64 * KiB;
    for (let i = 0; i < 6; i++) {
      await data.write((16 + i) * 64 * KiB, randomBytes(64 * KiB), false);
      await wal.write((16 + i) * 64 * KiB, randomBytes(64 * KiB), false);
      await new Promise((r) => setTimeout(r, 300));
    }
    // The backlog grows to everything written since the partition began, and the query and the
    // search attribute both show it, while the partition holds.
    const lags: number[] = [];
    await eventually(async () => {
      lags.push((await remote.status(GROUP)).lag?.bytes ?? 0);
      return lags[lags.length - 1]! >= backlog;
    }, partitionEnds - Date.now());
    await eventually(async () => {
      const attrs = (await workers.client.workflow.getHandle(remote.workflowId(GROUP)).describe())
        .typedSearchAttributes;
      return (attrs.get(KuraLagBytes) ?? 0) >= backlog;
    }, partitionEnds - Date.now());
    expect(Date.now()).toBeLessThan(partitionEnds);
    expect(lags[lags.length - 1]).toBe(backlog);
    expect(filesEqual()).toBe(false);

    const st = await drained();
    expect(st.lag!.bytes).toBe(0);
    expect(filesEqual()).toBe(true);
    writeWanFaults(faults, {});
  });

  it('fails over losing exactly the unshipped writes, and fails back resyncing only what differs', async () => {
    const data = await mainVolume(DATA);
    const wal = await mainVolume(WAL);
    await drained();
    const shipped = group.volumes.map((v) => readFileSync(v.mainFile));

    // Nothing gets through: these writes are acknowledged at the main site and never shipped.
    const faults = wanFaultsFile(lab.paths.lab);
    writeWanFaults(faults, { partitionUntil: Date.now() + 600_000 });
    const unshipped = [
      { v: data, at: 0 * 64 * KiB, n: 64 * KiB },
      { v: wal, at: 3 * 64 * KiB, n: 64 * KiB },
      { v: data, at: 5 * 64 * KiB + 100, n: 1000 },
    ];
    for (const w of unshipped) await w.v.write(w.at, randomBytes(w.n), false);

    const report = await remote.failover(GROUP, 'main site lost');
    expect(report.lossFrom).toBe('journal');
    expect(report.lostWrites).toBe(unshipped.length);
    expect(report.lostBytes).toBe(unshipped.reduce((s, w) => s + w.n, 0));
    expect(report.mainSeq! - report.appliedSeq).toBe(unshipped.length);
    // The remote copy holds what was shipped, nothing of what was not.
    group.volumes.forEach((v, i) => expect(readFileSync(v.remoteFile).equals(shipped[i]!)).toBe(true));
    // The main site is fenced: its hosts can no longer write the group.
    await expect(data.write(0, Buffer.alloc(512, 1), false)).rejects.toMatchObject({ type: ErrorType.AccessDenied });
    await expect(remote.failover(GROUP)).rejects.toMatchObject({ type: ErrorType.NotWaiting });
    const failedOver = await remote.status(GROUP);
    expect(failedOver.role).toBe('failed-over');
    // The failover ran as a SAN operation of the engine: its plan, each step done in order.
    const plan = await kura.plan(failedOver.lastOperation!);
    expect(plan).toMatchObject({ kind: 'remote-failover', target: GROUP, phase: 'done' });
    expect(plan.steps.map((s) => [s.id, s.status])).toEqual([
      ['fence', 'done'],
      ['promote', 'done'],
      ['measure-loss', 'done'],
    ]);
    writeWanFaults(faults, {});

    // Hosts at the remote site write the promoted copy through its datapath.
    const drHooks = remoteCopyHooks(lab.loaded, lab.paths, `${lab.site}-dr`);
    const drData = await Volume.open({
      name: DATA,
      mainFile: group.volumes[0]!.remoteFile,
      stateDir: path.join(lab.dir, 'dp-state-dr'),
      settings: DatapathConfigSchema.parse({}),
      onWrite: drHooks.hookFor(DATA)!,
    });
    await drData.write(10 * 64 * KiB, randomBytes(2 * 64 * KiB), false);
    await drData.write(0, randomBytes(4 * KiB), false);

    const back = await remote.failback(GROUP, 'main site repaired');
    // Blocks 0, 5, 10, 11 of the data volume and block 3 of the WAL volume: five, not the whole volumes.
    expect(back.blocks).toBe(5);
    expect(back.bytes).toBe(5 * RESYNC_BLOCK_BYTES);
    expect(back.totalBytes).toBe(4 * MiB);
    expect(filesEqual()).toBe(true);
    // The remote copy is the secondary again: its hosts may not write it.
    await expect(drData.write(0, Buffer.alloc(512, 2), false)).rejects.toMatchObject({ type: ErrorType.AccessDenied });
    await drData.close();
    drHooks.close();

    // The main site writes again, and shipping carries on from the agreed seq.
    await data.write(7 * 64 * KiB, randomBytes(64 * KiB), false);
    await wal.write(7 * 64 * KiB, randomBytes(64 * KiB), false);
    const st = await drained();
    expect(st.role).toBe('shipping');
    expect(st.lag!.appliedSeq).toBe(back.baseSeq + 2);
    // The copy went on across runs, its rounds carried over.
    const run = await workers.client.workflow.getHandle(remote.workflowId(GROUP)).describe();
    expect(run.runId).not.toBe(firstRunId);
    expect(st.rounds).toBeGreaterThan(4);
  });
});
