/**
 * Chaos: the remote site's worker — the applier of a remote-copy group — is killed (SIGKILL) in the
 * middle of a batch, while the main site keeps writing the seed's deposits and withdrawals. The
 * batch it left half-written is finished by the next applier (its intent was recorded), nothing is
 * applied twice or out of order, the remote copy is a prefix of the writes at every point, and
 * once the worker is back it ends byte-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connectKura, eventually, makeLab, startWorkerProcess, startWorkers, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { KuraRemote } from '../../src/api/remote';
import type { Volume } from '../../src/datapath/volume';
import { remoteCopyHooks, type RemoteCopyHooks } from '../../src/datapath/remote-hooks';
import { resolveRemoteGroup, type ResolvedRemoteGroup } from '../../src/config/remote';
import { Replica } from '../../src/remote/replica';
import { freePort, ledgerSlot, readLedger } from './ledger';
import { DATA, WAL, groupName, withRemoteSite, openGroupVolume } from './lab';

const MiB = 1024 * 1024;
const GROUP = groupName();
const SLOT = 4096;
const PAIRS = 120;

let lab: TestLab;
let workers: KuraWorkers;
let remote: KuraRemote;
let close: () => Promise<void>;
let group: ResolvedRemoteGroup;
let hooks: RemoteCopyHooks;
const procs: ChildProcess[] = [];
const volumes: Volume[] = [];

/** The remote site's own worker, in a process of its own: only that site's queue (KURA_SITES). */
function startRemoteSiteWorker(): Promise<ChildProcess> {
  return startWorkerProcess(lab, procs, { KURA_SITES: `${lab.site}-dr` });
}

beforeAll(async () => {
  lab = await makeLab({ vms: 2, dataVolumeSize: 1 * MiB, edit: withRemoteSite(await freePort(), GROUP) });
  group = resolveRemoteGroup(lab.loaded, lab.paths, GROUP);
  hooks = remoteCopyHooks(lab.loaded, lab.paths, lab.site);
  // The control worker and the main site's queue here; the remote site's in a child process.
  workers = await startWorkers(lab, lab.loaded, { sites: [lab.site] });
  const conn = await connectKura(lab);
  close = conn.close;
  remote = new KuraRemote(conn.client, lab.loaded, lab.taskQueue);
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await workers?.client.workflow
    .getHandle(remote.workflowId(GROUP))
    .terminate('test over')
    .catch(() => undefined);
  for (const v of volumes) await v.close();
  hooks?.close();
  await workers?.shutdown();
  await close?.();
  lab?.cleanup();
});

describe('the remote applier killed mid-batch', () => {
  it('applies nothing twice or out of order, and the remote ends identical', async () => {
    const open = (name: string) => openGroupVolume(lab, group, hooks, name, volumes);
    const data = await open(DATA);
    const wal = await open(WAL);
    const first = await startRemoteSiteWorker();
    // A pause between the writes of a batch: a kill lands inside one.
    await remote.start(GROUP, { roundMs: 1000, heartbeatTimeoutMs: 2000, applyPauseMs: 15 });
    // The set-up copies the volumes whole; the writes of the test come after it.
    await eventually(async () => (await remote.status(GROUP)).step === 'shipping', 30_000);

    const writer = (async () => {
      for (let n = 1; n <= PAIRS; n++) {
        await data.write((n - 1) * SLOT, ledgerSlot(n, 'deposit', SLOT), false);
        await wal.write((n - 1) * SLOT, ledgerSlot(n, 'withdrawal', SLOT), false);
        if (n % 8 === 0) await new Promise((r) => setTimeout(r, 20));
      }
    })();

    // Killed while a batch is begun and not committed, once some are done.
    const replica = new Replica(GROUP, group.replicaFile, {});
    try {
      await eventually(async () => {
        const st = replica.state();
        return st.applied >= 16 && st.intent !== null;
      }, 60_000);
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const atKill = replica.state();
      expect(atKill.intent, 'the kill landed inside a batch').not.toBeNull();
      // What the killed applier left on the volumes is still a prefix of the writes.
      const withdrawals = readLedger(readFileSync(group.volumes[1]!.remoteFile), 'withdrawal', SLOT);
      const deposits = readLedger(readFileSync(group.volumes[0]!.remoteFile), 'deposit', SLOT);
      expect(deposits.contiguous && withdrawals.contiguous).toBe(true);
      expect(withdrawals.count).toBeLessThanOrEqual(deposits.count);

      await writer;
      await startRemoteSiteWorker();
      await eventually(async () => {
        const st = await remote.status(GROUP);
        return st.lag !== null && st.lag.mainSeq === 2 * PAIRS && st.lag.writes === 0;
      }, 60_000);

      const log = replica.appliedLog();
      expect(log).toEqual(Array.from({ length: 2 * PAIRS }, (_, i) => i + 1));
      expect(replica.state()).toMatchObject({ applied: 2 * PAIRS, intent: null, inbox: 0 });
      for (const v of group.volumes) expect(readFileSync(v.remoteFile).equals(readFileSync(v.mainFile))).toBe(true);
    } finally {
      await writer.catch(() => undefined);
      replica.close();
    }
  });
});
