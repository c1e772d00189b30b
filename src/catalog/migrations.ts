/**
 * Schema migrations of the catalog database, applied in order and tracked by PRAGMA user_version.
 * Never edit a released migration; add the next one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: backups and their pieces (seed 004 storage catalog 460, one row per piece).
  `
  CREATE TABLE backups (
    backup_id   TEXT PRIMARY KEY,
    job         TEXT NOT NULL,
    site        TEXT NOT NULL,
    target      TEXT NOT NULL,
    array_name  TEXT NOT NULL,
    volume      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    data_time   TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    sha256      TEXT,
    pieces      INTEGER NOT NULL DEFAULT 0,
    error       TEXT
  );
  CREATE INDEX backups_by_target ON backups (site, target, data_time);
  CREATE TABLE pieces (
    backup_id   TEXT NOT NULL REFERENCES backups (backup_id),
    copy        INTEGER NOT NULL,
    piece       INTEGER NOT NULL,
    target      TEXT NOT NULL,
    job         TEXT NOT NULL,
    stream      INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT NOT NULL,
    data_time   TEXT NOT NULL,
    library     TEXT NOT NULL,
    tape        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    PRIMARY KEY (backup_id, copy, piece)
  );
  CREATE INDEX pieces_by_tape ON pieces (library, tape, position);
  `,
  // 2: the streams of each backup (seed 004 tables 420–470 per job) and what became of each.
  `
  CREATE TABLE streams (
    backup_id   TEXT NOT NULL REFERENCES backups (backup_id),
    stream      INTEGER NOT NULL,
    server      TEXT NOT NULL,
    library     TEXT NOT NULL,
    drive       TEXT NOT NULL,
    tape        TEXT NOT NULL,
    switches    TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('complete', 'failed', 'standby')),
    pieces      INTEGER NOT NULL,
    error       TEXT,
    PRIMARY KEY (backup_id, stream)
  );
  `,
  // 3: the application's backup mode around a backup's image (seed 003; ADR 023): for PostgreSQL
  // the backup label, tablespace map and WAL positions a restored copy needs to start.
  `
  CREATE TABLE backup_modes (
    backup_id      TEXT PRIMARY KEY REFERENCES backups (backup_id),
    hook           TEXT NOT NULL,
    entered_at     TEXT NOT NULL,
    left_at        TEXT NOT NULL,
    seconds        REAL NOT NULL,
    rounds         INTEGER NOT NULL,
    label          TEXT,
    tablespace_map TEXT,
    start_lsn      TEXT,
    stop_lsn       TEXT
  );
  `,
  // 4: backups kept in the deduplicated store (seed 000; docs/adr/032), beside the tape backups:
  // the store's own facts of each (its index lives in the store) and the verdict of the last verify.
  `
  CREATE TABLE store_backups (
    backup_id     TEXT PRIMARY KEY REFERENCES backups (backup_id),
    store         TEXT NOT NULL,
    chunk_size    INTEGER NOT NULL,
    chunks        INTEGER NOT NULL,
    new_chunks    INTEGER NOT NULL,
    stored_bytes  INTEGER NOT NULL,
    read_bytes    INTEGER NOT NULL,
    verify_status TEXT NOT NULL DEFAULT 'unverified' CHECK (verify_status IN ('unverified', 'good', 'bad')),
    verified_at   TEXT,
    verify_error  TEXT
  );
  `,
  // 5: the events feed (seed 003's central console; ADR 031): every device fault and job failure,
  // numbered in order; the key makes a retried publication of one event a no-op.
  `
  CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    key      TEXT NOT NULL UNIQUE,
    at       TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('device-fault', 'job-failure')),
    subject  TEXT NOT NULL,
    site     TEXT,
    type     TEXT,
    device   TEXT,
    job      TEXT,
    detail   TEXT NOT NULL
  );
  `,
  // 6: restore drills (seed 000; docs/adr/035): one row per target a drill restored into an
  // isolated lab host, with its recovery time and outcome; and the copy's lag as each nightly
  // report measured it, so the report can plot it over time.
  `
  CREATE TABLE drills (
    drill_id    TEXT NOT NULL,
    target      TEXT NOT NULL,
    class       TEXT NOT NULL,
    site        TEXT NOT NULL,
    backup_id   TEXT,
    store       TEXT,
    host        TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT NOT NULL,
    rto_ms      INTEGER,
    outcome     TEXT NOT NULL CHECK (outcome IN ('healthy', 'failed')),
    error_type  TEXT,
    error       TEXT,
    PRIMARY KEY (drill_id, target)
  );
  CREATE INDEX drills_by_time ON drills (started_at);
  CREATE TABLE store_lag_samples (
    at          TEXT PRIMARY KEY,
    lag_ms      INTEGER NOT NULL,
    behind      INTEGER NOT NULL,
    max_lag_ms  INTEGER NOT NULL
  );
  `,
  // 7: whole-VM images (seed 000; docs/adr/037): the two volume backups of one instant, the store
  // backup holding the VM's definition with its digest, and how the instant was kept (a snapshot
  // taken while the guest was frozen, or the guest frozen for the whole read).
  `
  CREATE TABLE vm_images (
    site                  TEXT NOT NULL,
    vm                    TEXT NOT NULL,
    data_time             TEXT NOT NULL,
    software_backup_id    TEXT NOT NULL,
    data_backup_id        TEXT NOT NULL,
    definition_backup_id  TEXT,
    definition_sha256     TEXT,
    consistency           TEXT NOT NULL CHECK (consistency IN ('snapshot', 'frozen')),
    frozen_ms             INTEGER NOT NULL,
    recorded_at           TEXT NOT NULL,
    PRIMARY KEY (site, vm, data_time)
  );
  `,
  // 8: how each store backup found its changed chunks (docs/adr/036, 043): `bitmap`, `digests` or
  // `full`, why in words, and the chunks it read; null for rows written before they were kept.
  `
  ALTER TABLE store_backups ADD COLUMN changed_from TEXT CHECK (changed_from IN ('bitmap', 'digests', 'full'));
  ALTER TABLE store_backups ADD COLUMN change_note TEXT;
  ALTER TABLE store_backups ADD COLUMN read_chunks INTEGER;
  `,
  // 9: tape copies of store backups (docs/adr/042): which store backup a tape backup was read from,
  // and that backup's whole-volume SHA-256 when the store knew it.
  `
  CREATE TABLE store_tape_copies (
    backup_id        TEXT PRIMARY KEY REFERENCES backups (backup_id),
    store_backup_id  TEXT NOT NULL,
    store_sha256     TEXT
  );
  CREATE INDEX store_tape_copies_by_store_backup ON store_tape_copies (store_backup_id);
  `,
];
