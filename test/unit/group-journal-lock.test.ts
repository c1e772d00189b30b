/**
 * The group journal shared by two processes: the datapath appends host writes while the worker's
 * shipper records the remote's acknowledgements. An acknowledgement must take the write lock when it
 * begins, so a concurrent append waits its turn instead of the acknowledgement failing outright.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { GroupJournal } from '../../src/datapath/group-journal';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('an acknowledgement while another process appends', () => {
  it('commits, and the append that came in the middle waits for it instead of making it fail', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-group-journal-'));
    dirs.push(dir);
    const file = path.join(dir, 'journal.db');
    const journal = new GroupJournal('db', file);
    journal.append('array-01/v', 0, Buffer.from('a'));
    journal.append('array-01/v', 1, Buffer.from('b'));

    // The datapath's connection, as its own process has it; no busy wait, so "it had to wait"
    // shows as SQLITE_BUSY instead of a stall.
    const datapath = new Database(file);
    datapath.pragma('busy_timeout = 0');
    const appendThird = () =>
      datapath
        .transaction(() => {
          datapath.prepare(`UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'lastSeq'`).run();
          datapath
            .prepare('INSERT INTO writes (seq, at, volume, offset, length, data) VALUES (3, ?, ?, 2, 1, ?)')
            .run(Date.now(), 'array-01/v', Buffer.from('c'));
        })
        .immediate();

    // The append lands after the acknowledgement has read the journal and before it trims it.
    const lastSeq = Object.getOwnPropertyDescriptor(GroupJournal.prototype, 'lastSeq')!.get!;
    let inTheMiddle: string | undefined;
    Object.defineProperty(journal, 'lastSeq', {
      get() {
        const v = lastSeq.call(journal) as number;
        if (inTheMiddle === undefined) {
          try {
            appendThird();
            inTheMiddle = 'committed';
          } catch (err) {
            inTheMiddle = (err as { code?: string }).code;
          }
        }
        return v;
      },
    });

    journal.ack(2);
    expect(journal.acked).toBe(2);
    expect(inTheMiddle).toBe('SQLITE_BUSY');
    // Its turn comes once the acknowledgement has committed.
    appendThird();
    expect(journal.read(0, 10).map((w) => [w.seq, w.data?.toString()])).toEqual([[3, 'c']]);
    datapath.close();
    journal.close();
  });
});
