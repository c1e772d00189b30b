/**
 * Driver interfaces: the only code that touches storage, tape and copy hardware implements these.
 * Drivers know nothing of Temporal; activities call them, report progress and map their errors.
 * Errors thrown are KuraError subclasses (DeviceFaultError, NotFoundError, TapeFullError, …).
 */
import type { PieceHeader, TapeCatalogEntry } from '../domain/catalog';
import type { VmDefinition } from '../domain/vm-image';

export { PIECE_HEADER_BYTES, type PieceHeader } from '../domain/catalog';

/** Progress of a long transfer: bytes of this transfer done so far, and the total. */
export type ProgressFn = (p: { bytes: number; total: number }) => void;

export interface VolumeInfo {
  site: string;
  array: string;
  volume: string;
  sizeBytes: number;
}

/** Storage arrays: volumes addressed as array/volume within a site. */
export interface StorageDriver {
  /** Describes a volume; NotFoundError when the array or volume does not exist. */
  describeVolume(site: string, array: string, volume: string): Promise<VolumeInfo>;
  /**
   * LUN security (seed 003): AccessDeniedError unless the volume's LUN mask lets the backup
   * server's WWN reach it. A volume without a mask is open to every server.
   */
  checkAccess(site: string, array: string, volume: string, server: string): Promise<void>;
}

/** One volume of one array of one site. */
export interface VolumeRef {
  site: string;
  array: string;
  volume: string;
}

/**
 * A pair's state, as the array reports it: `copying` (the initial full copy runs), `in-sync` (every
 * write reaches both volumes), `split` (the replica holds the image of the split instant while
 * changes to the primary are tracked), `resyncing` (only the changed blocks are copied back).
 */
export type PairState = 'copying' | 'in-sync' | 'split' | 'resyncing';

export interface PairInfo extends VolumeRef {
  /** The replica volume, allocated from the array's free pool while the pair exists. */
  replica: string;
  state: PairState;
  /** Bytes of the current copy (full or resync) done, and its total. */
  copiedBytes: number;
  totalBytes: number;
  /** When the pair was last split (ISO 8601); set in state `split`. */
  splitAt?: string;
  /** A file whose bytes are the replica's image, readable while the pair is split. */
  readPath: string;
}

export interface SnapshotInfo extends VolumeRef {
  name: string;
  createdAt: string;
  sizeBytes: number;
  /** A file whose bytes are the volume's image at `createdAt`, readable while the snapshot exists. */
  readPath: string;
}

/**
 * The function software of a storage array (seed 003, Figs. 5a and 5b): volume pairs that are
 * split for a consistent copy and resynchronised after it, and copy-before-write snapshots. Every
 * call is idempotent, so an activity retried after a crash converges on the same state. Errors:
 * NotFoundError for an unknown array, volume, pair or snapshot; InvalidInputError for a request
 * the array's state cannot take (a split of a pair still copying, say).
 */
export interface ArrayFunctions {
  /** Pairs the volume with a replica from the array's free pool and starts the full copy; returns the pair as it stands when it exists already. */
  createPair(ref: VolumeRef): Promise<PairInfo>;
  /** The volume's pair now; NotFoundError when it has none. */
  pairStatus(ref: VolumeRef): Promise<PairInfo>;
  /** Splits an in-sync pair; the replica keeps this instant's image. A split pair is returned as is. */
  splitPair(ref: VolumeRef): Promise<PairInfo>;
  /** Brings a split replica up to date by copying only the blocks changed since the split. */
  resyncPair(ref: VolumeRef): Promise<PairInfo>;
  /** Ends the pair and returns its replica to the free pool; nothing to do when there is none. */
  deletePair(ref: VolumeRef): Promise<void>;
  /** Takes a copy-before-write snapshot of the volume under `name`; returns it when it exists already. */
  createSnapshot(ref: VolumeRef, name: string): Promise<SnapshotInfo>;
  /** Deletes the snapshot and its copy-before-write space; nothing to do when it is gone. */
  deleteSnapshot(ref: VolumeRef, name: string): Promise<void>;
  listPairs(site: string, array: string): Promise<PairInfo[]>;
  listSnapshots(site: string, array: string): Promise<SnapshotInfo[]>;
}

/**
 * The images of an array's volumes that a copy device may read, as the array's own engine knows
 * them: the volume itself, or one of its current split replicas or snapshots. The copy to tape asks
 * this before it opens anything, so a request cannot make the copy device read an arbitrary file.
 */
export interface VolumeImages {
  /**
   * The file holding the volume's image and the volume's size: without `readPath` the volume's own
   * image; with it, that path when (and only while) it is a split replica of the volume's pair or a
   * snapshot of the volume. InvalidInputError for any other path; NotFoundError for an unknown volume.
   */
  imageFile(ref: VolumeRef, readPath?: string): Promise<{ file: string; sizeBytes: number }>;
  /** The engine's change tracking of the volume, where it keeps one (a qsd array's dirty bitmaps); undefined elsewhere. */
  changeTracking?(ref: VolumeRef): ChangeTracking | undefined;
}

/** What starting a new change-tracking generation found. */
export interface TrackingStart {
  /** The generation begun now: name it as `since` at the next backup. */
  generation: string;
  /** Byte ranges written since `since` began; undefined when they cannot be known (see `reason`). */
  changed?: { offset: number; length: number }[];
  /** Which bitmaps were read, or why none could be. */
  reason: string;
}

/**
 * Changed-block tracking an array keeps for a volume between store backups, under a key (the
 * store's target): generations of dirty bitmaps, each begun as the previous one is frozen, so a
 * backup reads only what was written since the generation its previous backup began, and a crash
 * before its index is durable loses no change (docs/adr/036).
 */
export interface ChangeTracking {
  /**
   * Freezes the key's current generation and begins a new one, atomically, and returns what every
   * generation from `since` on marks; `changed` is undefined when `since` is undefined or gone.
   */
  beginTracking(ref: VolumeRef, key: string, since: string | undefined): Promise<TrackingStart>;
  /** Drops the key's generations older than `keep`, once the backup that began `keep` is durable. */
  endTracking(ref: VolumeRef, key: string, keep: string): Promise<void>;
}

/**
 * New volumes an array creates for a restore (seed 003: a volume allocated from the array's free
 * space), so a host can mount the restored image. Each call names the restore job that owns the
 * volume; only that job writes it, commits it or gives it back.
 */
export interface RestoreVolumes {
  /**
   * Allocates the volume `ref` of `sizeBytes` and returns the file its image is restored into; the
   * same job asking again gets the same file. DestinationExistsError when the array has the name.
   */
  allocateVolume(ref: VolumeRef, sizeBytes: number, job: string): Promise<{ file: string }>;
  /** Serves the volume once its restored image is verified in `file`; returns where hosts reach it. */
  commitVolume(ref: VolumeRef, job: string): Promise<{ sizeBytes: number; nbdUri: string }>;
  /** Gives back a volume whose restore failed; a committed volume is left alone. */
  releaseVolume(ref: VolumeRef, job: string): Promise<void>;
}

export interface TapeAddress {
  site: string;
  library: string;
  drive: string;
  tape: string;
}

/** Tape libraries: a robot that moves cartridges between slots and drives. */
export interface TapeLibraryDriver {
  /**
   * Loads the cartridge into the drive and returns the end of recorded data (the append point).
   * Idempotent: loading the cartridge that is already in the drive returns the same answer.
   * Fails (DeviceFaultError) when another cartridge occupies the drive.
   */
  load(addr: TapeAddress): Promise<{ endOfData: number; capacityBytes: number }>;
  /** Unloads the drive; idempotent (unloading an empty drive is fine). */
  unload(addr: TapeAddress): Promise<void>;
  /**
   * Writes a job's catalog rows onto the mounted cartridge at `position` (seed 004 step 1170),
   * ending the recorded data after them; returns the new end of data. Idempotent: writing the same
   * entry at the same position again leaves the same cartridge.
   */
  writeCatalog(addr: TapeAddress & { position: number }, entry: TapeCatalogEntry): Promise<{ nextPosition: number }>;
  /**
   * Ends the recorded data at `position` of the mounted cartridge, discarding what a failed job
   * wrote after it, so the next job appends right there. Idempotent.
   */
  eraseFrom(addr: TapeAddress & { position: number }): Promise<void>;
  /**
   * Reads every catalog block on a cartridge, in the order written. With `drive`, the cartridge
   * must sit in that drive, as a library reads only what is mounted (DeviceFaultError otherwise);
   * without, the lab reads the cartridge file where it lies, for inspection.
   */
  readCatalog(site: string, library: string, tape: string, drive?: string): Promise<TapeCatalogEntry[]>;
}

/** A store backup as the source of a copy to tape (docs/adr/042). */
export interface StoreSource {
  backupId: string;
  indexDigest: string;
}

export interface CopyToTapeRequest {
  site: string;
  /** The devices the stream crosses (server, switches, library, drive, tape, copy device); faults on any apply. */
  devices: string[];
  /**
   * `readPath`, when given, names the file the bytes are read from instead of the volume itself: a
   * split replica or a snapshot of it (PairInfo/SnapshotInfo `readPath`), holding the volume's image.
   * The volume's array engine must know it as one of its current images ({@link VolumeImages}).
   */
  source: {
    array: string;
    volume: string;
    offset: number;
    length: number;
    volumeSize: number;
    readPath?: string;
    /**
     * A backup in the deduplicated store read instead of the volume (docs/adr/042): its index's
     * chunks in order, each checked against its digest; `indexDigest` is the index the catalog recorded.
     */
    store?: StoreSource;
  };
  target: TapeAddress & { position: number };
  header: PieceHeader;
  /**
   * Bytes of this piece already on tape from an earlier attempt (from the last heartbeat). The
   * copy checks the header, re-reads those bytes to rebuild the checksum and continues after them.
   */
  resumeBytes: number;
}

/**
 * One segment command of a direct copy, as a copy device executes it (like a SCSI EXTENDED COPY
 * segment descriptor, block device → stream device): read `length` bytes of the source volume from
 * `sourceAddress` and write them as one piece at `targetAddress` of the cartridge in the drive —
 * the piece's header block, then the bytes — with the same format, checksum and resume as a copy
 * through a backup server. The backup server reads none of it (docs/adr/029).
 */
export interface SegmentCommand {
  site: string;
  /** The copy device executing the command. */
  copyDevice: string;
  /** The devices the bytes cross (copy device, switches, library, drive, tape); faults on any apply. */
  devices: string[];
  source: { array: string; volume: string; volumeSize: number; readPath?: string };
  target: TapeAddress;
  sourceAddress: number;
  targetAddress: number;
  length: number;
  header: PieceHeader;
  /** Bytes of this piece already on tape from an earlier attempt, as for {@link CopyToTapeRequest}. */
  resumeBytes: number;
}

export interface CopyResult {
  /** SHA-256 (hex) of the piece's data. */
  sha256: string;
  bytes: number;
  /** Where the header starts, and the first byte after the piece (the next append point). */
  position: number;
  nextPosition: number;
  /** Bytes taken over from an earlier attempt rather than copied again. */
  resumedBytes: number;
}

export interface ReadFromTapeRequest {
  site: string;
  devices: string[];
  source: TapeAddress & { position: number };
  /** What the header at that position must say; a mismatch is a ChecksumMismatchError. */
  expect: Pick<PieceHeader, 'backupId' | 'piece' | 'sizeBytes'>;
  /** Where to write the data, at which offset of that file. */
  destination: { path: string; offset: number };
  resumeBytes: number;
}

export interface VerifyOnTapeRequest {
  site: string;
  /**
   * The pieces of one image in image order, each where it was written (a copy cut over several
   * cartridges by failover names each), with what was recorded for each.
   */
  pieces: {
    source: TapeAddress & { position: number };
    expect: Pick<PieceHeader, 'backupId' | 'piece' | 'sizeBytes'>;
    sha256: string;
  }[];
}

/** A device of a stream that reports itself unhealthy, and why. */
export interface DeviceHealth {
  device: string;
  reason: string;
}

/** Copy devices: move byte ranges between storage and tape, computing a SHA-256 per piece. */
export interface CopyDeviceDriver {
  /**
   * Reads the pieces back from the mounted cartridge (read-after-write verification): each must
   * hash to what was written (ChecksumMismatchError otherwise); returns the whole image's SHA-256.
   */
  verifyOnTape(
    req: VerifyOnTapeRequest,
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<{ sha256: string; bytes: number }>;
  copyToTape(req: CopyToTapeRequest, onProgress: ProgressFn, signal?: AbortSignal): Promise<CopyResult>;
  /** A copy device executes one segment command: volume → drive, without a backup server (docs/adr/029). */
  executeSegment(cmd: SegmentCommand, onProgress: ProgressFn, signal?: AbortSignal): Promise<CopyResult>;
  readFromTape(
    req: ReadFromTapeRequest,
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<{ sha256: string; bytes: number }>;
  /**
   * Probes each device of a stream with a small real request through its driver, after a transfer
   * over them stopped answering: the ones that failed the probe or did not answer it within
   * `timeoutMs`, or none when every device answered.
   */
  probe(site: string, devices: string[], opts?: { timeoutMs?: number }): Promise<DeviceHealth[]>;
}

export interface VmInfo {
  site: string;
  vm: string;
  host: string;
  state: 'running' | 'stopped';
  /** array/volume of the software volume (OS, MW, APL) and the data volume. */
  softwareVolume: string;
  dataVolume: string;
}

/** What a monitor sees of a VM's software: healthy, or why not. */
export interface VmHealth {
  healthy: boolean;
  state: 'running' | 'stopped' | 'restarting' | 'faulty';
  detail: string;
}

/**
 * One recovery action, named so that carrying it out twice (a retried activity) changes nothing
 * the second time; `rung` and `incident` say why it was asked for (they go to the event log).
 */
export interface VmRequest {
  request: string;
  rung: string;
  incident: string;
}

/** An image a volume is built from: its file and what it must hash to. */
export interface ImageRef {
  imageId: string;
  kind: 'data' | 'guarantee' | 'software';
  file: string;
  sizeBytes: number;
  sha256: string;
}

/** What a VM is rebuilt from: its software image and a data image. */
export interface RebuildImages {
  software: ImageRef;
  data: ImageRef;
}

/** Hypervisors: the VMs of a site, where they run and whether they are up. */
export interface HypervisorDriver {
  /** One VM; NotFoundError when the site has no such VM. */
  describeVm(site: string, vm: string): Promise<VmInfo>;
  listVms(site: string): Promise<VmInfo[]>;

  /** The VM's health as its monitor sees it (seed 001 S12/S17: recovered?). */
  health(site: string, vm: string): Promise<VmHealth>;
  /**
   * Restarts the initialization range `scope` (S11): the application (`apl`) or the middleware
   * (`mw`) through the guest agent, or the whole OS (`os`, a reboot). Asks and returns; the VM
   * comes back in its own time, which `health` shows.
   */
  restart(site: string, vm: string, scope: 'apl' | 'mw' | 'os', req: VmRequest): Promise<void>;
  /** Copies the VM's data volume (volume 13) into an image file; returns its size and SHA-256. */
  snapshotDataVolume(
    site: string,
    vm: string,
    dest: string,
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<{ sizeBytes: number; sha256: string }>;
  /**
   * Writes a base image of the VM — its software image, or its startup-guarantee data image —
   * as the management side created the VM from (seed 001: volume 12 from the software image).
   */
  writeBaseImage(
    site: string,
    vm: string,
    kind: 'software' | 'guarantee',
    dest: string,
    onProgress: ProgressFn,
  ): Promise<{ sizeBytes: number; sha256: string }>;
  /**
   * S15: builds a NEW volume for the VM's data from an image and returns where it is. Continues
   * after `resumeBytes` already written by an earlier attempt of the same request.
   */
  createVolumeFromImage(
    site: string,
    vm: string,
    image: ImageRef,
    req: VmRequest,
    onProgress: ProgressFn,
    resumeBytes?: number,
    signal?: AbortSignal,
  ): Promise<{ volume: string; sizeBytes: number }>;
  /** S16: swaps the VM's data volume for `volume` (built from `image`); the software volume is left alone. */
  swapDataVolume(
    site: string,
    vm: string,
    volume: string,
    image: ImageRef,
    req: VmRequest,
  ): Promise<{ retired: string }>;
  /**
   * S18's maintenance: recreates the VM on a substitute host from its software image and a data
   * image, and starts it. NotFoundError for a host the site does not have.
   */
  rebuild(site: string, vm: string, host: string, images: RebuildImages, req: VmRequest): Promise<void>;

  /**
   * Freezes the guest's file systems (a guest agent's fsfreeze): writes in flight drain, no new one
   * begins, until {@link thawGuest} or `maxFreezeMs` has passed — the guest thaws itself then, so a
   * lost caller never leaves it frozen. DeviceFaultError (and thawed) when the writes do not drain
   * within `drainTimeoutMs`. Drivers without a guest agent leave it out.
   */
  freezeGuest?(
    site: string,
    vm: string,
    opts: { maxFreezeMs: number; drainTimeoutMs: number },
  ): Promise<{ frozenAt: string; thawBy: string }>;
  /** Thaws the guest's file systems; idempotent. Returns whether a freeze was still in force. */
  thawGuest?(site: string, vm: string): Promise<{ wasFrozen: boolean }>;
  /** Whether the guest is frozen now. */
  guestFrozen?(site: string, vm: string): Promise<boolean>;
  /** The VM's definition as this hypervisor would recreate it (name, host, size, volumes, health check). */
  describeDefinition?(site: string, vm: string): Promise<VmDefinition>;
  /**
   * Recreates a VM from an image's definition (under `name`, on `host`) with its volumes built from
   * the images, and starts it; kura.yaml need not name it. Carried out once per request. With
   * `isolated`, `host` is a drill's host of its own (docs/adr/043), never one of the inventory's: the
   * VM gets volumes of its own there and nothing of production is touched.
   */
  createFromDefinition?(
    definition: VmDefinition,
    target: { name: string; host: string; isolated?: boolean },
    images: RebuildImages,
    req: VmRequest,
  ): Promise<{ softwareVolume: string; dataVolume: string }>;
  /**
   * Removes a VM {@link createFromDefinition} created (stopped, undefined, its volumes deleted);
   * idempotent. Returns whether there was one to remove.
   */
  removeCreated?(target: { name: string; host: string; isolated?: boolean }): Promise<{ removed: boolean }>;
}

/** An FC zone: the named ports (servers, arrays, libraries, copy devices, switches) that may see each other. */
export interface Zone {
  name: string;
  members: string[];
}

/** FC fabric: zoning on the switches, so a transfer neither disturbs nor is disturbed by other traffic. */
export interface FabricDriver {
  /** Sets a zone; idempotent (setting the same zone again changes nothing). NotFound for unknown members. */
  createZone(site: string, zone: Zone): Promise<void>;
  /** Removes a zone; removing one that is not there is fine. */
  deleteZone(site: string, name: string): Promise<void>;
  listZones(site: string): Promise<Zone[]>;
  /** AccessDeniedError unless one zone holds every one of the members. */
  checkZoned(site: string, members: string[]): Promise<void>;
}

/** Everything a worker needs to reach a site's hardware. */
export interface Drivers {
  hypervisor: HypervisorDriver;
  storage: StorageDriver;
  tape: TapeLibraryDriver;
  fabric: FabricDriver;
  copy: CopyDeviceDriver;
  arrays: ArrayFunctions;
  /** New volumes for restores, on the arrays whose engine can create them. */
  volumes: RestoreVolumes;
}
