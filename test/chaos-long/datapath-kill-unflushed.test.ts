/**
 * Chaos: during an online backup a host writes a burst without any FLUSH or FUA (qemu-io with a
 * writeback cache sends neither until it closes), every write is acknowledged, and the datapath is
 * killed (SIGKILL) before the host flushes. Journal replay must give back every acknowledged write,
 * each once: by default because an ack waits for the record to be in the journal file (which a
 * killed process leaves behind), with `journalSync: every-write` because it waits for its fdatasync.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, type ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Journal } from '../../src/datapath/journal';
import { VolumeStateStore } from '../../src/datapath/volume-state';
import { datapathVolumes } from '../../src/datapath/service';
import { makeDatapathLab, startDatapathProcess, untilDefined } from '../support/harness';
import { nbdUrl, nbdcopy } from '../support/nbd';

const SIZE = 4 * 1024 * 1024;
const BURST = 48;
const procs: ChildProcess[] = [];

afterAll(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

interface BurstWrite {
  offset: number;
  length: number;
  pattern: number;
}

/** One write per 64 KiB slot, so none overlaps another; every third is unaligned (its edges come from under the snapshot). */
function burst(): BurstWrite[] {
  return Array.from({ length: BURST }, (_, i) => {
    const slot = (i * 29) % (SIZE / 65536);
    return i % 3 === 2
      ? { offset: slot * 65536 + 1000, length: 5000, pattern: i + 1 }
      : { offset: slot * 65536, length: 16384, pattern: i + 1 };
  });
}

/**
 * Runs the burst in one qemu-io process: every write in flight at once, all of them waited for,
 * then a pause in which nothing is sent (the datapath is killed in it), then the close, whose flush
 * fails. Resolves with qemu-io's output once it has exited.
 */
function hostBurst(url: string, writes: BurstWrite[], pauseMs: number): Promise<string> {
  const commands = [
    ...writes.map((w) => `aio_write -P 0x${w.pattern.toString(16)} ${w.offset} ${w.length}`),
    'aio_flush',
    `sleep ${pauseMs}`,
  ];
  return new Promise((resolve) => {
    const child = execFile(
      'qemu-io',
      ['--cache=writeback', '-f', 'raw', ...commands.flatMap((c) => ['-c', c]), url],
      { timeout: 60_000 },
      (_err, stdout, stderr) => resolve(`${stdout}${stderr}`),
    );
    procs.push(child);
  });
}

/** The writes qemu-io reported done ("wrote <n>/<n> bytes at offset <o>"), by offset. */
function acknowledged(output: string): Set<number> {
  const out = new Set<number>();
  for (const m of output.matchAll(/^wrote (\d+)\/(\d+) bytes at offset (\d+)$/gm))
    if (m[1] === m[2]) out.add(Number(m[3]));
  return out;
}

async function killDuringBurst(settings: Record<string, unknown>): Promise<void> {
  const { lab, nbdPort, control } = await makeDatapathLab(SIZE, { paced: false, settings });
  try {
    const name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
    const volumeFile = lab.dataVolume('vm-001');
    const initial = readFileSync(volumeFile);
    let child = await startDatapathProcess(lab, procs);
    const image = path.join(lab.paths.home, 'online', 'burst.img');
    // Backup mode with no base copy running: the burst is only journaled, main storage stays frozen.
    await control.enterBackup(name, 'b1', image);

    const writes = burst();
    const host = hostBurst(nbdUrl(nbdPort, name), writes, 1500);
    await untilDefined(async () => ((await control.status(name)).journalEntries === BURST ? true : undefined));
    // The replies leave in the turn their records are written; give them time to reach the host.
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const output = await host;
    const acked = acknowledged(output);
    expect(acked.size, output).toBe(BURST);
    expect(readFileSync(volumeFile).equals(initial)).toBe(true);

    // The journal as the killed process left it: each write once (in the order they arrived, which
    // is qemu-io's to choose among writes in flight together), seqs 1..n.
    const vol = datapathVolumes(lab.loaded, lab.paths).find((v) => v.name === name)!;
    const copy = path.join(lab.dir, 'journal-copy');
    copyFileSync(new VolumeStateStore(vol.name, vol.mainFile, vol.stateDir).journalFile, copy);
    const { journal, entries } = await Journal.open(copy);
    await journal.close();
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1));
    const byOffset = (a: (number | undefined)[], b: (number | undefined)[]) => a[0]! - b[0]!;
    expect(entries.map((e) => [e.offset, e.length, e.data?.[0]]).sort(byOffset)).toEqual(
      writes.map((w) => [w.offset, w.length, w.pattern]).sort(byOffset),
    );

    child = await startDatapathProcess(lab, procs);
    expect(await control.status(name)).toMatchObject({ mode: 'backup', replayedEntries: BURST });
    const model = Buffer.from(initial);
    for (const w of writes) model.fill(w.pattern, w.offset, w.offset + w.length);
    const served = path.join(lab.dir, 'served.img');
    await nbdcopy(nbdUrl(nbdPort, name), served);
    expect(readFileSync(served).equals(model)).toBe(true);

    // The backup carries on from the replayed journal: the image is the volume at the switch, main storage ends with every write.
    await control.startBaseCopy(name, 'b1');
    await untilDefined(async () => ((await control.status(name)).phase === 'catch-up' ? true : undefined));
    await control.catchUp(name, 'b1');
    expect((await control.finish(name, 'b1', 60_000)).switched).toBe(true);
    expect(readFileSync(volumeFile).equals(model)).toBe(true);
    expect(readFileSync(image).equals(initial)).toBe(true);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  } finally {
    lab.cleanup();
  }
}

describe('kill -9 of the datapath after a burst of writes the host never flushed', () => {
  it('by default (durable on FLUSH or FUA), replays every acknowledged write once', async () => {
    await killDuringBurst({});
  });

  it('with every write made durable before its ack, replays every acknowledged write once', async () => {
    await killDuringBurst({ journalSync: 'every-write' });
  });
});
