/**
 * An online backup (seed 002) against the real dev server, the datapath serving a lab volume over
 * NBD, and Debian's qemu-io writing known patterns the whole time: the host sees no error, the
 * image is the volume at the instant of the switch, and main storage ends with the host's latest data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { Catalog } from '../../src/catalog/store';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { onlineProgressQuery } from '../../src/messages';
import { KuraKind } from '../../src/search-attributes';
import type { OnlineBackupReport } from '../../src/domain/datapath';
import { onlineBackupWorkflowId, type Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, failureOf, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';
import { PatternWriter, applyWrites, candidatesAt, freePort, nbdUrl, nbdcopy, qemuIo } from '../support/nbd';

const SIZE = 8 * 1024 * 1024;
let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let client: Client;
let close: () => Promise<void>;
let dp: DatapathService;

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({
    vms: 2,
    dataVolumeSize: SIZE,
    // The base copy is paced at 4 MiB/s so the host's writes land in every phase of the backup.
    edit: (cfg) =>
      void (cfg.datapath = { nbdPort, controlPort, copyRate: '4MiB', ioTimeout: '30s', safetyFactor: 0.5 }),
  });
  dp = await startDatapath(lab.loaded, lab.paths);
  workers = await startWorkers(lab);
  ({ kura, client, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  await dp?.close();
  lab?.cleanup();
});

function exportOf(vm: string): string {
  return lab.loaded.config.sites[0]!.vms.find((v) => v.name === vm)!.dataVolume;
}

async function waitFor<T>(probe: () => T | undefined): Promise<T> {
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('an online backup while the host keeps writing', () => {
  it('takes the image of the switch instant, with no host error, and leaves main storage holding the latest data', async () => {
    const name = exportOf('vm-001');
    const volumeFile = lab.dataVolume('vm-001');
    const initial = readFileSync(volumeFile);
    const writer = new PatternWriter(nbdUrl(dp.nbdPort, name), SIZE);
    writer.start();
    // Some writes in passthrough first.
    await waitFor(() => (writer.acked().length >= 3 ? true : undefined));

    const requestedAt = new Date().toISOString();
    const handle = await kura.startOnlineBackup('vm-001', {
      requestedAt,
      settings: { ioTimeoutMs: 30_000, safetyFactor: 0.5, pollMs: 50, roundPauseMs: 50 },
    });
    const volume = dp.volumes.get(name)!;
    const switchedAt = await waitFor(() => volume.status().switchedAt ?? undefined);
    // Main storage is frozen from the switch on: reading it now gives the volume at that instant.
    const atSwitch = readFileSync(volumeFile);
    const writesBeforeBackup = writer.acked().length;
    await waitFor(() => (writer.acked().length >= writesBeforeBackup + 3 ? true : undefined));

    const report: OnlineBackupReport = await handle.result();
    const writesDuringBackup = writer.acked().length - writesBeforeBackup;
    // A few more in passthrough after the switch back.
    const afterBackup = writer.acked().length;
    await waitFor(() => (writer.acked().length >= afterBackup + 2 ? true : undefined));
    await writer.stop();

    // The host never saw an error, and the datapath failed no request.
    expect(writer.failed()).toEqual([]);
    expect(volume.status().requests.failed).toBe(0);
    expect(writesDuringBackup).toBeGreaterThanOrEqual(3);

    // The copy the test took at the switch is one the host's own history allows at that instant…
    const candidates = candidatesAt(initial, writer.acked(), Date.parse(switchedAt));
    expect(candidates.some((c) => c.equals(atSwitch))).toBe(true);
    // …and it differs from the end state, so the backup window really had writes in it.
    const final = applyWrites(initial, writer.acked());
    expect(final.equals(atSwitch)).toBe(false);

    // The image equals the volume at the switch, byte for byte, and the catalog says so.
    expect(report.switchedAt).toBe(switchedAt);
    expect(readFileSync(report.image).equals(atSwitch)).toBe(true);
    expect(await sha256(report.image)).toBe(report.sha256);
    const catalog = new Catalog(lab.paths.catalog);
    const row = catalog.backup(report.backupId);
    const pieces = catalog.piecesOf(report.backupId);
    catalog.close();
    expect(row).toMatchObject({
      status: 'complete',
      dataTime: switchedAt,
      sha256: report.sha256,
      sizeBytes: SIZE,
      target: 'vm-001',
    });
    expect(pieces.map((p) => [p.library, p.tape, p.sizeBytes])).toEqual([
      ['disk', path.relative(lab.paths.home, report.image), SIZE],
    ]);

    // It restores like any other backup: the restored file is the volume at the switch.
    const restoredTo = path.join(lab.dir, 'restores', 'online-vm-001.img');
    await (await kura.startRestore(report.backupId, restoredTo)).result();
    expect(readFileSync(restoredTo).equals(atSwitch)).toBe(true);

    // After the switch back, main storage holds exactly the host's latest data — on disk and through NBD.
    expect(volume.status()).toMatchObject({
      mode: 'passthrough',
      phase: 'passthrough',
      unreflectedBytes: 0,
      journalEntries: 0,
    });
    expect(readFileSync(volumeFile).equals(final)).toBe(true);
    const through = path.join(lab.dir, 'through-nbd.img');
    await nbdcopy(nbdUrl(dp.nbdPort, name), through);
    expect(readFileSync(through).equals(final)).toBe(true);

    // The quiesce window is measured, reported by the workflow, and the same the datapath saw.
    expect(report.quiesceMs).toBeGreaterThan(0);
    expect(report.quiesceMs).toBe(volume.status().lastQuiesceMs);
    expect(report.ioTimeoutMs).toBe(30_000);
    const progress = await handle.query(onlineProgressQuery);
    expect(progress).toMatchObject({ phase: 'done', quiesceMs: report.quiesceMs, bytesDone: SIZE, bytesTotal: SIZE });
    expect(report.rounds).toBeGreaterThanOrEqual(1);

    const desc = await client.workflow.getHandle(handle.workflowId).describe();
    const [array, vol] = name.split('/') as [string, string];
    expect(handle.workflowId).toBe(onlineBackupWorkflowId(array, vol, requestedAt));
    expect(desc.typedSearchAttributes.get(KuraKind)).toBe('online-backup');
  });

  it('undoes the switch when cancelled during the base copy: passthrough, host writes on main storage, no image, the catalog says failed', async () => {
    const name = exportOf('vm-001');
    const volume = dp.volumes.get(name)!;
    const handle = await kura.startOnlineBackup('vm-001', {
      settings: { ioTimeoutMs: 30_000, safetyFactor: 0.5, pollMs: 50 },
    });
    const during = await waitFor(() => {
      const st = volume.status();
      return st.phase === 'base-copy' && st.baseCopyRunning ? st : undefined;
    });
    // A write in backup mode is journaled, not yet on main storage; the undo must put it there.
    await qemuIo(nbdUrl(dp.nbdPort, name), ['write -P 0x6c 196608 8192']);
    expect(
      readFileSync(lab.dataVolume('vm-001'))
        .subarray(196608, 196608 + 8192)
        .every((b) => b === 0x6c),
    ).toBe(false);

    await handle.cancel();
    const err = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);

    expect(volume.status()).toMatchObject({
      mode: 'passthrough',
      phase: 'passthrough',
      backupId: null,
      unreflectedBytes: 0,
      journalEntries: 0,
    });
    expect(
      readFileSync(lab.dataVolume('vm-001'))
        .subarray(196608, 196608 + 8192)
        .every((b) => b === 0x6c),
    ).toBe(true);
    expect(existsSync(during.image!)).toBe(false);
    const catalog = new Catalog(lab.paths.catalog);
    const row = catalog.backup(during.backupId!);
    catalog.close();
    expect(row).toMatchObject({ status: 'failed', error: 'Cancelled: the job was cancelled', sha256: null });
    const progress = await handle.query(onlineProgressQuery);
    expect(progress).toMatchObject({ phase: 'failed', activity: 'failed in base-copy: the job was cancelled' });
  });

  it('refuses a second online backup of a volume that is in backup mode, and leaves the first one untouched', async () => {
    const name = exportOf('vm-002');
    const volume = dp.volumes.get(name)!;
    await volume.enterBackup('someone-else@20260101T000000Z', path.join(lab.paths.home, 'online', 'other.img'));
    try {
      const handle = await kura.startOnlineBackup('vm-002', {
        settings: { ioTimeoutMs: 30_000, safetyFactor: 0.5, pollMs: 50 },
      });
      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      const f = failureOf(err);
      expect(f.type).toBe('AlreadyRunning');
      expect(f.message).toContain(`${name} is in backup mode for someone-else@20260101T000000Z`);
      expect(volume.status()).toMatchObject({ mode: 'backup', backupId: 'someone-else@20260101T000000Z' });
    } finally {
      await volume.abort('someone-else@20260101T000000Z');
    }
    expect(volume.status().mode).toBe('passthrough');
  });
});
