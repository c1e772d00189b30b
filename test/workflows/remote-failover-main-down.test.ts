/**
 * A failover with the main site down, as disasters go: its worker is gone, so the fence does not
 * answer. Step 5 re-plans — the measure of the loss is skipped, with the reason — and the loss
 * reported is the last lag measured: the writes acknowledged at the main site that the remote
 * copy does not hold. The remote copy is the primary and holds exactly what was shipped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { inject } from 'vitest';
import { connectKura, eventually, makeLab, type TestLab } from '../support/harness';
import { startKuraWorkers, type KuraWorkers } from '../../src/worker';
import { KuraRemote } from '../../src/api/remote';
import type { Kura } from '../../src/client';
import type { Volume } from '../../src/datapath/volume';
import { remoteCopyHooks, type RemoteCopyHooks } from '../../src/datapath/remote-hooks';
import { resolveRemoteGroup, type ResolvedRemoteGroup } from '../../src/config/remote';
import { wanFaultsFile, writeWanFaults } from '../../src/lab/wan';
import { freePort } from '../remote/ledger';
import { DATA, WAL, groupName, withRemoteSite, openGroupVolume } from '../remote/lab';

const KiB = 1024;
const MiB = 1024 * KiB;
const GROUP = groupName();

let lab: TestLab;
let control: KuraWorkers;
let mainSite: KuraWorkers | undefined;
let remote: KuraRemote;
let kura: Kura;
let close: () => Promise<void>;
let group: ResolvedRemoteGroup;
let hooks: RemoteCopyHooks;
const volumes: Volume[] = [];

const workersOf = (sites: string[], serversOnly: boolean) =>
  startKuraWorkers({
    loaded: lab.loaded,
    address: inject('temporalAddress'),
    namespace: inject('temporalNamespace'),
    taskQueue: lab.taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
    sites,
    ...(serversOnly ? { serversOnly: true, servers: [] } : {}),
  });

beforeAll(async () => {
  lab = await makeLab({ vms: 2, dataVolumeSize: 1 * MiB, edit: withRemoteSite(await freePort(), GROUP) });
  group = resolveRemoteGroup(lab.loaded, lab.paths, GROUP);
  hooks = remoteCopyHooks(lab.loaded, lab.paths, lab.site);
  // The control worker with the remote site's queue, and the main site's queue apart, to stop it.
  control = await workersOf([`${lab.site}-dr`], false);
  mainSite = await workersOf([lab.site], true);
  const conn = await connectKura(lab);
  close = conn.close;
  kura = conn.kura;
  remote = new KuraRemote(conn.client, lab.loaded, lab.taskQueue);
});

afterAll(async () => {
  await control?.client.workflow
    .getHandle(remote.workflowId(GROUP))
    .terminate('test over')
    .catch(() => undefined);
  for (const v of volumes) await v.close();
  hooks?.close();
  await mainSite?.shutdown();
  await control?.shutdown();
  await close?.();
  lab?.cleanup();
});

describe('a failover while the main site is down', () => {
  it('reports the last lag as the loss, skipping the measure the main site cannot give', async () => {
    const open = (name: string) => openGroupVolume(lab, group, hooks, name, volumes);
    const data = await open(DATA);
    const wal = await open(WAL);
    await remote.start(GROUP, { roundMs: 500, heartbeatTimeoutMs: 2000, fenceTimeoutMs: 2000 });
    await eventually(async () => (await remote.status(GROUP)).step === 'shipping', 30_000);
    await data.write(0, randomBytes(64 * KiB), false);
    await wal.write(0, randomBytes(64 * KiB), false);
    await eventually(async () => {
      const st = await remote.status(GROUP);
      return st.lag !== null && st.lag.mainSeq === 2 && st.lag.writes === 0;
    }, 30_000);
    const shipped = group.volumes.map((v) => readFileSync(v.mainFile));

    writeWanFaults(wanFaultsFile(lab.paths.lab), { partitionUntil: Date.now() + 600_000 });
    await data.write(64 * KiB, randomBytes(64 * KiB), false);
    await wal.write(64 * KiB, randomBytes(4 * KiB), false);
    await eventually(async () => (await remote.status(GROUP)).lag?.writes === 2, 30_000);

    // The main site goes down.
    await mainSite!.shutdown();
    mainSite = undefined;
    writeWanFaults(wanFaultsFile(lab.paths.lab), {});

    const report = await remote.failover(GROUP, 'main site down');
    expect(report).toMatchObject({ lossFrom: 'last-lag', lostWrites: 2, lostBytes: 68 * KiB, mainSeq: null });
    expect(report.appliedSeq).toBe(2);
    group.volumes.forEach((v, i) => expect(readFileSync(v.remoteFile).equals(shipped[i]!)).toBe(true));

    const plan = await kura.plan((await remote.status(GROUP)).lastOperation!);
    expect(plan.steps.map((s) => [s.id, s.status])).toEqual([
      ['fence', 'failed'],
      ['promote', 'done'],
      ['measure-loss', 'skipped'],
    ]);
    expect(plan.changes).toEqual([
      expect.objectContaining({ step: 'fence', what: 'the loss is the last lag measured' }),
    ]);
    expect(plan.changes![0]!.why).toMatch(/^the main site did not answer: /);
  });
});
