/**
 * The one way Kura validates what crosses a boundary (workflow and activity inputs, updates, the
 * client's requests, the datapath's control API): parse with the boundary's zod schema, or throw
 * an {@link InvalidInputError} whose message names every problem by its path, in one format.
 * Each edge maps that error to its own form: an `ApplicationFailure` in Temporal code, a 400 in
 * the control API, exit code 2 in the CLI.
 */
import type { ZodType, output } from 'zod';
import { InvalidInputError, formatPath, type Issue } from './errors';

/**
 * Parses `input` with `schema`; on failure throws InvalidInputError
 * `invalid <what>: <path>: <problem>; …` (`(input)` for the whole value), with the issues attached.
 */
export function parseWith<S extends ZodType>(schema: S, input: unknown, what: string): output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data as output<S>;
  const issues: Issue[] = r.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
  throw new InvalidInputError(
    `invalid ${what}: ${issues.map((i) => `${i.path || '(input)'}: ${i.message}`).join('; ')}`,
    issues,
  );
}
