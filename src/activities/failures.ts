/**
 * Turns Kura's typed errors into Temporal failures that keep their type, message and retry
 * decision, so a workflow (and the person reading it in the UI) sees why an activity failed.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ZodError } from 'zod';
import { ErrorType, KuraError, formatPath } from '../domain/errors';

/** Maps any thrown value to an ApplicationFailure; KuraErrors keep their type and retryability. */
export function toFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof KuraError) {
    return ApplicationFailure.create({
      message: err.message,
      type: err.type,
      nonRetryable: !err.retryable,
      details: [{ ...err.details, issues: err.issues }],
      cause: err.cause instanceof Error ? err.cause : undefined,
    });
  }
  if (err instanceof ZodError) return invalidInput('activity input', err);
  return err;
}

/** Runs an activity body, mapping failures on the way out. */
export async function mapFailures<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toFailure(err);
  }
}

function invalidInput(what: string, err: ZodError): ApplicationFailure {
  const lines = err.issues.map((i) => `${formatPath(i.path) || '(input)'}: ${i.message}`);
  return ApplicationFailure.nonRetryable(`invalid ${what}: ${lines.join('; ')}`, ErrorType.InvalidInput);
}
