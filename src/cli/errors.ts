/**
 * How the CLI explains a failure: the type (InvalidInput, NotFound, …), the message down the cause
 * chain, the problems with their paths, and an exit code scripts can rely on.
 */
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { WorkflowFailedError, ServiceError } from '@temporalio/client';
import { ErrorType, KuraError, type Issue } from '../domain/errors';

export interface DescribedError {
  type: string;
  message: string;
  issues: Issue[];
  /** 2: the input was wrong (nothing was done); 1: the job or a service failed. */
  exitCode: number;
}

const INPUT_TYPES: string[] = [
  ErrorType.InvalidInput,
  ErrorType.ConfigInvalid,
  ErrorType.NotFound,
  ErrorType.AccessDenied,
  ErrorType.DestinationExists,
  ErrorType.AlreadyRunning,
  ErrorType.NotWaiting,
  ErrorType.InRecovery,
  ErrorType.KeyFileInvalid,
];

/** Reduces any error to what a person (or a script reading --json) needs. */
export function describeError(err: unknown): DescribedError {
  if (err instanceof KuraError) return make(err.type, err.message, err.issues);
  if (err instanceof WorkflowFailedError) {
    const app = deepestApplicationFailure(err.cause);
    if (app) return make(app.type ?? 'Error', app.message, []);
    return make('Error', err.cause?.message ?? err.message, []);
  }
  if (err instanceof ApplicationFailure) return make(err.type ?? 'Error', err.message, []);
  if (err instanceof ServiceError || isConnectionRefused(err)) {
    return make(
      ErrorType.Unavailable,
      `cannot reach the Temporal server (${(err as Error).message}); start the stack with \`npm start\`, or set TEMPORAL_ADDRESS to a running server`,
      [],
    );
  }
  return make('Error', err instanceof Error ? err.message : String(err), []);
}

function make(type: string, message: string, issues: Issue[]): DescribedError {
  return { type, message, issues, exitCode: INPUT_TYPES.includes(type) ? 2 : 1 };
}

function deepestApplicationFailure(err: unknown): ApplicationFailure | undefined {
  // The workflow's own failure already carries the job's context and its root cause's type.
  let cur: unknown = err;
  for (let i = 0; cur && i < 10; i++) {
    if (cur instanceof ApplicationFailure) return cur;
    cur = cur instanceof TemporalFailure ? cur.cause : undefined;
  }
  return undefined;
}

function isConnectionRefused(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : '';
  return /ECONNREFUSED|Failed to connect|connection refused|UNAVAILABLE/i.test(msg);
}

/** Prints the error (as JSON with --json) and returns the exit code. */
export function reportError(err: unknown, json: boolean): number {
  const d = describeError(err);
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ ok: false, error: { type: d.type, message: d.message, issues: d.issues } }, null, 2)}\n`,
    );
  } else {
    process.stderr.write(`kura: ${d.type}: ${d.message}\n`);
    const listed = d.message.includes('\n');
    if (!listed) for (const i of d.issues) process.stderr.write(`  ${i.path || '(top level)'}: ${i.message}\n`);
  }
  return d.exitCode;
}
