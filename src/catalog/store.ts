/**
 * The catalog: which backups exist and where every piece of each lies on tape. A backup is
 * `complete` only when all its pieces are recorded, in one transaction, so nothing in the catalog
 * ever claims a backup that cannot be restored. Every write is idempotent, so retried activities
 * never duplicate a row.
 */
import type Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations';
import {
  BackupModeSchema,
  BackupRecordSchema,
  PieceRecordSchema,
  type BackupModeRecord,
  type BackupRecord,
  type BackupStatus,
  type NewBackup,
  type PieceRecord,
  StreamRecordSchema,
  type StreamRecord,
  type TapeCatalogEntry,
} from '../domain/catalog';
import { StoreBackupRecordSchema, type StoreBackupRecord } from '../domain/store';
import { VmImageRecordSchema, type VmImageRecord } from '../domain/vm-image';
import { openDatabase } from '../stack/sqlite';
import { FeedEventSchema, NewEventSchema, type FeedEvent, type NewEvent } from '../domain/events';
import { InvalidInputError, NotFoundError } from '../domain/errors';

export type { NewBackup };

export interface BackupFilter {
  site?: string;
  target?: string;
  status?: BackupStatus;
  /** Only backups started at or after this ISO time. */
  since?: string;
  limit?: number;
}

/** A store backup's facts of how it found its changed chunks (kept since migration 8). */
type ChangeFacts = 'changedFrom' | 'changeNote' | 'readChunks';

export class Catalog {
  private readonly db: Database.Database;

  /** Opens (creating and migrating when needed) the catalog at `file`. */
  constructor(readonly file: string) {
    this.db = openDatabase(file, MIGRATIONS, { foreignKeys: true });
  }

  /**
   * Records that a backup has started. Idempotent: starting a backup that is already recorded
   * changes nothing (a retried activity), unless it had failed, when it is marked running again.
   */
  beginBackup(b: NewBackup): BackupRecord {
    const { fromStore, ...row } = b;
    this.db
      .transaction(() => {
        this.db
          .prepare(
            `INSERT INTO backups (backup_id, job, site, target, array_name, volume, status, started_at, data_time, size_bytes)
         VALUES (@backupId, @job, @site, @target, @array, @volume, 'running', @startedAt, @dataTime, @sizeBytes)
         ON CONFLICT (backup_id) DO UPDATE SET status = 'running', error = NULL WHERE status = 'failed'`,
          )
          .run(row);
        if (fromStore) this.putStoreLink(b.backupId, fromStore);
      })
      .immediate();
    return this.backup(b.backupId);
  }

  /** Links a tape copy to the store backup it was read from (inside the caller's transaction; idempotent). */
  private putStoreLink(backupId: string, link: NonNullable<BackupRecord['fromStore']>): void {
    this.db
      .prepare(
        `INSERT INTO store_tape_copies (backup_id, store_backup_id, store_sha256) VALUES (?, ?, ?)
         ON CONFLICT (backup_id) DO NOTHING`,
      )
      .run(backupId, link.backupId, link.sha256);
  }

  /** The complete tape copies of a store backup (docs/adr/042), newest first. */
  tapeCopiesOf(storeBackupId: string): BackupRecord[] {
    return (
      this.db
        .prepare(`${SELECT_BACKUP} WHERE t.store_backup_id = ? AND b.status = 'complete' ORDER BY b.started_at DESC`)
        .all(storeBackupId) as BackupRow[]
    ).map(backupOfRow);
  }

  /**
   * Records the pieces and marks the backup complete, all in one transaction. Idempotent: the
   * same pieces recorded again change nothing; a different piece under the same key is refused.
   */
  completeBackup(
    backupId: string,
    done: {
      endedAt: string;
      sha256: string | null;
      pieces: PieceRecord[];
      streams?: StreamRecord[];
      /** The application's backup mode the image was taken in (its label, for PostgreSQL). */
      backupMode?: BackupModeRecord;
    },
  ): BackupRecord {
    const pieces = done.pieces.map((p) => PieceRecordSchema.parse(p));
    const streams = (done.streams ?? []).map((r) => StreamRecordSchema.parse(r));
    const mode = done.backupMode === undefined ? undefined : BackupModeSchema.parse(done.backupMode);
    const insert = this.db.prepare(
      `INSERT INTO pieces (backup_id, copy, piece, target, job, stream, started_at, ended_at, data_time, library, tape, position, offset, size_bytes, sha256)
       VALUES (@backupId, @copy, @piece, @target, @job, @stream, @startedAt, @endedAt, @dataTime, @library, @tape, @position, @offset, @sizeBytes, @sha256)
       ON CONFLICT (backup_id, copy, piece) DO NOTHING`,
    );
    this.db
      .transaction(() => {
        const current = this.backup(backupId);
        for (const p of pieces) {
          if (p.backupId !== backupId)
            throw new InvalidInputError(`piece ${p.piece} belongs to ${p.backupId}, not ${backupId}`);
          insert.run(p);
          const stored = this.piecesOf(backupId).find((q) => q.copy === p.copy && q.piece === p.piece);
          if (!stored || stored.sha256 !== p.sha256 || stored.position !== p.position || stored.tape !== p.tape) {
            throw new InvalidInputError(
              `catalog already holds a different piece ${p.piece} (copy ${p.copy}) of ${backupId}; refusing to overwrite it`,
            );
          }
        }
        const all = this.piecesOf(backupId);
        const copies = new Set(all.map((p) => p.copy));
        const size = all.filter((p) => p.copy === Math.min(...copies)).reduce((n, p) => n + p.sizeBytes, 0);
        if (size !== current.sizeBytes) {
          throw new InvalidInputError(
            `pieces of ${backupId} hold ${size} bytes but the volume has ${current.sizeBytes}; the backup is not complete`,
          );
        }
        this.db
          .prepare(
            `UPDATE backups SET status = 'complete', ended_at = ?, sha256 = ?, pieces = ?, error = NULL WHERE backup_id = ?`,
          )
          .run(done.endedAt, done.sha256, all.filter((p) => p.copy === Math.min(...copies)).length, backupId);
        this.putStreams(backupId, streams);
        if (mode) this.putBackupMode(backupId, mode);
      })
      .immediate();
    return this.backup(backupId);
  }

  /**
   * Marks a backup failed with the reason, and records what became of each stream. A complete
   * backup is never downgraded.
   */
  failBackup(backupId: string, error: string, endedAt: string, streams: StreamRecord[] = []): void {
    const rows = streams.map((r) => StreamRecordSchema.parse(r));
    this.db
      .transaction(() => {
        const changed = this.db
          .prepare(
            `UPDATE backups SET status = 'failed', error = ?, ended_at = ? WHERE backup_id = ? AND status != 'complete'`,
          )
          .run(error, endedAt, backupId);
        if (changed.changes > 0) this.putStreams(backupId, rows);
      })
      .immediate();
  }

  /** Replaces the stream rows of a backup (inside the caller's transaction). */
  private putStreams(backupId: string, streams: StreamRecord[]): void {
    if (streams.length === 0) return;
    this.db.prepare('DELETE FROM streams WHERE backup_id = ?').run(backupId);
    const insert = this.db.prepare(
      `INSERT INTO streams (backup_id, stream, server, library, drive, tape, switches, outcome, pieces, error)
       VALUES (@backupId, @stream, @server, @library, @drive, @tape, @switches, @outcome, @pieces, @error)`,
    );
    for (const r of streams) {
      if (r.backupId !== backupId)
        throw new InvalidInputError(`stream ${r.stream} belongs to ${r.backupId}, not ${backupId}`);
      insert.run({ ...r, switches: JSON.stringify(r.switches) });
    }
  }

  /**
   * Records the backup mode of a backup's image (inside the caller's transaction). Idempotent; a
   * different one for the same backup is refused: the label is what makes the image startable.
   */
  private putBackupMode(backupId: string, mode: BackupModeRecord): void {
    this.db
      .prepare(
        `INSERT INTO backup_modes (backup_id, hook, entered_at, left_at, seconds, rounds, label, tablespace_map, start_lsn, stop_lsn)
         VALUES (@backupId, @hook, @enteredAt, @leftAt, @seconds, @rounds, @label, @tablespaceMap, @startLsn, @stopLsn)
         ON CONFLICT (backup_id) DO NOTHING`,
      )
      .run({
        backupId,
        ...mode,
        label: mode.label ?? null,
        tablespaceMap: mode.tablespaceMap ?? null,
        startLsn: mode.startLsn ?? null,
        stopLsn: mode.stopLsn ?? null,
      });
    const stored = this.backup(backupId).backupMode;
    if (JSON.stringify(stored) !== JSON.stringify(mode))
      throw new InvalidInputError(
        `catalog already holds a different backup mode for ${backupId} (${JSON.stringify(stored)}); refusing to overwrite it with ${JSON.stringify(mode)}`,
      );
  }

  /** The streams a backup reserved and what became of each, by stream number. */
  streamsOf(backupId: string): StreamRecord[] {
    return (
      this.db
        .prepare(
          `SELECT backup_id AS backupId, stream, server, library, drive, tape, switches, outcome, pieces, error
           FROM streams WHERE backup_id = ? ORDER BY stream`,
        )
        .all(backupId) as (Omit<StreamRecord, 'switches'> & { switches: string })[]
    ).map((r) => StreamRecordSchema.parse({ ...r, switches: JSON.parse(r.switches) as unknown }));
  }

  /**
   * Puts a complete backup read from cartridges into this catalog: its record, its pieces and its
   * streams, merged with what other cartridges said of the same backup. Idempotent; refuses an
   * entry that contradicts what is already recorded.
   */
  importEntry(entry: TapeCatalogEntry): void {
    const b = BackupRecordSchema.parse(entry.backup);
    const pieces = entry.pieces.map((p) => PieceRecordSchema.parse(p));
    const streams = entry.streams.map((r) => StreamRecordSchema.parse(r));
    this.db
      .transaction(() => {
        const { backupMode, fromStore, ...row } = b;
        const fresh = this.db
          .prepare(
            `INSERT INTO backups (backup_id, job, site, target, array_name, volume, status, started_at, ended_at, data_time, size_bytes, sha256, pieces, error)
           VALUES (@backupId, @job, @site, @target, @array, @volume, @status, @startedAt, @endedAt, @dataTime, @sizeBytes, @sha256, @pieces, @error)
           ON CONFLICT (backup_id) DO NOTHING`,
          )
          .run(row);
        if (fresh.changes > 0 && backupMode) this.putBackupMode(b.backupId, backupMode);
        if (fresh.changes > 0 && fromStore) this.putStoreLink(b.backupId, fromStore);
        const stored = this.backup(b.backupId);
        if (JSON.stringify(stored) !== JSON.stringify(b)) {
          throw new InvalidInputError(
            `cartridges disagree about backup ${b.backupId}: one says ${JSON.stringify(stored)}, another ${JSON.stringify(b)}`,
          );
        }
        const insert = this.db.prepare(
          `INSERT INTO pieces (backup_id, copy, piece, target, job, stream, started_at, ended_at, data_time, library, tape, position, offset, size_bytes, sha256)
         VALUES (@backupId, @copy, @piece, @target, @job, @stream, @startedAt, @endedAt, @dataTime, @library, @tape, @position, @offset, @sizeBytes, @sha256)
         ON CONFLICT (backup_id, copy, piece) DO NOTHING`,
        );
        for (const p of pieces) insert.run(p);
        if (this.streamsOf(b.backupId).length === 0) this.putStreams(b.backupId, streams);
      })
      .immediate();
  }

  /** One backup; NotFoundError naming the id and how to list the existing ones. */
  backup(backupId: string): BackupRecord {
    const row = this.db.prepare(`${SELECT_BACKUP} WHERE b.backup_id = ?`).get(backupId) as BackupRow | undefined;
    if (!row)
      throw new NotFoundError(
        `no backup "${backupId}" in the catalog; \`kura catalog list\` shows the backups there are`,
        { backupId },
      );
    return backupOfRow(row);
  }

  /** Backups, newest first. */
  listBackups(filter: BackupFilter = {}): BackupRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    for (const column of ['site', 'target', 'status'] as const) {
      if (filter[column] === undefined) continue;
      where.push(`b.${column} = ?`);
      args.push(filter[column]);
    }
    if (filter.since !== undefined) {
      where.push('b.started_at >= ?');
      args.push(filter.since);
    }
    const sql = `${SELECT_BACKUP} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY b.data_time DESC, b.backup_id LIMIT ?`;
    return (this.db.prepare(sql).all(...args, filter.limit ?? 1_000_000) as BackupRow[]).map(backupOfRow);
  }

  /**
   * Per site and target, the point in time of its newest complete backup: what a restore could
   * bring back at best, so now minus it is the target's recovery point.
   */
  lastGoodBackups(): { site: string; target: string; dataTime: string }[] {
    return this.db
      .prepare(
        `SELECT site, target, MAX(data_time) AS dataTime FROM backups WHERE status = 'complete' GROUP BY site, target ORDER BY site, target`,
      )
      .all() as { site: string; target: string; dataTime: string }[];
  }

  /** The pieces of a backup, by copy then piece. */
  piecesOf(backupId: string): PieceRecord[] {
    return this.db
      .prepare(
        `SELECT backup_id AS backupId, copy, piece, target, job, stream, started_at AS startedAt, ended_at AS endedAt,
                data_time AS dataTime, library, tape, position, offset, size_bytes AS sizeBytes, sha256
         FROM pieces WHERE backup_id = ? ORDER BY copy, piece`,
      )
      .all(backupId)
      .map((r) => PieceRecordSchema.parse(r));
  }

  /**
   * Records the store's facts of a backup kept in the store (its chunks, what it added). Idempotent;
   * called in the same transaction as completeBackup by {@link completeStoreBackup}.
   */
  completeStoreBackup(
    backupId: string,
    done: Parameters<Catalog['completeBackup']>[1],
    store: Omit<StoreBackupRecord, ChangeFacts | 'backupId' | 'verifyStatus' | 'verifiedAt' | 'verifyError'> &
      Partial<Pick<StoreBackupRecord, ChangeFacts>>,
  ): BackupRecord {
    const row = StoreBackupRecordSchema.parse({
      changedFrom: null,
      changeNote: null,
      readChunks: null,
      ...store,
      backupId,
      verifyStatus: 'unverified',
      verifiedAt: null,
      verifyError: null,
    });
    return this.db
      .transaction(() => {
        this.db
          .prepare(
            `INSERT INTO store_backups (backup_id, store, chunk_size, chunks, new_chunks, stored_bytes, read_bytes,
                                        changed_from, change_note, read_chunks)
             VALUES (@backupId, @store, @chunkSize, @chunks, @newChunks, @storedBytes, @readBytes,
                     @changedFrom, @changeNote, @readChunks)
             ON CONFLICT (backup_id) DO NOTHING`,
          )
          .run(row);
        return this.completeBackup(backupId, done);
      })
      .immediate();
  }

  /**
   * Records a store backup's whole-volume SHA-256 once a verify computed it from the chunks in order
   * (an incremental that read only its changed chunks could not); one already recorded is kept.
   * True when it was recorded now.
   */
  recordBackupSha256(backupId: string, sha256: string): boolean {
    return (
      this.db
        .prepare(`UPDATE backups SET sha256 = ? WHERE backup_id = ? AND sha256 IS NULL AND status = 'complete'`)
        .run(sha256, backupId).changes > 0
    );
  }

  /** The store's facts of a backup; undefined for a backup on tape or disk. */
  storeBackup(backupId: string): StoreBackupRecord | undefined {
    const r = this.db
      .prepare(
        `SELECT backup_id AS backupId, store, chunk_size AS chunkSize, chunks, new_chunks AS newChunks,
                stored_bytes AS storedBytes, read_bytes AS readBytes, verify_status AS verifyStatus,
                verified_at AS verifiedAt, verify_error AS verifyError, changed_from AS changedFrom,
                change_note AS changeNote, read_chunks AS readChunks
         FROM store_backups WHERE backup_id = ?`,
      )
      .get(backupId);
    return r === undefined ? undefined : StoreBackupRecordSchema.parse(r);
  }

  /** Every backup kept in the store, newest first, optionally of one site and target. */
  listStoreBackups(filter: { site?: string; target?: string } = {}): (BackupRecord & { store: StoreBackupRecord })[] {
    const ids = this.db
      .prepare(
        `SELECT s.backup_id AS id FROM store_backups s JOIN backups b ON b.backup_id = s.backup_id
         WHERE b.status = 'complete' AND (@site IS NULL OR b.site = @site) AND (@target IS NULL OR b.target = @target)
         ORDER BY b.data_time DESC, b.backup_id`,
      )
      .all({ site: filter.site ?? null, target: filter.target ?? null }) as { id: string }[];
    return ids.map(({ id }) => ({ ...this.backup(id), store: this.storeBackup(id) as StoreBackupRecord }));
  }

  /** Records the verdict of a verify of a store backup: `bad` names what was found wrong. */
  markStoreVerified(backupId: string, verdict: { good: boolean; at: string; error?: string }): void {
    const changed = this.db
      .prepare(`UPDATE store_backups SET verify_status = ?, verified_at = ?, verify_error = ? WHERE backup_id = ?`)
      .run(verdict.good ? 'good' : 'bad', verdict.at, verdict.good ? null : (verdict.error ?? 'mismatch'), backupId);
    if (changed.changes === 0)
      throw new NotFoundError(`no store backup "${backupId}" in the catalog; \`kura store list\` shows them`, {
        backupId,
      });
  }

  /**
   * Forgets a pruned store backup: its record, its piece and its store row go in one transaction,
   * so the catalog never offers a backup whose index is gone. Idempotent.
   */
  forgetStoreBackup(backupId: string): void {
    this.db
      .transaction(() => {
        if (this.storeBackup(backupId) === undefined) return;
        for (const table of ['store_backups', 'pieces', 'streams', 'backup_modes', 'backups'])
          this.db.prepare(`DELETE FROM ${table} WHERE backup_id = ?`).run(backupId);
      })
      .immediate();
  }

  /** Records a whole-VM image (idempotent: a retried record of the same instant keeps the first). */
  recordVmImage(rec: VmImageRecord): void {
    const r = VmImageRecordSchema.parse(rec);
    this.db
      .prepare(
        `INSERT INTO vm_images (site, vm, data_time, software_backup_id, data_backup_id, definition_backup_id,
           definition_sha256, consistency, frozen_ms, recorded_at)
         VALUES (@site, @vm, @dataTime, @softwareBackupId, @dataBackupId, @definitionBackupId, @definitionSha256,
           @consistency, @frozenMs, @recordedAt)
         ON CONFLICT (site, vm, data_time) DO NOTHING`,
      )
      .run(r);
  }

  /** A VM's whole images, newest first; with `dataTime`, only the image of that instant. */
  vmImages(site: string, vm: string, dataTime?: string): VmImageRecord[] {
    const rows = this.db
      .prepare(
        `SELECT site, vm, data_time AS dataTime, software_backup_id AS softwareBackupId, data_backup_id AS dataBackupId,
                definition_backup_id AS definitionBackupId, definition_sha256 AS definitionSha256, consistency,
                frozen_ms AS frozenMs, recorded_at AS recordedAt
         FROM vm_images WHERE site = @site AND vm = @vm AND (@dataTime IS NULL OR data_time = @dataTime)
         ORDER BY data_time DESC`,
      )
      .all({ site, vm, dataTime: dataTime ?? null });
    return rows.map((r) => VmImageRecordSchema.parse(r));
  }

  /** Forgets the whole images that name a store backup (it was pruned); returns them. Idempotent. */
  forgetVmImagesOf(backupId: string): VmImageRecord[] {
    return this.db
      .transaction(() => {
        const rows = this.db
          .prepare(
            `SELECT site, vm, data_time AS dataTime, software_backup_id AS softwareBackupId, data_backup_id AS dataBackupId,
                    definition_backup_id AS definitionBackupId, definition_sha256 AS definitionSha256, consistency,
                    frozen_ms AS frozenMs, recorded_at AS recordedAt
             FROM vm_images WHERE software_backup_id = @id OR data_backup_id = @id`,
          )
          .all({ id: backupId })
          .map((r) => VmImageRecordSchema.parse(r));
        this.db
          .prepare(`DELETE FROM vm_images WHERE software_backup_id = @id OR data_backup_id = @id`)
          .run({ id: backupId });
        return rows;
      })
      .immediate();
  }

  /**
   * Records an event of the feed; idempotent by its key (a retried activity publishes once). Returns
   * the event as the feed holds it, and whether this call recorded it.
   */
  recordEvent(e: NewEvent): { event: FeedEvent; recorded: boolean } {
    const ev = NewEventSchema.parse(e);
    const out = this.db
      .prepare(
        `INSERT INTO events (key, at, kind, subject, site, type, device, job, detail)
         VALUES (@key, @at, @kind, @subject, @site, @type, @device, @job, @detail) ON CONFLICT (key) DO NOTHING`,
      )
      .run({
        ...ev,
        site: ev.site ?? null,
        type: ev.type ?? null,
        device: ev.device ?? null,
        job: ev.job ?? null,
        detail: JSON.stringify(ev.detail),
      });
    const row = this.db.prepare(`${SELECT_EVENT} WHERE key = ?`).get(ev.key) as EventRow;
    return { event: eventOfRow(row), recorded: out.changes > 0 };
  }

  /** Events of the feed after `after` (a seq), oldest first; the last `limit` of them when no `after` is given. */
  events(o: { after?: number; limit?: number } = {}): FeedEvent[] {
    const limit = o.limit ?? 100;
    const rows =
      o.after === undefined
        ? (this.db.prepare(`${SELECT_EVENT} ORDER BY seq DESC LIMIT ?`).all(limit) as EventRow[]).reverse()
        : (this.db.prepare(`${SELECT_EVENT} WHERE seq > ? ORDER BY seq LIMIT ?`).all(o.after, limit) as EventRow[]);
    return rows.map(eventOfRow);
  }

  close(): void {
    this.db.close();
  }
}

const SELECT_EVENT = 'SELECT seq, at, kind, subject, site, type, device, job, detail FROM events';

type EventRow = Record<string, unknown> & { detail: string };

function eventOfRow(row: EventRow): FeedEvent {
  return FeedEventSchema.parse({ ...row, detail: JSON.parse(row.detail) as unknown });
}

// A backup's record with its backup mode, when one was recorded (`m_` columns all null otherwise).
const SELECT_BACKUP = `SELECT b.backup_id AS backupId, b.job, b.site, b.target, b.array_name AS array, b.volume, b.status,
  b.started_at AS startedAt, b.ended_at AS endedAt, b.data_time AS dataTime, b.size_bytes AS sizeBytes, b.sha256, b.pieces,
  b.error, m.hook AS m_hook, m.entered_at AS m_enteredAt, m.left_at AS m_leftAt, m.seconds AS m_seconds,
  m.rounds AS m_rounds, m.label AS m_label, m.tablespace_map AS m_tablespaceMap, m.start_lsn AS m_startLsn,
  m.stop_lsn AS m_stopLsn, t.store_backup_id AS t_backupId, t.store_sha256 AS t_sha256
  FROM backups b LEFT JOIN backup_modes m ON m.backup_id = b.backup_id
  LEFT JOIN store_tape_copies t ON t.backup_id = b.backup_id`;

type BackupRow = Record<string, unknown> & {
  m_hook: string | null;
  t_backupId: string | null;
  t_sha256: string | null;
};

/**
 * A row of SELECT_BACKUP as a record; optional fields of the backup mode that were null are left
 * out, and so is the store link of a backup that is no tape copy of a store backup.
 */
function backupOfRow(row: BackupRow): BackupRecord {
  const plain: Record<string, unknown> = {};
  const mode: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (k.startsWith('t_')) continue;
    if (!k.startsWith('m_')) plain[k] = v;
    else if (v !== null) mode[k.slice(2)] = v;
  }
  if (row.m_hook !== null) plain.backupMode = mode;
  if (row.t_backupId !== null) plain.fromStore = { backupId: row.t_backupId, sha256: row.t_sha256 };
  return BackupRecordSchema.parse(plain);
}
