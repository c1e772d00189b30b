/**
 * What a running job shows of itself: its phase, its plan with each step's state and times, and
 * its byte progress — answered by the `plan` and `progress` queries and mirrored in the UI.
 */
import { setCurrentDetails, setHandler } from '@temporalio/workflow';
import type { Phase, PlanChange, PlanStep, StreamProgress } from '../domain/jobs';
import { planQuery, progressQuery } from '../messages';
import { markStep } from './plan';
import { jobFailure, rootFailure } from './failures';

/** The state the `plan` and `progress` queries expose, and the bookkeeping of each step. */
export class OperationState {
  phase: Phase = 'accept';
  activity = 'accepting the request';
  steps: PlanStep[] = [];
  /** The re-plans of step 5, oldest first: what changed and why. */
  changes: PlanChange[] = [];
  bytesDone = 0;
  bytesTotal = 0;
  currentStep: string | undefined;
  error: string | undefined;
  /** The job's streams as the progress query shows them, once it holds some. */
  streamView: (() => StreamProgress[]) | undefined;
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly workflowId: string,
    /** The operation's kind; a re-plan may change it (a split-backup becoming a snapshot-backup). */
    public kind: string,
    private readonly target: string,
  ) {
    setHandler(planQuery, () => ({
      workflowId: this.workflowId,
      kind: this.kind,
      target: this.target,
      phase: this.phase,
      steps: this.steps,
      changes: this.changes,
    }));
    setHandler(progressQuery, () => ({
      phase: this.phase,
      activity: this.activity,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      startedAt: this.startedAt,
      error: this.error,
      streams: this.streamView?.(),
    }));
  }

  enter(phase: Phase, activity: string): void {
    this.phase = phase;
    this.activity = activity;
    setCurrentDetails(`**${phase}** — ${activity}`);
  }

  /** Step 5 changed the plan on the result of `step`: the new steps, and what changed and why. */
  replan(step: string, steps: PlanStep[], what: string, why: string): void {
    this.steps = steps;
    this.changes = [...this.changes, { at: new Date().toISOString(), step, what, why }];
    // The Temporal UI shows the current details: the change is what a person watching needs first.
    setCurrentDetails(`**${this.phase}** — plan changed after ${step}: ${what}, because ${why}`);
  }

  note(id: string, detail: string): void {
    this.steps = this.steps.map((s) => (s.id === id ? { ...s, detail } : s));
  }

  /** Runs one planned step, keeping its status and times current for the `plan` query. */
  async step<T>(id: string, run: () => Promise<T>): Promise<T> {
    this.currentStep = id;
    this.steps = markStep(this.steps, id, 'running', new Date().toISOString());
    try {
      const result = await run();
      this.steps = markStep(this.steps, id, 'done', new Date().toISOString());
      this.currentStep = undefined;
      return result;
    } catch (err) {
      this.steps = markStep(this.steps, id, 'failed', new Date().toISOString(), rootFailure(err).message);
      throw err;
    }
  }

  /** Ends the job with a typed failure that says where and why. */
  fail(context: string, err: unknown): never {
    this.error = rootFailure(err).message;
    this.phase = 'failed';
    this.activity = context;
    setCurrentDetails(`**failed** — ${context}: ${this.error}`);
    throw jobFailure(context, err);
  }
}
