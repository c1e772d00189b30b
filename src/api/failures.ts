/**
 * What a failed job failed with, read from the client's side: the typed failure at the root of the
 * error's cause chain.
 */

/** A job's failure as a person reads it: its type (an ErrorType, when typed) and its message. */
export interface JobFailure {
  type: string | undefined;
  message: string;
}

/**
 * The type and message of the first typed failure down the cause chain of a failed job's error
 * (the workflow's own ApplicationFailure carries the job's context and its root cause's type); the
 * error's own message when nothing in the chain is typed.
 */
export function failureOf(err: unknown): JobFailure {
  let cur: unknown = err;
  let found: JobFailure | undefined;
  for (let i = 0; cur && i < 10; i++) {
    const c = cur as { name?: string; type?: string; message?: string; cause?: unknown };
    if (c.name === 'ApplicationFailure' || (typeof c.type === 'string' && c.message !== undefined))
      found ??= { type: c.type, message: c.message ?? '' };
    cur = c.cause;
  }
  return found ?? { type: undefined, message: err instanceof Error ? err.message : String(err) };
}
