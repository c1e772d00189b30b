/**
 * The lab's fault injection on a transfer: the faults registered in the lab state for a
 * transfer's devices (`fail`, `hang`, `slow`) act on the data mover as a gate, at the volume byte
 * each names.
 */
import { DeviceFaultError } from '../domain/errors';
import { DEFAULT_SLOW_RATE_BYTES_PER_SEC, faultPoint, type Fault } from '../domain/faults';
import { abortableSleep, type TransferGate } from '../datamover/mover';
import type { LabState } from './state';

/** How stale the cached fault list may get, so a fault added by another process takes effect. */
const FAULT_REFRESH_MS = 200;
/** A hung transfer gives up on its own after this long, so a forgotten fault cannot pin a worker. */
const MAX_HANG_MS = 10 * 60 * 1000;
/** While throttled, chunks are cut to about this fraction of a second so progress stays smooth. */
const THROTTLED_CHUNKS_PER_SEC = 5;

/** The transfer a gate watches: its devices, and where its range lies in the volume. */
export interface FaultGateTransfer {
  /** The devices on the transfer's path; a fault on any of them acts. */
  devices: string[];
  /** Size of the whole volume, on which percentage faults are placed. */
  volumeSize: number;
  /** Volume byte of the range's first byte. */
  pieceStart: number;
  /** Volume byte just past the range's last byte. */
  pieceEnd: number;
  /** The drive the transfer runs on, named in events and in errors not tied to a fault. */
  drive: string;
  signal: AbortSignal | undefined;
}

/**
 * Applies the faults injected on the devices of one transfer. A fault fires when the transfer
 * reaches its volume byte, or at the first chunk when the piece starts past that byte (a broken
 * device stays broken); a piece that ends before the byte never meets it. Positions given to the
 * gate are relative to the range, as the data mover counts them.
 */
export class FaultGate implements TransferGate {
  private faults: Fault[] = [];
  private readAt = Number.NEGATIVE_INFINITY;
  /** Faults already applied in this transfer: each acts at most once per transfer. */
  private readonly fired = new Set<number>();
  private throttle: { rate: number; since: number; bytes: number } | undefined;

  constructor(
    private readonly state: LabState,
    private readonly t: FaultGateTransfer,
  ) {}

  /** Fires the faults due at range byte `at`; returns how many bytes the next chunk may take. */
  async before(at: number): Promise<number> {
    const vpos = this.t.pieceStart + at;
    this.throwIfAborted();
    this.refresh(false);
    for (const f of this.faults) {
      if (this.fired.has(f.id) || this.point(f) > vpos) continue;
      this.fired.add(f.id);
      const detail = { faultId: f.id, kind: f.kind, volumeByte: vpos, drive: this.t.drive };
      if (f.kind === 'fail') {
        this.state.markTriggered(f.id);
        this.state.recordEvent(f.device, 'fault-fail', detail);
        throw new DeviceFaultError(f.device, `lab fault on ${f.device}: injected failure at volume byte ${vpos}`);
      }
      if (f.kind === 'slow') {
        this.state.markTriggered(f.id);
        const rate = Math.min(
          f.rateBytesPerSec ?? DEFAULT_SLOW_RATE_BYTES_PER_SEC,
          this.throttle?.rate ?? Number.POSITIVE_INFINITY,
        );
        this.state.recordEvent(f.device, 'fault-slow', { ...detail, rateBytesPerSec: rate });
        this.throttle = { rate, since: Date.now(), bytes: 0 };
      } else {
        this.state.recordEvent(f.device, 'fault-hang', detail);
        await this.hang(f, vpos);
      }
    }
    return this.peekLimit(at);
  }

  /** Whether a fault is due to fire at range byte `at` (the fault list is refreshed first). */
  due(at: number): boolean {
    const vpos = this.t.pieceStart + at;
    this.refresh(false);
    return this.faults.some((f) => !this.fired.has(f.id) && this.point(f) <= vpos);
  }

  /** How far the next chunk from range byte `at` may reach without stepping over a fault's byte. */
  peekLimit(at: number): number {
    const vpos = this.t.pieceStart + at;
    let limit = Number.POSITIVE_INFINITY;
    for (const f of this.faults) {
      const p = this.point(f);
      if (!this.fired.has(f.id) && p > vpos) limit = Math.min(limit, p - vpos);
    }
    if (this.throttle !== undefined)
      limit = Math.min(limit, Math.max(64 * 1024, Math.floor(this.throttle.rate / THROTTLED_CHUNKS_PER_SEC)));
    return limit;
  }

  /** Accounts a finished chunk; under a `slow` fault, waits until the rate allows the next one. */
  async after(bytes: number): Promise<void> {
    if (this.throttle === undefined) return;
    this.throttle.bytes += bytes;
    const due = this.throttle.since + (this.throttle.bytes / this.throttle.rate) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await abortableSleep(wait, this.t.signal);
    this.throwIfAborted();
  }

  /**
   * Stops making progress until the transfer is aborted, the fault is cleared, or the hang limit
   * passes. A `once` hang is consumed only when it ends, so it is not gone (and the hang over)
   * the instant it starts.
   */
  private async hang(f: Fault, vpos: number): Promise<void> {
    if (!f.once) this.state.markTriggered(f.id);
    const deadline = Date.now() + MAX_HANG_MS;
    for (;;) {
      const aborted = this.t.signal?.aborted === true;
      if (aborted || Date.now() >= deadline) {
        if (f.once) this.state.markTriggered(f.id);
        this.state.recordEvent(f.device, 'fault-hang-ended', {
          faultId: f.id,
          volumeByte: vpos,
          drive: this.t.drive,
          reason: aborted ? 'aborted' : 'hang limit',
        });
        throw new DeviceFaultError(
          f.device,
          `lab fault on ${f.device}: the transfer hung at volume byte ${vpos} and ${aborted ? 'was aborted' : `gave up after ${MAX_HANG_MS / 60000} minutes`}`,
        );
      }
      await abortableSleep(Math.min(FAULT_REFRESH_MS, deadline - Date.now()), this.t.signal);
      this.refresh(true);
      if (!this.faults.some((x) => x.id === f.id)) {
        this.state.recordEvent(f.device, 'fault-hang-cleared', {
          faultId: f.id,
          volumeByte: vpos,
          drive: this.t.drive,
        });
        return;
      }
    }
  }

  private refresh(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.readAt < FAULT_REFRESH_MS) return;
    this.faults = this.state.faultsFor(this.t.devices);
    this.readAt = now;
  }

  private point(f: Fault): number {
    const p = faultPoint(f.after, this.t.volumeSize);
    // Past the piece's end the fault is never met; before its start it fires at once.
    return p >= this.t.pieceEnd ? Number.POSITIVE_INFINITY : Math.max(p, this.t.pieceStart);
  }

  /** What an abort of this transfer throws: the caller's reason, or a fault of the drive when it gave none. */
  abortError(reason: unknown): Error {
    // The caller's reason (e.g. Temporal's cancellation) is re-thrown as is, so it keeps its meaning.
    return reason instanceof Error
      ? reason
      : new DeviceFaultError(this.t.drive, `the transfer on drive ${this.t.drive} was aborted`);
  }

  private throwIfAborted(): void {
    const signal = this.t.signal;
    if (signal?.aborted === true) throw this.abortError(signal.reason);
  }
}
