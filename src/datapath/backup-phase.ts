/**
 * The phases of one volume's online backup and the rules that move it along: passthrough →
 * base-copy → catch-up → quiescing → passthrough (finish), or from any backup phase straight back
 * (abort); which control request each phase takes, refused with a typed error otherwise; and the
 * convergence rule fed by the catch-up rounds (write and reflect rates over the recent window, the
 * ETA, the path the host's writes take). It touches no file: each change of phase is handed to a
 * `persist` callback and only committed here once that resolved, so a restart comes back in it.
 */
import {
  DatapathPhase,
  type ConvergencePath,
  type DatapathConfig,
  type DatapathMode,
  type VolumeStatus,
} from '../domain/datapath';
import { ErrorType, InvalidInputError, KuraError } from '../domain/errors';
import { ConvergencePolicy, RateWindow, canFinish, estimateDrainMs } from './rate';
import type { BackupState } from './volume-state';

/** The volume is in backup mode for another backup: a second one must wait. */
export class VolumeBusyError extends KuraError {
  override name = 'VolumeBusyError';
  constructor(message: string) {
    super(ErrorType.AlreadyRunning, message);
  }
}

/** The settings the convergence rule reads. */
export type ConvergenceSettings = Pick<
  DatapathConfig,
  'rateWindow' | 'throttleAfterRounds' | 'activeAfterRounds' | 'ioTimeout' | 'safetyFactor'
>;

/** Makes a backup's record durable (writes the state file); the phase changes only once it resolved. */
export type Persist = (state: BackupState) => Promise<void>;

/** The part of a volume's status that its phase decides. */
export type PhaseStatus = Pick<
  VolumeStatus,
  | 'mode'
  | 'phase'
  | 'backupId'
  | 'image'
  | 'switchedAt'
  | 'baseCopiedBytes'
  | 'writeRate'
  | 'reflectRate'
  | 'etaMs'
  | 'rounds'
  | 'path'
>;

export class BackupPhases {
  private current: BackupState | null = null;
  private holding = false;
  private writeRate: RateWindow;
  private reflectRate: RateWindow;
  private policy: ConvergencePolicy;

  /**
   * @param name the export name, for messages
   * @param sizeBytes the volume's size, for messages
   */
  constructor(
    private readonly name: string,
    private readonly sizeBytes: number,
    private readonly settings: ConvergenceSettings,
  ) {
    this.writeRate = new RateWindow(settings.rateWindow);
    this.reflectRate = new RateWindow(settings.rateWindow);
    this.policy = new ConvergencePolicy(settings.throttleAfterRounds, settings.activeAfterRounds);
  }

  /** The backup in progress (the state file's content), or null in passthrough. */
  get state(): BackupState | null {
    return this.current;
  }

  /** Where the volume is, as the status reports it: quiescing while host commands are held. */
  get phase(): DatapathPhase {
    return this.holding ? DatapathPhase.Quiescing : (this.current?.phase ?? DatapathPhase.Passthrough);
  }

  /** S602 to S604: whether host commands are held at the gate. */
  get quiescing(): boolean {
    return this.holding;
  }

  /** Whether the base copy is done, so what lies under the snapshot is backup storage (S406). Still true while quiescing. */
  get inCatchUp(): boolean {
    return this.current?.phase === DatapathPhase.CatchUp;
  }

  /** The path host writes take: plain, throttled, or also written to main storage at once. */
  get path(): ConvergencePath {
    return this.policy.path;
  }

  /**
   * enter-backup's check: true when this backup is in backup mode already (the call is a retry and
   * changes nothing), false when the volume may switch. Another backup in progress: VolumeBusyError.
   */
  admitEnter(backupId: string): boolean {
    if (!this.current) return false;
    if (this.current.backupId === backupId) return true;
    throw new VolumeBusyError(
      `${this.name} is in backup mode for ${this.current.backupId}; wait for it to finish or abort it (kura backup --online shows it)`,
    );
  }

  /**
   * S104, passthrough → base-copy: starts a backup's measures afresh, persists its record and only
   * then enters it. Returns the record.
   */
  async enter(backupId: string, image: string, persist: Persist): Promise<BackupState> {
    if (this.admitEnter(backupId)) throw new VolumeBusyError(`${this.name} is in backup mode for ${backupId} already`);
    this.writeRate = new RateWindow(this.settings.rateWindow);
    this.reflectRate = new RateWindow(this.settings.rateWindow);
    this.policy = new ConvergencePolicy(this.settings.throttleAfterRounds, this.settings.activeAfterRounds);
    const state: BackupState = {
      version: 1,
      mode: 'backup',
      phase: DatapathPhase.BaseCopy,
      backupId,
      image,
      switchedAt: new Date().toISOString(),
      baseCopiedBytes: 0,
      rounds: 0,
    };
    await persist(state);
    this.current = state;
    return state;
  }

  /** Comes back in the backup a state file recorded, after a restart. */
  resume(state: BackupState): void {
    this.current = state;
  }

  /**
   * The backup in progress, if it is this one. Not in backup mode: InvalidInputError; in backup
   * mode for another backup: VolumeBusyError.
   */
  require(backupId: string): BackupState {
    if (!this.current) throw new InvalidInputError(`${this.name} is not in backup mode; start with enter-backup`);
    if (this.current.backupId !== backupId)
      throw new VolumeBusyError(`${this.name} is in backup mode for ${this.current.backupId}, not ${backupId}`);
    return this.current;
  }

  /** As {@link require}, for a catch-up round: refused with InvalidInputError until the base copy is done. */
  requireCatchUp(backupId: string): BackupState {
    const state = this.require(backupId);
    if (state.phase !== DatapathPhase.CatchUp)
      throw new InvalidInputError(
        `${this.name} has not finished its base copy (${state.baseCopiedBytes} of ${this.sizeBytes} bytes); catch-up starts after it`,
      );
    return state;
  }

  /** As {@link require}, for finish: refused with InvalidInputError until the base copy is done. */
  requireFinishable(backupId: string): BackupState {
    const state = this.require(backupId);
    if (state.phase !== DatapathPhase.CatchUp)
      throw new InvalidInputError(`${this.name} has not finished its base copy; it cannot switch back yet`);
    return state;
  }

  /**
   * base-copy → catch-up once the whole volume is on backup storage. Durable first: nobody sees the
   * catch-up phase before a restart would also come back in it.
   */
  async baseCopied(state: BackupState, persist: Persist): Promise<void> {
    if (state.phase !== DatapathPhase.BaseCopy)
      throw new InvalidInputError(`${this.name} is in ${state.phase} for ${state.backupId}, not in its base copy`);
    await persist({ ...state, phase: DatapathPhase.CatchUp });
    state.phase = DatapathPhase.CatchUp;
  }

  /** S602: host commands are held from here until {@link endQuiesce}. */
  beginQuiesce(): void {
    this.holding = true;
  }

  endQuiesce(): void {
    this.holding = false;
  }

  /** S604 (finish) or abort: back to passthrough, once the state file is gone and main storage holds everything. */
  left(): void {
    this.current = null;
  }

  /** Feeds a host write taken in backup mode to the write rate. */
  wrote(bytes: number): void {
    this.writeRate.record(bytes);
  }

  /** Feeds bytes written to main storage from the snapshot to the reflect rate. */
  reflected(bytes: number): void {
    this.reflectRate.record(bytes);
  }

  /**
   * The end of a catch-up round: counts it, and feeds the convergence rule whether the drain would
   * now fit in the host's I/O timeout and whether the unreflected bytes shrank.
   */
  roundDone(state: BackupState, unreflectedBytes: number): void {
    state.rounds++;
    const { ioTimeout, safetyFactor } = this.settings;
    this.policy.afterRound(
      unreflectedBytes,
      canFinish(estimateDrainMs(unreflectedBytes, this.reflectRate.rate()), ioTimeout, safetyFactor),
    );
  }

  /** The phase's part of the status, with the ETA of S701–S702 from the bytes not yet reflected. */
  status(unreflectedBytes: number): PhaseStatus {
    const s = this.current;
    const reflectRate = this.reflectRate.rate();
    const mode: DatapathMode = s ? 'backup' : 'passthrough';
    return {
      mode,
      phase: this.phase,
      backupId: s?.backupId ?? null,
      image: s?.image ?? null,
      switchedAt: s?.switchedAt ?? null,
      baseCopiedBytes: s ? s.baseCopiedBytes : 0,
      writeRate: this.writeRate.rate() ?? 0,
      reflectRate: reflectRate ?? 0,
      etaMs: s?.phase === DatapathPhase.CatchUp ? estimateDrainMs(unreflectedBytes, reflectRate) : null,
      rounds: s?.rounds ?? 0,
      path: this.policy.path,
    };
  }
}
