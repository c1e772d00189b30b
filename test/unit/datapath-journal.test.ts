/**
 * The journal, the rate window and the rules built on it, without a server: what is read back
 * after a crash, how the ETA is estimated, when the convergence path escalates.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Journal, JournalKind, JOURNAL_HEADER_BYTES } from '../../src/datapath/journal';
import { ConvergencePolicy, RateWindow, canFinish, estimateDrainMs } from '../../src/datapath/rate';

const dirs: string[] = [];
function tmpFile(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kura-journal-'));
  dirs.push(d);
  return path.join(d, 'vol.journal');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the journal', () => {
  it('reads back every record with its reception time, data and reflected flag, in order', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file);
    const a = await journal.append(JournalKind.Write, 4096, 3, Buffer.from('abc'), 1000.5);
    await journal.append(JournalKind.Zeroes, 0, 8192, null, 2000);
    await journal.markReflected(a);
    await journal.close();

    const { journal: again, entries } = await Journal.open(file);
    expect(
      entries.map((e) => [e.seq, e.kind, e.receivedAt, e.offset, e.length, e.data?.toString() ?? null, e.reflected]),
    ).toEqual([
      [1, JournalKind.Write, 1000.5, 4096, 3, 'abc', true],
      [2, JournalKind.Zeroes, 2000, 0, 8192, null, false],
    ]);
    expect(again.lastSeq).toBe(2);
    const next = await again.append(JournalKind.Write, 0, 1, Buffer.from('z'), 3000);
    expect(next.seq).toBe(3);
    await again.close();
  });

  it('cuts off a torn record at the tail (it was never acknowledged) and appends after the last intact one', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file);
    await journal.append(JournalKind.Write, 0, 4, Buffer.from('keep'), 1);
    await journal.append(JournalKind.Write, 4, 4, Buffer.from('torn'), 2);
    await journal.close();
    const intact = JOURNAL_HEADER_BYTES + 4;
    truncateSync(file, intact + JOURNAL_HEADER_BYTES + 2);

    const { journal: again, entries } = await Journal.open(file);
    expect(entries.map((e) => e.data?.toString())).toEqual(['keep']);
    expect(statSync(file).size).toBe(intact);
    await again.append(JournalKind.Write, 8, 3, Buffer.from('new'), 3);
    await again.close();
    expect((await Journal.open(file)).entries.map((e) => [e.seq, e.data?.toString()])).toEqual([
      [1, 'keep'],
      [2, 'new'],
    ]);
  });

  it('stops at a record whose checksum does not match', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file);
    await journal.append(JournalKind.Write, 0, 4, Buffer.from('good'), 1);
    await journal.close();
    // Garbage that starts like a record but is not one.
    const bogus = Buffer.alloc(JOURNAL_HEADER_BYTES + 4);
    bogus.writeUInt32LE(0x4e524a4b, 0);
    bogus.writeUInt8(JournalKind.Write, 9);
    bogus.writeUInt32LE(4, 36);
    appendFileSync(file, bogus);
    const { journal: again, entries } = await Journal.open(file);
    await again.close();
    expect(entries.map((e) => e.data?.toString())).toEqual(['good']);
  });
});

describe('group commit', () => {
  it('makes the writes of one turn durable with one fdatasync, and those arriving during it with the next, in call order, each with its own position', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file);
    const fh = (journal as unknown as { fh: { datasync: () => Promise<void> } }).fh;
    // The records already durable when each fdatasync starts: what the batches before it held.
    const durableAtSync: number[] = [];
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => (durableAtSync.push(journal.entries), datasync());
    const together = ['a', 'b', 'c', 'd', 'e'].map((d, i) =>
      journal.append(JournalKind.Write, 4096 * i, 1, Buffer.from(d), 1),
    );
    // The batch of the first turn is on its way to the disk by now.
    await new Promise((r) => setImmediate(r));
    const during = ['f', 'g'].map((d, i) => journal.append(JournalKind.Write, 4096 * (i + 5), 1, Buffer.from(d), 2));
    const all = await Promise.all([...together, ...during]);
    expect(durableAtSync).toEqual([0, 5]);
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all.map((e) => e.position)).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => i * (JOURNAL_HEADER_BYTES + 1)));
    await journal.markReflected(all[3]!);
    await journal.close();
    const { journal: again, entries } = await Journal.open(file);
    await again.close();
    expect(entries.map((e) => [e.seq, e.offset, e.data?.toString(), e.reflected])).toEqual([
      [1, 0, 'a', false],
      [2, 4096, 'b', false],
      [3, 8192, 'c', false],
      [4, 12288, 'd', true],
      [5, 16384, 'e', false],
      [6, 20480, 'f', false],
      [7, 24576, 'g', false],
    ]);
  });

  it('keeps the file written with zeroes ahead of its records, which a reopen cuts off, keeping every record', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file);
    const a = await journal.append(JournalKind.Write, 0, 4, Buffer.from('abcd'), 1);
    const b = await journal.append(JournalKind.Zeroes, 4096, 8192, null, 2);
    const records = 2 * JOURNAL_HEADER_BYTES + 4;
    expect(b.position).toBe(JOURNAL_HEADER_BYTES + 4);
    expect(statSync(file).size).toBe(JOURNAL_HEADER_BYTES + 4 + 1024 * 1024);
    expect(journal.bytes).toBe(statSync(file).size);
    expect(
      readFileSync(file)
        .subarray(records)
        .every((x) => x === 0),
    ).toBe(true);
    await journal.markReflected(a);
    await journal.close();
    const { journal: again, entries } = await Journal.open(file);
    await again.close();
    expect(entries.map((e) => [e.seq, e.kind, e.offset, e.length, e.data?.toString() ?? null, e.reflected])).toEqual([
      [1, JournalKind.Write, 0, 4, 'abcd', true],
      [2, JournalKind.Zeroes, 4096, 8192, null, false],
    ]);
    expect(statSync(file).size).toBe(records);
  });

  it('acknowledges no write of a batch whose fdatasync failed, and the next batch takes its place in the file', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file);
    const fh = (journal as unknown as { fh: { datasync: () => Promise<void> } }).fh;
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => Promise.reject(new Error('EIO: the disk went away'));
    await expect(journal.append(JournalKind.Write, 0, 4, Buffer.from('lost'), 1)).rejects.toThrow(
      'EIO: the disk went away',
    );
    fh.datasync = datasync;
    const kept = await journal.append(JournalKind.Write, 0, 4, Buffer.from('kept'), 2);
    expect(kept.position).toBe(0);
    await journal.close();
    const { journal: again, entries } = await Journal.open(file);
    await again.close();
    expect(entries.map((e) => e.data?.toString())).toEqual(['kept']);
    expect(again.entries).toBe(1);
  });
  it('replays no record of a failed batch left intact beyond the shorter batch that took its place', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file);
    // A first batch has the file zeroed ahead, so the batches after it write into the zeroes.
    await journal.append(JournalKind.Write, 8192, 5, Buffer.from('first'), 0);
    const fh = (journal as unknown as { fh: { datasync: () => Promise<void> } }).fh;
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => Promise.reject(new Error('EIO: the disk went away'));
    // One failed batch of two records to block 0: neither is acknowledged, both may have landed.
    const failed = [
      journal.append(JournalKind.Write, 0, 4, Buffer.from('old1'), 1),
      journal.append(JournalKind.Write, 0, 4, Buffer.from('old2'), 2),
    ];
    await Promise.all(failed.map((p) => expect(p).rejects.toThrow('EIO: the disk went away')));
    fh.datasync = datasync;
    // The next batch, one record as long as the first, overwrites only the first of them.
    const kept = await journal.append(JournalKind.Write, 0, 4, Buffer.from('kept'), 3);
    expect(kept.position).toBe(JOURNAL_HEADER_BYTES + 5);
    await journal.close();
    const { journal: again, entries } = await Journal.open(file);
    await again.close();
    // Replaying 'old2' after 'kept' would put an unacknowledged write over an acknowledged one.
    expect(entries.map((e) => e.data?.toString())).toEqual(['first', 'kept']);
  });
});

describe('durable on FLUSH (on-flush mode)', () => {
  it('resolves an append once its record is in the file, with no fdatasync, and makes them durable on sync, one for the calls made together', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file, 'on-flush');
    const fh = (journal as unknown as { fh: { datasync: () => Promise<void> } }).fh;
    const durableAtSync: number[] = [];
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => (durableAtSync.push(journal.entries), datasync());
    const a = await journal.append(JournalKind.Write, 0, 4, Buffer.from('abcd'), 1);
    const b = await journal.append(JournalKind.Zeroes, 4096, 8192, null, 2);
    const c = await journal.append(JournalKind.Write, 8192, 3, Buffer.from('xyz'), 3);
    expect(durableAtSync).toEqual([]);
    expect([a, b, c].map((e) => [e.seq, e.position])).toEqual([
      [1, 0],
      [2, JOURNAL_HEADER_BYTES + 4],
      [3, 2 * JOURNAL_HEADER_BYTES + 4],
    ]);
    // Nothing zeroed ahead: the file is its records.
    expect(statSync(file).size).toBe(3 * JOURNAL_HEADER_BYTES + 7);
    // What a kill of the process leaves: the file as written, read by another open while this one is still open.
    const { journal: reader, entries } = await Journal.open(`${file}`, 'on-flush');
    expect(entries.map((e) => [e.seq, e.kind, e.offset, e.data?.toString() ?? null])).toEqual([
      [1, JournalKind.Write, 0, 'abcd'],
      [2, JournalKind.Zeroes, 4096, null],
      [3, JournalKind.Write, 8192, 'xyz'],
    ]);
    await reader.close();
    // A sync in progress covers the records written before it; calls made meanwhile share one more.
    await Promise.all([journal.sync(), journal.sync(), journal.sync()]);
    expect(durableAtSync).toEqual([3, 3]);
    await journal.close();
  });

  it('in every-write mode, sync has nothing left to do', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file, 'every-write');
    await journal.append(JournalKind.Write, 0, 4, Buffer.from('abcd'), 1);
    const fh = (journal as unknown as { fh: { datasync: () => Promise<void> } }).fh;
    let syncs = 0;
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => (syncs++, datasync());
    await journal.sync();
    expect(syncs).toBe(0);
    await journal.close();
  });

  it('writes a record larger than a synchronous write through the thread pool, after the ones before it and before the ones after', async () => {
    const file = tmpFile();
    const { journal } = await Journal.open(file, 'on-flush');
    const big = Buffer.alloc(2 * 1024 * 1024, 0x5a);
    const all = await Promise.all([
      journal.append(JournalKind.Write, 0, 1, Buffer.from('a'), 1),
      journal.append(JournalKind.Write, 0, big.length, big, 2),
      journal.append(JournalKind.Write, 4096, 1, Buffer.from('c'), 3),
    ]);
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3]);
    await journal.close();
    const { journal: again, entries } = await Journal.open(file);
    await again.close();
    expect(entries.map((e) => [e.seq, e.length, e.position])).toEqual([
      [1, 1, 0],
      [2, big.length, JOURNAL_HEADER_BYTES + 1],
      [3, 1, 2 * JOURNAL_HEADER_BYTES + 1 + big.length],
    ]);
    expect(entries[1]!.data!.equals(big)).toBe(true);
  });
});

describe('the ETA and the finish rule (S601, S701–S702)', () => {
  it('measures the rate over the recent window only, not the lifetime', () => {
    const w = new RateWindow(1000);
    w.record(10_000_000, 0);
    w.record(1000, 5000);
    // Only the second sample is inside the window ending at 5 500; the span is at least the window.
    expect(w.rate(5500)).toBe(1000);
  });

  it('keeps the last measured rate through a quiet spell instead of forgetting it', () => {
    const w = new RateWindow(1000);
    w.record(2000, 0);
    expect(w.rate(500)).toBe(2000);
    expect(w.rate(10_000)).toBe(2000);
  });

  it('estimates unreflected bytes ÷ rate, and is unknown until a rate is measured', () => {
    expect(estimateDrainMs(1_000_000, 2_000_000)).toBe(500);
    expect(estimateDrainMs(0, null)).toBe(0);
    expect(estimateDrainMs(4096, null)).toBeNull();
  });

  it('finishes only when the estimate is below the I/O timeout times the safety factor', () => {
    expect(canFinish(14_999, 30_000, 0.5)).toBe(true);
    expect(canFinish(15_000, 30_000, 0.5)).toBe(false);
    expect(canFinish(null, 30_000, 0.5)).toBe(false);
  });
});

describe('convergence', () => {
  it('throttles after the configured rounds of writes outpacing the copy, then goes active', () => {
    const p = new ConvergencePolicy(2, 3);
    expect(p.afterRound(100, false)).toBe('normal');
    expect(p.afterRound(200, false)).toBe('throttled');
    expect(p.afterRound(150, false)).toBe('throttled');
    expect(p.afterRound(150, false)).toBe('active');
    expect(p.afterRound(0, true)).toBe('active');
    expect(p.roundsBehind).toBe(3);
  });

  it('stays on the normal path while each round leaves less behind', () => {
    const q = new ConvergencePolicy(2, 4);
    expect([q.afterRound(400, false), q.afterRound(300, false), q.afterRound(100, false)]).toEqual([
      'normal',
      'normal',
      'normal',
    ]);
  });

  it('does not escalate on a steady trickle of writes that could be finished on at any round', () => {
    const p = new ConvergencePolicy(1, 2);
    expect([p.afterRound(8192, true), p.afterRound(8192, true), p.afterRound(12288, true)]).toEqual([
      'normal',
      'normal',
      'normal',
    ]);
    expect(p.roundsBehind).toBe(0);
  });
});
