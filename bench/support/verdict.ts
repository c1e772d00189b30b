/**
 * How every benchmark ends: each figure that has a target is printed as now / target / pass or
 * short, for a person, and once more as one machine-readable line that bench/all.ts collects into
 * its summary table.
 */

/** The prefix of the machine-readable line; bench/all.ts looks for it in each benchmark's output. */
export const VERDICT_PREFIX = 'kura-bench-verdict ';

export interface Verdict {
  /** The benchmark's name (its file name without .ts). */
  bench: string;
  /** What was measured, as the summary table names it. */
  metric: string;
  /** The figure measured in this run (a ratio against a baseline of the same run). */
  now: number;
  /** The figure it must reach. */
  target: number;
  /** `atLeast`: now ≥ target passes (a speed ratio); `atMost`: now ≤ target passes (a slowdown). */
  direction: 'atLeast' | 'atMost';
  /** The conditions worth reading beside the figure (sizes, bounds, runs). */
  note?: string;
}

/** True when the figure meets its target. */
export function passes(v: Pick<Verdict, 'now' | 'target' | 'direction'>): boolean {
  return v.direction === 'atLeast' ? v.now >= v.target : v.now <= v.target;
}

/** `≥ 0.5` or `≤ 1.3`. */
export function targetText(v: Pick<Verdict, 'target' | 'direction'>): string {
  return `${v.direction === 'atLeast' ? '≥' : '≤'} ${v.target}`;
}

/** Prints the verdict for a person and for bench/all.ts. */
export function printVerdict(v: Verdict): void {
  console.log(
    `verdict ${v.metric}: now ${v.now.toFixed(3)}  target ${targetText(v)}  ${passes(v) ? 'pass' : 'short'}${v.note ? `  (${v.note})` : ''}`,
  );
  console.log(`${VERDICT_PREFIX}${JSON.stringify(v)}`);
}

/** The verdicts printed in a benchmark's output, in order. */
export function verdictsIn(output: string): Verdict[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith(VERDICT_PREFIX))
    .map((l) => JSON.parse(l.slice(VERDICT_PREFIX.length)) as Verdict);
}
