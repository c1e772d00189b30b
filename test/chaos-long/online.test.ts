/**
 * Chaos: the Temporal server is SIGKILLed at a seeded random instant of an online backup's catch-up,
 * while the host keeps writing through the datapath, and started again on the same SQLite file.
 * The backup completes with the image of the switch instant; the journal's seqs are contiguous and
 * hold every write the host had acknowledged; main storage ends with every acknowledged write.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import type { DatapathClient } from '../../src/datapath/client';
import { Journal } from '../../src/datapath/journal';
import type { OnlineBackupReport } from '../../src/domain/datapath';
import {
  type TestLab,
  startDatapathProcess as startLabDatapath,
  makeDatapathLab,
  untilDefined,
} from '../support/harness';
import { PatternWriter, applyWrites, candidatesAt, nbdUrl } from '../support/nbd';
import { acrossOutage, chaosSeed, startPrivateKura, type PrivateKura } from '../support/private-server';
import { heldRows } from './checks';

const SIZE = 4 * 1024 * 1024;

let lab: TestLab;
let pk: PrivateKura;
let nbdPort: number;
let control: DatapathClient;
const procs: ChildProcess[] = [];

/** Starts `kura datapath` as its own process and waits for its ready line. */
async function startDatapathProcess(): Promise<ChildProcess> {
  return startLabDatapath(lab, procs, { TEMPORAL_ADDRESS: pk.server.address });
}

/** Every journal file below a directory. */
function journalFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.journal'))
    .map((f) => path.join(dir, f));
}

beforeAll(async () => {
  // Base copy and catch-up paced at 1 MiB/s: a catch-up round over the blocks written during the
  // four-second base copy lasts seconds.
  ({ lab, nbdPort, control } = await makeDatapathLab(SIZE));
  pk = await startPrivateKura(lab);
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await pk?.close();
  lab?.cleanup();
});

describe('the Temporal server killed during an online backup’s catch-up', () => {
  it('completes the backup, loses no journal entry, and main storage ends with every acknowledged write', async () => {
    const { random } = chaosSeed('online');
    const name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
    const volumeFile = lab.dataVolume('vm-001');
    const initial = readFileSync(volumeFile);
    const datapath = await startDatapathProcess();
    const writer = new PatternWriter(nbdUrl(nbdPort, name), SIZE);
    writer.start();
    await untilDefined(async () => (writer.acked().length >= 2 ? true : undefined));

    const started = Date.now();
    const handle = await pk.kura.startOnlineBackup('vm-001', {
      settings: { ioTimeoutMs: 30_000, safetyFactor: 0.5, pollMs: 50, roundPauseMs: 50 },
      deviceAttempts: 10,
    });
    const switchedAt = await untilDefined(async () => (await control.status(name)).switchedAt ?? undefined);
    const switchMs = Date.parse(switchedAt);
    const atSwitch = readFileSync(volumeFile);
    await untilDefined(async () => ((await control.status(name)).phase === 'catch-up' ? true : undefined));
    // The instant: a seeded moment in the first second of the catch-up round.
    const atMs = Math.floor(random() * 1000);
    await new Promise((r) => setTimeout(r, atMs));
    expect((await control.status(name)).phase).toBe('catch-up');
    await pk.server.kill();

    // Server down: the datapath goes on serving the host. Read the journal as it stands (a copy, so
    // the live one is not touched) and compare it with what the host was told.
    const ackedBefore = writer.acked().filter((w) => w.startedAt > switchMs).length;
    const [journal] = journalFiles(lab.paths.home);
    expect(journal).toBeDefined();
    const copy = path.join(lab.dir, 'journal-copy');
    copyFileSync(journal!, copy);
    const { journal: j, entries } = await Journal.open(copy);
    await j.close();
    const seqs = entries.map((e) => e.seq);
    console.log(`online: server killed ${atMs} ms into the catch-up; ${entries.length} journal entries`);
    // Seqs 1..n with no gap, and at least every write acknowledged since the switch.
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    expect(seqs.length).toBeGreaterThanOrEqual(ackedBefore);
    await new Promise((r) => setTimeout(r, 1000));
    await pk.server.restart();

    const report: OnlineBackupReport = await acrossOutage(() => handle.result());
    await writer.stop();
    expect(writer.failed()).toEqual([]);

    // The image is the volume at the switch; main storage holds every acknowledged write.
    expect(candidatesAt(initial, writer.acked(), switchMs).some((c) => c.equals(atSwitch))).toBe(true);
    expect(readFileSync(report.image).equals(atSwitch)).toBe(true);
    expect(readFileSync(volumeFile).equals(applyWrites(initial, writer.acked()))).toBe(true);
    expect((await control.status(name)).mode).toBe('passthrough');

    const catalog = new Catalog(lab.paths.catalog);
    expect(catalog.backup(report.backupId).status).toBe('complete');
    expect(catalog.listBackups({ site: lab.site }).filter((b) => b.status !== 'complete')).toEqual([]);
    catalog.close();
    expect(await heldRows(pk.kura, lab.site)).toEqual([]);
    console.log(`online: ${Date.now() - started} ms from the start to the check`);
    datapath.kill('SIGTERM');
    await new Promise((r) => datapath.once('exit', r));
  });
});
