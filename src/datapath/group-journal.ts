/**
 * The write journal of one remote-copy group at its primary site: every host write to any volume
 * of the group gets the next sequence number of the group and its reception time, and is durable
 * (SQLite, synchronous FULL) before the datapath writes main storage and acknowledges the host.
 * One sequence across the group's volumes is what keeps the order of a database's data and WAL
 * writes; the shipper reads the journal from another process (WAL mode), and trims it only up to
 * what the remote site has acknowledged.
 */
import type Database from 'better-sqlite3';
import { openDatabase } from '../stack/sqlite';
import { AccessDeniedError } from '../domain/errors';

const MIGRATIONS = [
  `CREATE TABLE writes (seq INTEGER PRIMARY KEY, at REAL NOT NULL, volume TEXT NOT NULL, offset INTEGER NOT NULL,
     length INTEGER NOT NULL, data BLOB);
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   INSERT INTO meta (key, value) VALUES ('lastSeq', '0'), ('acked', '0'), ('role', 'primary');`,
];

/** One journaled write. */
export interface GroupWrite {
  seq: number;
  /** Reception time, ms since the epoch. */
  at: number;
  /** The volume's name within the group (its `array/volume` at the main site). */
  volume: string;
  offset: number;
  length: number;
  /** The bytes written; null for a range written with zeroes (kept as its length, whatever its size). */
  data: Buffer | null;
}

/** Whether this site's hosts may write the group's volumes: only the primary's may. */
export type GroupRole = 'primary' | 'secondary';

export class GroupJournal {
  private readonly db: Database.Database;
  private readonly appendTx: (
    volume: string,
    offset: number,
    length: number,
    data: Buffer | null,
    at: number,
  ) => number;

  constructor(
    readonly group: string,
    readonly file: string,
  ) {
    this.db = openDatabase(file, MIGRATIONS, { synchronous: 'FULL' });
    const next = this.db.prepare(
      `UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'lastSeq' RETURNING value`,
    );
    const insert = this.db.prepare(
      'INSERT INTO writes (seq, at, volume, offset, length, data) VALUES (?, ?, ?, ?, ?, ?)',
    );
    const role = this.db.prepare(`SELECT value FROM meta WHERE key = 'role'`).pluck();
    // IMMEDIATE: the seq is taken and the write recorded under one lock, so seq order is commit order
    // even with several processes writing.
    const tx = this.db.transaction(
      (volume: string, offset: number, length: number, data: Buffer | null, at: number) => {
        if (role.get() !== 'primary')
          throw new AccessDeniedError(
            `remote-copy group ${group} is failed over: its volumes are written at the remote site until \`kura remote failback ${group}\``,
            { group, volume },
          );
        const seq = Number((next.get() as { value: string }).value);
        insert.run(seq, at, volume, offset, length, data);
        return seq;
      },
    );
    this.appendTx = (volume, offset, length, data, at) => tx.immediate(volume, offset, length, data, at);
  }

  /** Journals one write durably and returns its seq; refused while the group is failed over. */
  append(volume: string, offset: number, data: Buffer, at = Date.now()): number {
    return this.appendTx(volume, offset, data.length, data, at);
  }

  /** Journals a range written with zeroes (its length only) and returns its seq. */
  appendZeroes(volume: string, offset: number, length: number, at = Date.now()): number {
    return this.appendTx(volume, offset, length, null, at);
  }

  get lastSeq(): number {
    return Number(this.meta('lastSeq'));
  }

  /** The last seq the remote site acknowledged as applied: everything up to it is trimmed. */
  get acked(): number {
    return Number(this.meta('acked'));
  }

  get role(): GroupRole {
    return this.meta('role') as GroupRole;
  }

  /** Up to `limit` writes after `afterSeq`, in seq order. */
  read(afterSeq: number, limit: number): GroupWrite[] {
    return this.db
      .prepare('SELECT seq, at, volume, offset, length, data FROM writes WHERE seq > ? ORDER BY seq LIMIT ?')
      .all(afterSeq, limit) as GroupWrite[];
  }

  /** Writes, bytes and the oldest reception time after `afterSeq`: the lag when that is what the remote holds. */
  pending(afterSeq: number): { writes: number; bytes: number; oldestAt: number | null } {
    const r = this.db
      .prepare('SELECT COUNT(*) AS n, COALESCE(SUM(length), 0) AS b, MIN(at) AS t FROM writes WHERE seq > ?')
      .get(afterSeq) as { n: number; b: number; t: number | null };
    return { writes: r.n, bytes: r.b, oldestAt: r.t };
  }

  /** Records the remote's acknowledgement and trims what it covers. Never moves backwards. */
  ack(appliedSeq: number): void {
    // IMMEDIATE: a deferred transaction reads first, and when the datapath's process appends
    // before it trims, SQLite cannot upgrade its stale read to a write and fails at once with
    // SQLITE_BUSY, past the busy timeout; taking the write lock first makes the append wait instead.
    this.db
      .transaction(() => {
        const upTo = Math.min(appliedSeq, this.lastSeq);
        if (upTo <= this.acked) return;
        this.db.prepare('DELETE FROM writes WHERE seq <= ?').run(upTo);
        this.setMeta('acked', String(upTo));
      })
      .immediate();
  }

  /** Failover: this site's hosts may no longer write the group. */
  demote(): void {
    this.setMeta('role', 'secondary');
  }

  /**
   * Failback: the main site holds the remote's data again; the journal starts afresh at `baseSeq`
   * (at least its own last seq, so seqs never repeat) and its hosts may write.
   */
  promote(baseSeq: number): void {
    // IMMEDIATE for the same reason as `ack`.
    this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM writes').run();
        this.setMeta('lastSeq', String(baseSeq));
        this.setMeta('acked', String(baseSeq));
        this.setMeta('role', 'primary');
      })
      .immediate();
  }

  close(): void {
    this.db.close();
  }

  private meta(key: string): string {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(key) as string | undefined) ?? '0';
  }

  private setMeta(key: string, value: string): void {
    this.db
      .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?')
      .run(key, value, value);
  }
}
