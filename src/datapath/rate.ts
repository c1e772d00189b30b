/**
 * Rates over a recent window (S701), and the finish and convergence rules built on them: the ETA
 * is unreflected bytes ÷ the rate main storage was written at lately, never the lifetime average,
 * so a burst of host writes or a slow disk shows in the estimate at once.
 */
import type { ConvergencePath } from '../domain/datapath';

/** Bytes per second over the last `windowMs`, from timestamped samples. */
export class RateWindow {
  private samples: { at: number; bytes: number }[] = [];
  /** The rate when the window last held samples: a quiet spell does not make the rate unknown. */
  private lastRate: number | null = null;

  constructor(private readonly windowMs: number) {}

  record(bytes: number, at: number = Date.now()): void {
    this.samples.push({ at, bytes });
    this.prune(at);
  }

  /**
   * Bytes/s in the window. The span is at least the time since the window's first sample (and at
   * least 1 ms), so a single burst is not mistaken for an infinite rate.
   */
  rate(now: number = Date.now()): number | null {
    this.prune(now);
    if (this.samples.length === 0) return this.lastRate;
    const first = this.samples[0]!.at;
    const span = Math.max(now - first, Math.min(this.windowMs, 1000), 1);
    const bytes = this.samples.reduce((n, s) => n + s.bytes, 0);
    this.lastRate = (bytes * 1000) / span;
    return this.lastRate;
  }

  private prune(now: number): void {
    const cutoff = now - this.windowMs;
    let i = 0;
    while (i < this.samples.length && this.samples[i]!.at < cutoff) i++;
    if (i > 0) this.samples.splice(0, i);
  }
}

/** S702 ÷ S701: ms to write the unreflected bytes at the measured rate; null while no rate is known. */
export function estimateDrainMs(unreflectedBytes: number, reflectRate: number | null): number | null {
  if (unreflectedBytes === 0) return 0;
  if (reflectRate === null || reflectRate <= 0) return null;
  return Math.ceil((unreflectedBytes / reflectRate) * 1000);
}

/** S601: whether the drain would fit in the host's I/O timeout with the safety factor. */
export function canFinish(etaMs: number | null, ioTimeoutMs: number, safetyFactor: number): boolean {
  return etaMs !== null && etaMs < ioTimeoutMs * safetyFactor;
}

/**
 * Convergence: counts the catch-up rounds in which host writes outpaced the copy — the round ended
 * with a drain estimate too long to finish on, and the unreflected bytes did not shrink — and
 * escalates once the configured number of such rounds is reached: throttle the host's writes,
 * then write synchronously to main storage. A steady trickle that could be finished on at any
 * moment never escalates. Never de-escalates within one backup: a path that was needed once is
 * kept until the switch back.
 */
export class ConvergencePolicy {
  private behind = 0;
  private previous: number | null = null;
  path: ConvergencePath = 'normal';

  constructor(
    private readonly throttleAfterRounds: number,
    private readonly activeAfterRounds: number,
  ) {}

  /** Feeds the end of a round; returns the path to take from now on. */
  afterRound(unreflectedBytes: number, finishable: boolean): ConvergencePath {
    if (!finishable && unreflectedBytes > 0 && (this.previous === null || unreflectedBytes >= this.previous))
      this.behind++;
    this.previous = unreflectedBytes;
    if (this.behind >= this.activeAfterRounds) this.path = 'active';
    else if (this.behind >= this.throttleAfterRounds && this.path === 'normal') this.path = 'throttled';
    return this.path;
  }

  /** Rounds so far in which writes outpaced the copy. */
  get roundsBehind(): number {
    return this.behind;
  }
}
