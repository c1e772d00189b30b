/**
 * Runs the `kura` CLI inside the test process, as `bin/kura` would run it, and collects what a
 * person would see: the exit code and the output. Spawning node per case costs a second; in-process
 * a case costs milliseconds, so a fuzzer can try thousands. Commander's own exits (usage errors,
 * help) are caught at `process.exit` with their code, and output after that point is dropped, as the
 * real process would be gone by then; timers the CLI left unref'd are cleared, as the real process
 * would never run them.
 */
import { format } from 'node:util';
import { vi } from 'vitest';
import { run } from '../../src/cli/main';

export interface CliOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Thrown in place of exiting, so commander stops where the real process would. */
class ExitCalled extends Error {
  override name = 'ExitCalled';
  constructor(readonly code: number) {
    super(`process.exit(${code})`);
  }
}

/** Runs `kura <args>` in this process; resolves with its exit code and output. */
export async function runCli(args: string[]): Promise<CliOutcome> {
  let stdout = '';
  let stderr = '';
  let exited: number | undefined;
  const toOut = (text: string) => void (exited === undefined && (stdout += text));
  const toErr = (text: string) => void (exited === undefined && (stderr += text));
  const chunkText = (chunk: unknown) =>
    typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString();
  const spies = [
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => (toOut(chunkText(chunk)), true)),
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: unknown) => (toErr(chunkText(chunk)), true)),
    vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => toOut(`${format(...a)}\n`)),
    vi.spyOn(console, 'info').mockImplementation((...a: unknown[]) => toOut(`${format(...a)}\n`)),
    vi.spyOn(console, 'warn').mockImplementation((...a: unknown[]) => toErr(`${format(...a)}\n`)),
    vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => toErr(`${format(...a)}\n`)),
    vi.spyOn(process, 'exit').mockImplementation((code?: string | number | null) => {
      exited ??= Number(code ?? 0);
      throw new ExitCalled(exited);
    }),
  ];
  // A timer the CLI unref'd never fires in the real process, which exits first (`kura start`
  // arms one that calls process.exit after 5 s); in this process it would fire during a later case.
  const timers: NodeJS.Timeout[] = [];
  const realSetTimeout = globalThis.setTimeout;
  const timerSpy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((...a: Parameters<typeof setTimeout>) => {
    const t = realSetTimeout(...a);
    timers.push(t);
    return t;
  }) as typeof setTimeout);
  process.exitCode = undefined;
  try {
    await run(['node', 'kura', ...args]);
  } finally {
    for (const s of [...spies, timerSpy]) s.mockRestore();
    for (const t of timers) if (!t.hasRef()) clearTimeout(t);
  }
  const code = exited ?? Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { code, stdout, stderr };
}

/** A line of a JavaScript stack trace (`    at fn (file.ts:1:2)`), which a person must never be shown. */
export const STACK_LINE = /^\s+at .*(\(.*:\d+:\d+\)|:\d+:\d+)$/m;

/** Texts of JavaScript's own errors: an input reached code that did not expect it, instead of a check. */
export const INTERNAL_ERROR =
  /TypeError|RangeError|ReferenceError|SyntaxError|Cannot read propert|Cannot set propert|is not a function|is not iterable|Maximum call stack|Invalid (array|string) length|\[object Object\]/;
