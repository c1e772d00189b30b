/**
 * Chaos: the datapath process is killed (SIGKILL) in the middle of an online backup, while the host
 * is writing through it, and started again. Every write the host had acknowledged must be served
 * afterwards and reach main storage; the backup must carry on to an image of the switch instant.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { DatapathClient } from '../../src/datapath/client';
import type { OnlineBackupReport } from '../../src/domain/datapath';
import type { Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import {
  connectKura,
  startWorkers,
  type TestLab,
  startDatapathProcess as startLabDatapath,
  makeDatapathLab,
  untilDefined,
} from '../support/harness';
import { PatternWriter, applyWrites, candidatesAt, nbdUrl, nbdcopy } from '../support/nbd';

const SIZE = 8 * 1024 * 1024;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let nbdPort: number;
let control: DatapathClient;
const procs: ChildProcess[] = [];

/** Starts `kura datapath` as its own process and waits for its ready line. */
async function startDatapathProcess(of: TestLab = lab): Promise<ChildProcess> {
  return startLabDatapath(of, procs);
}

beforeAll(async () => {
  // The base copy is paced at 1 MiB/s: eight seconds in which to kill the datapath mid-backup.
  ({ lab, nbdPort, control } = await makeDatapathLab(SIZE));
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await close?.();
  await workers?.shutdown();
  lab?.cleanup();
});

describe('kill -9 of the datapath during an online backup', () => {
  it('loses no acknowledged write: the journal is replayed and the backup completes', async () => {
    const name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
    const volumeFile = lab.dataVolume('vm-001');
    const initial = readFileSync(volumeFile);
    let child = await startDatapathProcess();
    const writer = new PatternWriter(nbdUrl(nbdPort, name), SIZE, true);
    writer.start();
    await untilDefined(async () => (writer.acked().length >= 2 ? true : undefined));

    const handle = await kura.startOnlineBackup('vm-001', {
      settings: { ioTimeoutMs: 30_000, safetyFactor: 0.5, pollMs: 50, roundPauseMs: 50 },
      deviceAttempts: 10,
    });
    const switchedAt = await untilDefined(async () => (await control.status(name)).switchedAt ?? undefined);
    const atSwitch = readFileSync(volumeFile);
    const switchMs = Date.parse(switchedAt);
    await untilDefined(async () =>
      writer.acked().filter((w) => w.startedAt > switchMs).length >= 8 ? true : undefined,
    );
    const before = await control.status(name);
    expect(before).toMatchObject({ mode: 'backup', phase: 'base-copy' });
    expect(before.baseCopiedBytes).toBeLessThan(SIZE);

    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The host's next write fails (the device is gone); the writer stops there, so at most one write
    // is in doubt. None is when the write in flight had its reply on the wire before the kill and
    // the writer was told to stop before it began another.
    await writer.stop();
    const acked = writer.acked();
    const inDoubt = writer.failed();
    expect(inDoubt.length).toBeLessThanOrEqual(1);
    // Main storage stayed frozen: nothing written in backup mode reached it.
    expect(readFileSync(volumeFile).equals(atSwitch)).toBe(true);

    child = await startDatapathProcess();
    const after = await control.status(name);
    expect(after).toMatchObject({ mode: 'backup', phase: 'base-copy', backupId: before.backupId, switchedAt });
    const journaledAcked = acked.filter((w) => w.startedAt > switchMs).length;
    expect(after.replayedEntries).toBeGreaterThanOrEqual(journaledAcked);
    expect(after.replayedEntries).toBeLessThanOrEqual(journaledAcked + 2);

    // Every acknowledged write is served after the restart (the one in doubt may or may not be).
    const served = path.join(lab.dir, 'after-restart.img');
    await nbdcopy(nbdUrl(nbdPort, name), served);
    const withAcked = applyWrites(initial, acked);
    const withDoubt = applyWrites(initial, [...acked, ...inDoubt]);
    const got = readFileSync(served);
    expect(got.equals(withAcked) || got.equals(withDoubt)).toBe(true);

    // The host carries on; the workflow's activities ride out the restart and finish the backup.
    const resumedFrom = writer.writes.length;
    writer.start();
    const report: OnlineBackupReport = await handle.result();
    await writer.stop();
    expect(writer.writes.slice(resumedFrom).filter((w) => w.outcome === 'failed')).toEqual([]);
    expect(writer.writes.length - resumedFrom).toBeGreaterThan(0);

    // The image is the volume at the switch; main storage ends with every acknowledged write.
    expect(candidatesAt(initial, acked, switchMs).some((c) => c.equals(atSwitch))).toBe(true);
    expect(readFileSync(report.image).equals(atSwitch)).toBe(true);
    const allAcked = writer.acked();
    const finalCandidates = [
      applyWrites(initial, allAcked),
      applyWrites(initial, [...acked, ...inDoubt, ...allAcked.slice(acked.length)]),
    ];
    const main = readFileSync(volumeFile);
    expect(finalCandidates.some((c) => c.equals(main))).toBe(true);
    expect((await control.status(name)).mode).toBe('passthrough');
    child.kill('SIGTERM');
  });

  it('replays the journal when killed during catch-up, before any round reflected the writes', async () => {
    // Unpaced: the base copy ends at once, and the catch-up phase is where the test writes.
    const { lab: lab2, nbdPort: port, control: ctl } = await makeDatapathLab(SIZE, { paced: false });
    try {
      const name = lab2.loaded.config.sites[0]!.vms[0]!.dataVolume;
      const volumeFile = lab2.dataVolume('vm-001');
      const initial = readFileSync(volumeFile);
      let child = await startDatapathProcess(lab2);
      const image = path.join(lab2.paths.home, 'online', 'catch-up.img');
      await ctl.enterBackup(name, 'b1', image);
      await ctl.startBaseCopy(name, 'b1');
      await untilDefined(async () => ((await ctl.status(name)).phase === 'catch-up' ? true : undefined));
      // Writes in the catch-up phase, unaligned ones among them: their edges come from backup storage.
      const writer = new PatternWriter(nbdUrl(port, name), SIZE);
      for (let i = 0; i < 12; i++) expect((await writer.writeOnce()).outcome).toBe('acked');
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      expect(readFileSync(volumeFile).equals(initial)).toBe(true);

      child = await startDatapathProcess(lab2);
      expect(await ctl.status(name)).toMatchObject({ mode: 'backup', phase: 'catch-up', replayedEntries: 12 });
      const expected = applyWrites(initial, writer.acked());
      const served = path.join(lab2.dir, 'served.img');
      await nbdcopy(nbdUrl(port, name), served);
      expect(readFileSync(served).equals(expected)).toBe(true);

      await ctl.catchUp(name, 'b1');
      const fin = await ctl.finish(name, 'b1', 60_000);
      expect(fin.switched).toBe(true);
      expect(readFileSync(volumeFile).equals(expected)).toBe(true);
      expect(readFileSync(image).equals(initial)).toBe(true);
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    } finally {
      lab2.cleanup();
    }
  });
});
