/**
 * Chaos: the Temporal server is SIGKILLed at a seeded random instant while the remote site applies
 * a batch of a remote-copy group, with the main site writing the seed's deposits and withdrawals,
 * and started again on the same SQLite file. The applier's log is every seq once, in order (nothing
 * applied twice, nothing lost), no batch is left begun, the remote volumes end byte-identical, and
 * neither site's pool holds anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { eventually, makeLab, type TestLab } from '../support/harness';
import { KuraRemote } from '../../src/api/remote';
import type { Volume } from '../../src/datapath/volume';
import { remoteCopyHooks, type RemoteCopyHooks } from '../../src/datapath/remote-hooks';
import { resolveRemoteGroup, type ResolvedRemoteGroup } from '../../src/config/remote';
import { Replica } from '../../src/remote/replica';
import { freePort, ledgerSlot, readLedger } from '../remote/ledger';
import { DATA, WAL, groupName, withRemoteSite, openGroupVolume } from '../remote/lab';
import { acrossOutage, chaosSeed, startPrivateKura, type PrivateKura } from '../support/private-server';
import { heldRows } from './checks';

const MiB = 1024 * 1024;
const GROUP = groupName();
const SLOT = 4096;
const PAIRS = 120;

let lab: TestLab;
let pk: PrivateKura;
let remote: KuraRemote;
let group: ResolvedRemoteGroup;
let hooks: RemoteCopyHooks;
const volumes: Volume[] = [];

beforeAll(async () => {
  lab = await makeLab({ vms: 2, dataVolumeSize: 1 * MiB, edit: withRemoteSite(await freePort(), GROUP) });
  group = resolveRemoteGroup(lab.loaded, lab.paths, GROUP);
  hooks = remoteCopyHooks(lab.loaded, lab.paths, lab.site);
  // Both sites' workers in this process: they outlive the server's kill and meet it again.
  pk = await startPrivateKura(lab);
  remote = new KuraRemote(pk.client, lab.loaded, lab.taskQueue);
});

afterAll(async () => {
  await pk?.client.workflow
    .getHandle(remote.workflowId(GROUP))
    .terminate('test over')
    .catch(() => undefined);
  for (const v of volumes) await v.close();
  hooks?.close();
  await pk?.close();
  lab?.cleanup();
});

describe('the Temporal server killed during a remote-copy batch', () => {
  it('applies every write once and in order, leaves no batch begun, the remote ends identical, and no pool holds anything', async () => {
    const { random } = chaosSeed('remote-copy');
    const open = (name: string) => openGroupVolume(lab, group, hooks, name, volumes);
    const data = await open(DATA);
    const wal = await open(WAL);
    const started = Date.now();
    // A pause between the writes of a batch: a kill lands inside one.
    await remote.start(GROUP, { roundMs: 1000, heartbeatTimeoutMs: 2000, applyPauseMs: 15 });
    await eventually(async () => (await remote.status(GROUP)).step === 'shipping', 30_000);

    const writer = (async () => {
      for (let n = 1; n <= PAIRS; n++) {
        await data.write((n - 1) * SLOT, ledgerSlot(n, 'deposit', SLOT), false);
        await wal.write((n - 1) * SLOT, ledgerSlot(n, 'withdrawal', SLOT), false);
        if (n % 8 === 0) await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const replica = new Replica(GROUP, group.replicaFile, {});
    try {
      // The instant: inside a batch (begun, not committed), after a seeded number of applied writes.
      const after = 8 + Math.floor(random() * 120);
      await eventually(async () => {
        const st = replica.state();
        return st.applied >= after && st.intent !== null;
      }, 60_000);
      await pk.server.kill();
      const atKill = replica.state();
      console.log(
        `remote-copy: server killed after ${atKill.applied} applied writes (drawn: ${after}), intent ${atKill.intent !== null}`,
      );
      // What the applier had left on the volumes is a prefix of the writes.
      const withdrawals = readLedger(readFileSync(group.volumes[1]!.remoteFile), 'withdrawal', SLOT);
      const deposits = readLedger(readFileSync(group.volumes[0]!.remoteFile), 'deposit', SLOT);
      expect(deposits.contiguous && withdrawals.contiguous).toBe(true);
      await new Promise((r) => setTimeout(r, 1000));
      await pk.server.restart();

      await writer;
      await eventually(async () => {
        const st = await acrossOutage(() => remote.status(GROUP));
        return st.lag !== null && st.lag.mainSeq === 2 * PAIRS && st.lag.writes === 0;
      }, 90_000);

      expect(replica.appliedLog()).toEqual(Array.from({ length: 2 * PAIRS }, (_, i) => i + 1));
      expect(replica.state()).toMatchObject({ applied: 2 * PAIRS, intent: null, inbox: 0 });
      for (const v of group.volumes) expect(readFileSync(v.remoteFile).equals(readFileSync(v.mainFile))).toBe(true);
      // As after every server kill: neither site's pool holds anything for the copy.
      for (const site of [group.group.main, group.group.remote]) expect(await heldRows(pk.kura, site)).toEqual([]);
      console.log(`remote-copy: ${Date.now() - started} ms from the start to the check`);
    } finally {
      await writer.catch(() => undefined);
      replica.close();
    }
  });
});
