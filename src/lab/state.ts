/**
 * The lab's mutable state — injected faults, which cartridge sits in which drive, the VMs' health
 * (faults and their cure depth, restarts in progress), the arrays' pairs and snapshots, and an
 * event log — kept in one SQLite file that the CLI, workers and tests may open at the same time.
 */
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { openDatabase } from '../stack/sqlite';
import { InvalidInputError } from '../domain/errors';
import { FaultAfterSchema, FaultSchema, FaultSpecSchema, type Fault, type FaultSpecInput } from '../domain/faults';
import { CureDepthSchema, type CureDepth } from '../domain/ladder';

/** One line of the lab's event log. */
export const LabEventSchema = z.object({
  /** Increasing with every event; pass the last one seen as `since` to read only newer ones. */
  seq: z.number().int().min(1),
  at: z.iso.datetime(),
  device: z.string(),
  event: z.string(),
  detail: z.record(z.string(), z.unknown()),
});
export type LabEvent = z.infer<typeof LabEventSchema>;

export interface EventFilter {
  device?: string;
  event?: string;
  /** Only events with a `seq` greater than this. */
  since?: number;
}

/**
 * Schema versions, applied in order. Each entry moves the file from version `index` to
 * `index + 1`; never edit a shipped entry, append a new one.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE faults (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     device TEXT NOT NULL,
     kind TEXT NOT NULL,
     after_json TEXT NOT NULL,
     rate INTEGER,
     once INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     triggered INTEGER NOT NULL DEFAULT 0
   );
   CREATE INDEX faults_device ON faults(device);
   CREATE TABLE events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     at TEXT NOT NULL,
     device TEXT NOT NULL,
     event TEXT NOT NULL,
     detail_json TEXT NOT NULL
   );
   CREATE INDEX events_device ON events(device, seq);
   CREATE TABLE drives (
     site TEXT NOT NULL,
     drive TEXT NOT NULL,
     tape TEXT NOT NULL,
     PRIMARY KEY (site, drive)
   );`,
  // 2: VM power states (absent = running) and the FC zones set on the lab's switches.
  `CREATE TABLE vms (
     site TEXT NOT NULL,
     vm TEXT NOT NULL,
     state TEXT NOT NULL,
     PRIMARY KEY (site, vm)
   );
   CREATE TABLE zones (
     site TEXT NOT NULL,
     name TEXT NOT NULL,
     members_json TEXT NOT NULL,
     PRIMARY KEY (site, name)
   );`,
  // 3: the two-volume VMs' health model: an injected fault and the depth that cures it, when a
  // restart in progress ends, the host a rebuilt VM moved to, and the requests already carried out
  // (so a retried restart, swap or rebuild is not performed twice).
  `CREATE TABLE vm_faults (
     site TEXT NOT NULL,
     vm TEXT NOT NULL,
     cured_by TEXT NOT NULL,
     injected_at TEXT NOT NULL,
     PRIMARY KEY (site, vm)
   );
   CREATE TABLE vm_runtime (
     site TEXT NOT NULL,
     vm TEXT NOT NULL,
     busy_until TEXT,
     host TEXT,
     PRIMARY KEY (site, vm)
   );
   CREATE TABLE vm_requests (
     request TEXT PRIMARY KEY,
     site TEXT NOT NULL,
     vm TEXT NOT NULL,
     action TEXT NOT NULL,
     at TEXT NOT NULL,
     result_json TEXT NOT NULL
   );`,
  // 4: the arrays' function software (seed 003): volume pairs with the progress of their copy and
  // the digest of every chunk of the replica, and snapshots with the file that holds each.
  `CREATE TABLE pairs (
     site TEXT NOT NULL,
     array TEXT NOT NULL,
     volume TEXT NOT NULL,
     replica TEXT NOT NULL,
     state TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     copied_bytes INTEGER NOT NULL,
     total_bytes INTEGER NOT NULL,
     phase_started_at TEXT NOT NULL,
     split_at TEXT,
     todo_json TEXT NOT NULL,
     digests_json TEXT NOT NULL,
     PRIMARY KEY (site, array, volume)
   );
   CREATE TABLE snapshots (
     site TEXT NOT NULL,
     array TEXT NOT NULL,
     volume TEXT NOT NULL,
     name TEXT NOT NULL,
     created_at TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     file TEXT NOT NULL,
     PRIMARY KEY (site, array, volume, name)
   );`,
  // 5: the guests' file-system freeze (the lab's stand-in for a guest agent's fsfreeze): a freeze in
  // force until a bounded instant, and the guest writes in flight, which a freeze waits to drain;
  // and the VMs the hypervisor recreated from an image's definition, which kura.yaml may not name.
  `CREATE TABLE guest_freezes (
     site TEXT NOT NULL,
     vm TEXT NOT NULL,
     frozen_until TEXT,
     inflight INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (site, vm)
   );
   CREATE TABLE defined_vms (
     site TEXT NOT NULL,
     vm TEXT NOT NULL,
     definition_json TEXT NOT NULL,
     PRIMARY KEY (site, vm)
   );`,
];

/** A pair as the lab keeps it: the copy's progress, the chunks still to copy, each replica chunk's digest. */
export const LabPairSchema = z.object({
  site: z.string(),
  array: z.string(),
  volume: z.string(),
  replica: z.string(),
  state: z.enum(['copying', 'in-sync', 'split', 'resyncing']),
  sizeBytes: z.number().int().min(0),
  copiedBytes: z.number().int().min(0),
  totalBytes: z.number().int().min(0),
  /** When the current copy (full or resync) began; the background copy's rate counts from here. */
  phaseStartedAt: z.string(),
  splitAt: z.string().nullable(),
  /** Chunk numbers the current copy still has to move, in order. */
  todo: z.array(z.number().int().min(0)),
  /** SHA-256 of each replica chunk as last written (empty string: never written). */
  digests: z.array(z.string()),
});
export type LabPair = z.infer<typeof LabPairSchema>;

export const LabSnapshotSchema = z.object({
  site: z.string(),
  array: z.string(),
  volume: z.string(),
  name: z.string(),
  createdAt: z.string(),
  sizeBytes: z.number().int().min(0),
  file: z.string(),
});
export type LabSnapshot = z.infer<typeof LabSnapshotSchema>;

interface PairRow {
  site: string;
  array: string;
  volume: string;
  replica: string;
  state: string;
  size_bytes: number;
  copied_bytes: number;
  total_bytes: number;
  phase_started_at: string;
  split_at: string | null;
  todo_json: string;
  digests_json: string;
}

interface SnapshotRow {
  site: string;
  array: string;
  volume: string;
  name: string;
  created_at: string;
  size_bytes: number;
  file: string;
}

interface FaultRow {
  id: number;
  device: string;
  kind: string;
  after_json: string;
  rate: number | null;
  once: number;
  created_at: string;
  triggered: number;
}

interface EventRow {
  seq: number;
  at: string;
  device: string;
  event: string;
  detail_json: string;
}

/** The lab state database. Open one per process; SQLite's WAL lets the processes share it. */
export class LabState {
  private readonly db: Database.Database;

  /** Opens (creating if needed) the state file, and brings its schema up to date. */
  constructor(readonly file: string) {
    // NORMAL: lab state is a simulation's bookkeeping; losing its last commit on power loss is fine.
    this.db = openDatabase(file, MIGRATIONS, { busyTimeoutMs: 5000, synchronous: 'NORMAL' });
  }

  /** Records a fault to inject and returns it with its id. */
  addFault(spec: FaultSpecInput): Fault {
    const parsed = FaultSpecSchema.safeParse(spec);
    if (!parsed.success) {
      throw new InvalidInputError(
        `the fault to add is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'fault'}: ${i.message}`).join('; ')}`,
      );
    }
    const f = parsed.data;
    const info = this.db
      .prepare(
        'INSERT INTO faults (device, kind, after_json, rate, once, created_at, triggered) VALUES (?, ?, ?, ?, ?, ?, 0)',
      )
      .run(
        f.device,
        f.kind,
        JSON.stringify(f.after),
        f.rateBytesPerSec ?? null,
        f.once ? 1 : 0,
        new Date().toISOString(),
      );
    const row = this.db.prepare('SELECT * FROM faults WHERE id = ?').get(info.lastInsertRowid) as FaultRow;
    return this.toFault(row);
  }

  /** Every fault, oldest first. */
  listFaults(): Fault[] {
    return (this.db.prepare('SELECT * FROM faults ORDER BY id').all() as FaultRow[]).map((r) => this.toFault(r));
  }

  /** Removes the faults of one device, or all faults; returns how many were removed. */
  clearFaults(device?: string): number {
    const info =
      device === undefined
        ? this.db.prepare('DELETE FROM faults').run()
        : this.db.prepare('DELETE FROM faults WHERE device = ?').run(device);
    return info.changes;
  }

  /** The faults that apply to any of these devices, oldest first. */
  faultsFor(devices: string[]): Fault[] {
    if (devices.length === 0) return [];
    const marks = devices.map(() => '?').join(', ');
    const rows = this.db
      .prepare(`SELECT * FROM faults WHERE device IN (${marks}) ORDER BY id`)
      .all(...devices) as FaultRow[];
    return rows.map((r) => this.toFault(r));
  }

  /**
   * Counts one firing of a fault; a `once` fault is removed instead, so the next attempt passes.
   * Returns false when the fault no longer exists (cleared meanwhile, or consumed by another copy).
   */
  markTriggered(id: number): boolean {
    const mark = this.db.transaction((faultId: number) => {
      const row = this.db.prepare('SELECT once FROM faults WHERE id = ?').get(faultId) as { once: number } | undefined;
      if (row === undefined) return false;
      if (row.once) this.db.prepare('DELETE FROM faults WHERE id = ?').run(faultId);
      else this.db.prepare('UPDATE faults SET triggered = triggered + 1 WHERE id = ?').run(faultId);
      return true;
    });
    return mark.immediate(id);
  }

  /** Appends an event to the lab's log. */
  recordEvent(device: string, event: string, detail: Record<string, unknown> = {}): void {
    this.db
      .prepare('INSERT INTO events (at, device, event, detail_json) VALUES (?, ?, ?, ?)')
      .run(new Date().toISOString(), device, event, JSON.stringify(detail));
  }

  /** Events in the order they happened, optionally only of one device, one kind, or after a seq. */
  events(filter: EventFilter = {}): LabEvent[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.device !== undefined) {
      where.push('device = ?');
      args.push(filter.device);
    }
    if (filter.event !== undefined) {
      where.push('event = ?');
      args.push(filter.event);
    }
    if (filter.since !== undefined) {
      where.push('seq > ?');
      args.push(filter.since);
    }
    const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq`;
    return (this.db.prepare(sql).all(...args) as EventRow[]).map((r) =>
      this.checked(
        LabEventSchema,
        { seq: r.seq, at: r.at, device: r.device, event: r.event, detail: JSON.parse(r.detail_json) as unknown },
        `event ${r.seq}`,
      ),
    );
  }

  /** The cartridge loaded in a drive, or null when the drive is empty. */
  driveContents(site: string, drive: string): string | null {
    const row = this.db.prepare('SELECT tape FROM drives WHERE site = ? AND drive = ?').get(site, drive) as
      { tape: unknown } | undefined;
    return row === undefined ? null : this.checked(z.string(), row.tape, `drive ${site}/${drive}`);
  }

  /** Records that a drive now holds a cartridge (or nothing). */
  setDriveContents(site: string, drive: string, tape: string | null): void {
    if (tape === null) this.db.prepare('DELETE FROM drives WHERE site = ? AND drive = ?').run(site, drive);
    else
      this.db
        .prepare(
          'INSERT INTO drives (site, drive, tape) VALUES (?, ?, ?) ON CONFLICT (site, drive) DO UPDATE SET tape = excluded.tape',
        )
        .run(site, drive, tape);
  }

  /** A VM's power state; a VM never touched is running. */
  vmState(site: string, vm: string): 'running' | 'stopped' {
    const row = this.db.prepare('SELECT state FROM vms WHERE site = ? AND vm = ?').get(site, vm) as
      { state: unknown } | undefined;
    return row === undefined ? 'running' : this.checked(z.enum(['running', 'stopped']), row.state, `VM ${site}/${vm}`);
  }

  setVmState(site: string, vm: string, state: 'running' | 'stopped'): void {
    this.db
      .prepare(
        'INSERT INTO vms (site, vm, state) VALUES (?, ?, ?) ON CONFLICT (site, vm) DO UPDATE SET state = excluded.state',
      )
      .run(site, vm, state);
  }

  /** The fault a VM carries and the depth that cures it, or null when it has none. */
  vmFault(site: string, vm: string): { curedBy: CureDepth; injectedAt: string } | null {
    const row = this.db
      .prepare('SELECT cured_by, injected_at FROM vm_faults WHERE site = ? AND vm = ?')
      .get(site, vm) as { cured_by: unknown; injected_at: unknown } | undefined;
    if (row === undefined) return null;
    return {
      curedBy: this.checked(CureDepthSchema, row.cured_by, `VM fault of ${site}/${vm}`),
      injectedAt: this.checked(z.string(), row.injected_at, `VM fault of ${site}/${vm}`),
    };
  }

  /** Gives a VM a fault (replacing any it had) that only an action of depth `curedBy` or wider cures. */
  setVmFault(site: string, vm: string, curedBy: CureDepth): void {
    this.db
      .prepare(
        'INSERT INTO vm_faults (site, vm, cured_by, injected_at) VALUES (?, ?, ?, ?) ON CONFLICT (site, vm) DO UPDATE SET cured_by = excluded.cured_by, injected_at = excluded.injected_at',
      )
      .run(site, vm, this.checked(CureDepthSchema, curedBy, 'cure depth'), new Date().toISOString());
  }

  /** Removes a VM's fault; returns whether it had one. */
  clearVmFault(site: string, vm: string): boolean {
    return this.db.prepare('DELETE FROM vm_faults WHERE site = ? AND vm = ?').run(site, vm).changes > 0;
  }

  /** When a VM's restart in progress ends (null when none is), and the host it was moved to by a rebuild. */
  vmRuntime(site: string, vm: string): { busyUntil: string | null; host: string | null } {
    const row = this.db.prepare('SELECT busy_until, host FROM vm_runtime WHERE site = ? AND vm = ?').get(site, vm) as
      { busy_until: unknown; host: unknown } | undefined;
    if (row === undefined) return { busyUntil: null, host: null };
    return {
      busyUntil: this.checked(z.string().nullable(), row.busy_until, `VM runtime of ${site}/${vm}`),
      host: this.checked(z.string().nullable(), row.host, `VM runtime of ${site}/${vm}`),
    };
  }

  /** Changes a VM's runtime record; fields left out keep their value. */
  setVmRuntime(site: string, vm: string, change: { busyUntil?: string | null; host?: string | null }): void {
    const cur = this.vmRuntime(site, vm);
    this.db
      .prepare(
        'INSERT INTO vm_runtime (site, vm, busy_until, host) VALUES (?, ?, ?, ?) ON CONFLICT (site, vm) DO UPDATE SET busy_until = excluded.busy_until, host = excluded.host',
      )
      .run(
        site,
        vm,
        change.busyUntil === undefined ? cur.busyUntil : change.busyUntil,
        change.host === undefined ? cur.host : change.host,
      );
  }

  /**
   * Carries out a VM request once: `perform` runs inside one write transaction with the record of
   * the request, so a retried request (same id) returns the first result and changes nothing.
   */
  vmRequestOnce<T>(
    request: string,
    site: string,
    vm: string,
    action: string,
    perform: () => T,
  ): { result: T; repeated: boolean } {
    const run = this.db.transaction((): { result: T; repeated: boolean } => {
      const row = this.db.prepare('SELECT result_json FROM vm_requests WHERE request = ?').get(request) as
        { result_json: string } | undefined;
      if (row !== undefined) return { result: JSON.parse(row.result_json) as T, repeated: true };
      const result = perform();
      this.db
        .prepare('INSERT INTO vm_requests (request, site, vm, action, at, result_json) VALUES (?, ?, ?, ?, ?, ?)')
        .run(request, site, vm, action, new Date().toISOString(), JSON.stringify(result ?? null));
      return { result, repeated: false };
    });
    return run.immediate();
  }

  /** Whether a VM request was already carried out. */
  vmRequestDone(request: string): boolean {
    return this.db.prepare('SELECT 1 FROM vm_requests WHERE request = ?').get(request) !== undefined;
  }

  /** The zones set on a site's switches, by name. */
  zones(site: string): { name: string; members: string[] }[] {
    const rows = this.db.prepare('SELECT name, members_json FROM zones WHERE site = ? ORDER BY name').all(site) as {
      name: unknown;
      members_json: unknown;
    }[];
    return rows.map((r) => ({
      name: this.checked(z.string(), r.name, `zone of ${site}`),
      members: this.checked(
        z.array(z.string()),
        JSON.parse(this.checked(z.string(), r.members_json, `zone of ${site}`)),
        `zone ${String(r.name)}`,
      ),
    }));
  }

  /** Sets a zone (replacing one of the same name); idempotent. */
  setZone(site: string, name: string, members: string[]): void {
    this.db
      .prepare(
        'INSERT INTO zones (site, name, members_json) VALUES (?, ?, ?) ON CONFLICT (site, name) DO UPDATE SET members_json = excluded.members_json',
      )
      .run(site, name, JSON.stringify(members));
  }

  /** Removes a zone; removing one that is not there is fine. Returns whether it existed. */
  deleteZone(site: string, name: string): boolean {
    return this.db.prepare('DELETE FROM zones WHERE site = ? AND name = ?').run(site, name).changes > 0;
  }

  /** The drive of a site holding a cartridge, or null when the cartridge sits in its slot. */
  driveHolding(site: string, tape: string): string | null {
    const row = this.db.prepare('SELECT drive FROM drives WHERE site = ? AND tape = ?').get(site, tape) as
      { drive: unknown } | undefined;
    return row === undefined ? null : this.checked(z.string(), row.drive, `tape ${site}/${tape}`);
  }

  /** Empties every drive of every site (used when the lab's cartridges are created afresh). */
  clearDrives(): number {
    return this.db.prepare('DELETE FROM drives').run().changes;
  }

  /** The pair of a volume, or undefined when it has none. */
  pair(site: string, array: string, volume: string): LabPair | undefined {
    const row = this.db
      .prepare('SELECT * FROM pairs WHERE site = ? AND array = ? AND volume = ?')
      .get(site, array, volume) as PairRow | undefined;
    return row === undefined ? undefined : this.toPair(row);
  }

  /** Every pair of an array (every array of the site when `array` is omitted), by volume. */
  pairs(site: string, array?: string): LabPair[] {
    const rows = (
      array === undefined
        ? this.db.prepare('SELECT * FROM pairs WHERE site = ? ORDER BY array, volume').all(site)
        : this.db.prepare('SELECT * FROM pairs WHERE site = ? AND array = ? ORDER BY volume').all(site, array)
    ) as PairRow[];
    return rows.map((r) => this.toPair(r));
  }

  /** Creates or replaces a pair's record. */
  putPair(p: LabPair): void {
    const v = this.checked(LabPairSchema, p, `pair ${p.site}/${p.array}/${p.volume}`);
    this.db
      .prepare(
        `INSERT INTO pairs (site, array, volume, replica, state, size_bytes, copied_bytes, total_bytes, phase_started_at, split_at, todo_json, digests_json)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (site, array, volume) DO UPDATE SET replica = excluded.replica, state = excluded.state,
           size_bytes = excluded.size_bytes, copied_bytes = excluded.copied_bytes, total_bytes = excluded.total_bytes,
           phase_started_at = excluded.phase_started_at, split_at = excluded.split_at, todo_json = excluded.todo_json,
           digests_json = excluded.digests_json`,
      )
      .run(
        v.site,
        v.array,
        v.volume,
        v.replica,
        v.state,
        v.sizeBytes,
        v.copiedBytes,
        v.totalBytes,
        v.phaseStartedAt,
        v.splitAt,
        JSON.stringify(v.todo),
        JSON.stringify(v.digests),
      );
  }

  /** Removes a pair's record; returns whether it existed. */
  deletePair(site: string, array: string, volume: string): boolean {
    return (
      this.db.prepare('DELETE FROM pairs WHERE site = ? AND array = ? AND volume = ?').run(site, array, volume)
        .changes > 0
    );
  }

  /** One snapshot, or undefined. */
  snapshot(site: string, array: string, volume: string, name: string): LabSnapshot | undefined {
    const row = this.db
      .prepare('SELECT * FROM snapshots WHERE site = ? AND array = ? AND volume = ? AND name = ?')
      .get(site, array, volume, name) as SnapshotRow | undefined;
    return row === undefined ? undefined : this.toSnapshot(row);
  }

  /** Every snapshot of an array (every array of the site when `array` is omitted), oldest first. */
  snapshots(site: string, array?: string): LabSnapshot[] {
    const rows = (
      array === undefined
        ? this.db.prepare('SELECT * FROM snapshots WHERE site = ? ORDER BY created_at, volume, name').all(site)
        : this.db
            .prepare('SELECT * FROM snapshots WHERE site = ? AND array = ? ORDER BY created_at, volume, name')
            .all(site, array)
    ) as SnapshotRow[];
    return rows.map((r) => this.toSnapshot(r));
  }

  putSnapshot(s: LabSnapshot): void {
    const v = this.checked(LabSnapshotSchema, s, `snapshot ${s.site}/${s.array}/${s.volume}@${s.name}`);
    this.db
      .prepare(
        `INSERT INTO snapshots (site, array, volume, name, created_at, size_bytes, file) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (site, array, volume, name) DO UPDATE SET created_at = excluded.created_at,
           size_bytes = excluded.size_bytes, file = excluded.file`,
      )
      .run(v.site, v.array, v.volume, v.name, v.createdAt, v.sizeBytes, v.file);
  }

  deleteSnapshot(site: string, array: string, volume: string, name: string): boolean {
    return (
      this.db
        .prepare('DELETE FROM snapshots WHERE site = ? AND array = ? AND volume = ? AND name = ?')
        .run(site, array, volume, name).changes > 0
    );
  }

  /**
   * A guest write begins, unless the guest's file systems are frozen: then nothing is counted and
   * false is returned (the writer waits, as a write to a frozen file system blocks). One immediate
   * transaction, so a freeze and a write never both pass each other.
   */
  guestBeginWrite(site: string, vm: string, now = new Date()): boolean {
    const begin = this.db.transaction((): boolean => {
      if (this.frozenUntil(site, vm, now) !== null) return false;
      this.db
        .prepare(
          `INSERT INTO guest_freezes (site, vm, frozen_until, inflight) VALUES (?, ?, NULL, 1)
           ON CONFLICT (site, vm) DO UPDATE SET inflight = inflight + 1`,
        )
        .run(site, vm);
      return true;
    });
    return begin.immediate();
  }

  /** A guest write that {@link guestBeginWrite} let through has ended. */
  guestEndWrite(site: string, vm: string): void {
    this.db.prepare('UPDATE guest_freezes SET inflight = MAX(inflight - 1, 0) WHERE site = ? AND vm = ?').run(site, vm);
  }

  /** Freezes the guest's file systems until `until` (no new write begins); returns the writes still in flight. */
  guestFreeze(site: string, vm: string, until: Date): number {
    const freeze = this.db.transaction((): number => {
      this.db
        .prepare(
          `INSERT INTO guest_freezes (site, vm, frozen_until, inflight) VALUES (?, ?, ?, 0)
           ON CONFLICT (site, vm) DO UPDATE SET frozen_until = excluded.frozen_until`,
        )
        .run(site, vm, until.toISOString());
      return this.guestState(site, vm).inflight;
    });
    return freeze.immediate();
  }

  /** Thaws the guest; returns whether a freeze was still in force. */
  guestThaw(site: string, vm: string, now = new Date()): boolean {
    const thaw = this.db.transaction((): boolean => {
      const was = this.frozenUntil(site, vm, now) !== null;
      this.db.prepare('UPDATE guest_freezes SET frozen_until = NULL WHERE site = ? AND vm = ?').run(site, vm);
      return was;
    });
    return thaw.immediate();
  }

  /** Whether the guest is frozen now (a freeze past its bound has thawed by itself), and its writes in flight. */
  guestState(site: string, vm: string, now = new Date()): { frozenUntil: string | null; inflight: number } {
    const row = this.db.prepare('SELECT inflight FROM guest_freezes WHERE site = ? AND vm = ?').get(site, vm) as
      { inflight: unknown } | undefined;
    return {
      frozenUntil: this.frozenUntil(site, vm, now),
      inflight: row === undefined ? 0 : this.checked(z.number().int(), row.inflight, `guest of ${site}/${vm}`),
    };
  }

  /** The definition of a VM the hypervisor recreated from an image, or undefined. */
  definedVm(site: string, vm: string): unknown {
    const row = this.db.prepare('SELECT definition_json FROM defined_vms WHERE site = ? AND vm = ?').get(site, vm) as
      { definition_json: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.definition_json) as unknown);
  }

  /** Records (replacing) the definition of a VM the hypervisor recreated. */
  putDefinedVm(site: string, vm: string, definition: unknown): void {
    this.db
      .prepare(
        `INSERT INTO defined_vms (site, vm, definition_json) VALUES (?, ?, ?)
         ON CONFLICT (site, vm) DO UPDATE SET definition_json = excluded.definition_json`,
      )
      .run(site, vm, JSON.stringify(definition));
  }

  close(): void {
    this.db.close();
  }

  private frozenUntil(site: string, vm: string, now: Date): string | null {
    const row = this.db.prepare('SELECT frozen_until FROM guest_freezes WHERE site = ? AND vm = ?').get(site, vm) as
      { frozen_until: unknown } | undefined;
    const until = row === undefined ? null : this.checked(z.string().nullable(), row.frozen_until, `freeze of ${vm}`);
    return until !== null && Date.parse(until) > now.getTime() ? until : null;
  }

  private toPair(r: PairRow): LabPair {
    return this.checked(
      LabPairSchema,
      {
        site: r.site,
        array: r.array,
        volume: r.volume,
        replica: r.replica,
        state: r.state,
        sizeBytes: r.size_bytes,
        copiedBytes: r.copied_bytes,
        totalBytes: r.total_bytes,
        phaseStartedAt: r.phase_started_at,
        splitAt: r.split_at,
        todo: JSON.parse(r.todo_json) as unknown,
        digests: JSON.parse(r.digests_json) as unknown,
      },
      `pair ${r.site}/${r.array}/${r.volume}`,
    );
  }

  private toSnapshot(r: SnapshotRow): LabSnapshot {
    return this.checked(
      LabSnapshotSchema,
      {
        site: r.site,
        array: r.array,
        volume: r.volume,
        name: r.name,
        createdAt: r.created_at,
        sizeBytes: r.size_bytes,
        file: r.file,
      },
      `snapshot ${r.site}/${r.array}/${r.volume}@${r.name}`,
    );
  }

  private toFault(r: FaultRow): Fault {
    const after = FaultAfterSchema.safeParse(JSON.parse(r.after_json) as unknown);
    return this.checked(
      FaultSchema,
      {
        id: r.id,
        device: r.device,
        kind: r.kind,
        after: after.success ? after.data : r.after_json,
        ...(r.rate === null ? {} : { rateBytesPerSec: r.rate }),
        once: r.once === 1,
        createdAt: r.created_at,
        triggered: r.triggered,
      },
      `fault ${r.id}`,
    );
  }

  /** Validates a value read from the file; a bad row means the file was edited or damaged. */
  private checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    throw new InvalidInputError(
      `the lab state file ${this.file} holds an invalid ${what} (${parsed.error.issues.map((i) => i.message).join('; ')}); ` +
        'clear it with `kura lab fault clear`, or delete the file to start the lab state afresh',
    );
  }
}
