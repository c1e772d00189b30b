/**
 * The undo list of a job (a saga): a compensation is added only after its forward step succeeded,
 * dropped once the job has done that undo itself on its normal path, and on failure every one still
 * pending runs in reverse order — inside a non-cancellable scope, so a cancelled job still releases
 * what it holds. A compensation that fails is logged; the others still run.
 */
import { CancellationScope, log } from '@temporalio/workflow';

export class Compensations {
  private readonly pending: { name: string; run: () => Promise<unknown> }[] = [];

  /** Registers the undo of a step that has just succeeded. */
  add(name: string, run: () => Promise<unknown>): void {
    this.pending.push({ name, run });
  }

  /** The job undid this itself (e.g. unloaded after copying): nothing is left to compensate. */
  done(name: string): void {
    const i = this.pending.findIndex((c) => c.name === name);
    if (i >= 0) this.pending.splice(i, 1);
  }

  /** Runs every pending compensation, newest first, even while the workflow is being cancelled. */
  async unwind(): Promise<void> {
    await CancellationScope.nonCancellable(async () => {
      for (const c of this.pending.splice(0).reverse()) {
        await c.run().catch((e: unknown) => log.error(`compensation "${c.name}" failed`, { error: String(e) }));
      }
    });
  }
}
