/**
 * What every fuzzer of Kura's boundaries shares: a seed (KURA_FUZZ_SEED, else the clock) printed
 * before the run so a failure can be replayed, a time budget (KURA_FUZZ_MS, else the short one of
 * `npm test`), and the count of inputs tried, appended to KURA_FUZZ_REPORT for `npm run fuzz`.
 */
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';

/** What one fuzzer did: the figures of the closing table of `npm run fuzz`. */
export interface FuzzOutcome {
  boundary: string;
  seed: number;
  /** Inputs run through the property (skipped ones excluded). */
  runs: number;
  /** Inputs generated but discarded by a precondition (e.g. a CLI case that would start long work). */
  skipped: number;
  failed: boolean;
  ms: number;
}

/** The seed of this run: KURA_FUZZ_SEED when set (to replay a failure), else one from the clock. */
export function fuzzSeed(): number {
  const fixed = process.env.KURA_FUZZ_SEED;
  if (fixed !== undefined && fixed !== '') {
    const n = Number(fixed);
    if (!Number.isInteger(n)) throw new Error(`KURA_FUZZ_SEED must be an integer, not "${fixed}"`);
    return n;
  }
  return Date.now() % 2 ** 31;
}

/** The time one fuzzer may run: KURA_FUZZ_MS when set (`npm run fuzz -- --minutes N`), else `fallbackMs`. */
export function fuzzBudgetMs(fallbackMs: number): number {
  const set = Number(process.env.KURA_FUZZ_MS);
  return Number.isFinite(set) && set > 0 ? set : fallbackMs;
}

/**
 * Runs the property on generated inputs until the budget is spent, printing the seed first and the
 * count after; throws fast-check's report (counterexample, seed and path to replay) on a failure.
 */
export async function fuzz<T>(
  boundary: string,
  property: fc.IRawProperty<[T]>,
  fallbackMs: number,
): Promise<FuzzOutcome> {
  const seed = fuzzSeed();
  const budget = fuzzBudgetMs(fallbackMs);
  console.log(`fuzz ${boundary}: seed ${seed} (replay with KURA_FUZZ_SEED=${seed}), budget ${budget} ms`);
  const t0 = Date.now();
  const details = await fc.check(property, {
    seed,
    // The budget, not a count, ends a run: `numRuns` only has to be out of reach.
    numRuns: 2 ** 31 - 1,
    plugins: [fc.interruptAfterTimeLimit(budget)],
  });
  const outcome: FuzzOutcome = {
    boundary,
    seed,
    runs: details.numRuns,
    skipped: details.numSkips,
    failed: details.failed,
    ms: Date.now() - t0,
  };
  console.log(
    `fuzz ${boundary}: ${outcome.runs} inputs (${outcome.skipped} skipped) in ${outcome.ms} ms, ${outcome.failed ? 'FAILED' : 'no failure'}`,
  );
  const report = process.env.KURA_FUZZ_REPORT;
  if (report) appendFileSync(report, `${JSON.stringify(outcome)}\n`);
  if (details.failed) {
    const cause = details.errorInstance;
    const why = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`fuzz ${boundary} failed: ${why}\n\n${fc.defaultReportMessage(details) ?? ''}`, { cause });
  }
  return outcome;
}
