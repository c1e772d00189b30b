/**
 * The catalog's record of restore drills and of the copy's lag over time (docs/adr/035), on the
 * catalog's own database file: a drill's row per target is written once (a retried activity
 * changes nothing), and read back newest first for `kura drill show` and the estate report.
 */
import type Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations';
import { openDatabase } from '../stack/sqlite';
import { DrillRecordSchema, type DrillRecord } from '../domain/drill';

/** One measurement of the copy's lag behind the first store. */
export interface LagSample {
  at: string;
  lagMs: number;
  behind: number;
  maxLagMs: number;
}

export class DrillLog {
  private readonly db: Database.Database;

  /** Opens (creating and migrating when needed) the catalog at `file`. */
  constructor(readonly file: string) {
    this.db = openDatabase(file, MIGRATIONS, { foreignKeys: true });
  }

  /** Records one target of a drill. Idempotent: the first record of a drill's target stands. */
  record(r: DrillRecord): void {
    const row = DrillRecordSchema.parse(r);
    this.db
      .prepare(
        `INSERT INTO drills (drill_id, target, class, site, backup_id, store, host, started_at, ended_at, rto_ms, outcome, error_type, error)
         VALUES (@drillId, @target, @className, @site, @backupId, @store, @host, @startedAt, @endedAt, @rtoMs, @outcome, @errorType, @error)
         ON CONFLICT (drill_id, target) DO NOTHING`,
      )
      .run(row);
  }

  /** Drills' targets, newest drill first: of one drill, or the last `limit` rows. */
  list(filter: { drillId?: string; limit?: number } = {}): DrillRecord[] {
    const rows = this.db
      .prepare(
        `SELECT drill_id AS drillId, target, class AS className, site, backup_id AS backupId, store, host,
                started_at AS startedAt, ended_at AS endedAt, rto_ms AS rtoMs, outcome, error_type AS errorType, error
         FROM drills WHERE (@drill IS NULL OR drill_id = @drill)
         ORDER BY started_at DESC, drill_id, target LIMIT @limit`,
      )
      .all({ drill: filter.drillId ?? null, limit: filter.limit ?? 1000 });
    return rows.map((r) => DrillRecordSchema.parse(r));
  }

  /** Records the copy's lag as measured at `at`; a second sample at the same instant is ignored. */
  recordLag(s: LagSample): void {
    this.db
      .prepare(
        `INSERT INTO store_lag_samples (at, lag_ms, behind, max_lag_ms) VALUES (@at, @lagMs, @behind, @maxLagMs)
         ON CONFLICT (at) DO NOTHING`,
      )
      .run(s);
  }

  /** The copy's lag samples, oldest first. */
  lagSamples(limit = 400): LagSample[] {
    return (
      this.db
        .prepare(
          `SELECT at, lag_ms AS lagMs, behind, max_lag_ms AS maxLagMs FROM store_lag_samples ORDER BY at DESC LIMIT ?`,
        )
        .all(limit) as LagSample[]
    ).reverse();
  }

  close(): void {
    this.db.close();
  }
}
