/**
 * Fuzzing the `kura` command line: every command of the program (walked from the program itself,
 * so a new command or option is fuzzed without a change here) with random values for any of its
 * options and arguments, a random --config, sometimes --json, an unknown option or a stray
 * argument. The CLI runs in-process against a lab whose Temporal server refuses every connection
 * at once (the client's connect is replaced by one that fails as an unreachable server does, so a
 * case costs milliseconds instead of the client's five-second connect timeout) and whose datapath
 * ports are taken. Every run exits 0, 1 or 2, explains a failure, and never shows a stack trace or
 * an internal error.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import type { Command } from 'commander';
import type * as TemporalClient from '@temporalio/client';
import type * as LabFiles from '../../src/lab/files';
import { buildProgram } from '../../src/cli/main';
import { makeLab, type TestLab } from '../support/harness';
import { INTERNAL_ERROR, STACK_LINE, runCli } from './cli-in-process';
import { fuzz } from './fuzz';

vi.mock('@temporalio/client', async (importOriginal) => {
  const actual = await importOriginal<typeof TemporalClient>();
  /** A Temporal server that is not there: every connect fails as the real client's does after its timeout. */
  class RefusedConnection extends actual.Connection {
    static override async connect(): Promise<never> {
      throw new actual.ServiceError('Failed to connect before the deadline');
    }
  }
  return { ...actual, Connection: RefusedConnection };
});

vi.mock('../../src/lab/files', async (importOriginal) => {
  const actual = await importOriginal<typeof LabFiles>();
  return {
    ...actual,
    /** `kura lab init --vms 5000 --volume-size 1TiB` is valid; the fuzzer checks it, it does not write it. */
    createLabFiles: async (...args: Parameters<typeof actual.createLabFiles>) => {
      const [loaded] = args;
      const bytes = loaded.config.sites.reduce(
        (n, s) => n + s.arrays.reduce((m, a) => m + a.volumes.reduce((k, v) => k + v.size, 0), 0),
        0,
      );
      if (bytes > 64 * 1024 * 1024) return { volumes: 0, cartridges: 0, bytes: 0, skipped: 0 };
      return actual.createLabFiles(...args);
    },
  };
});

let lab: TestLab;
let scratch: string;
const busy: net.Server[] = [];
const saved = { cwd: process.cwd(), env: { ...process.env } };

/** A port held open for the whole run, so a command that would serve on it fails at once. */
async function takenPort(): Promise<number> {
  const s = net.createServer();
  busy.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as net.AddressInfo).port;
}

beforeAll(async () => {
  const [nbdPort, controlPort] = [await takenPort(), await takenPort()];
  lab = await makeLab({
    vms: 2,
    dataVolumeSize: 1024 * 1024,
    edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort }),
  });
  scratch = mkdtempSync(path.join(os.tmpdir(), 'kura-fuzz-cli-'));
  mkdirSync(path.join(scratch, 'a-directory'));
  writeFileSync(path.join(scratch, 'garbage.yaml'), 'sites: [\n  - {name: \u0000\n');
  // Relative paths an option names land in the scratch directory; the Temporal address is explicit,
  // so `kura start` never starts a dev server of its own.
  process.chdir(scratch);
  process.env.TEMPORAL_ADDRESS = '127.0.0.1:1';
  process.env.KURA_CONFIG = lab.configFile;
  delete process.env.KURA_EXIT_AFTER_START;
});

afterAll(async () => {
  process.chdir(saved.cwd);
  process.env = saved.env;
  for (const s of busy) await new Promise<void>((r) => s.close(() => r()));
  lab?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** One command the program offers, as commander describes it. */
interface Leaf {
  words: string[];
  args: { name: string; required: boolean; variadic: boolean }[];
  options: { flag: string; takesValue: boolean; mandatory: boolean }[];
}

function leaves(cmd: Command, words: string[] = []): Leaf[] {
  if (cmd.commands.length > 0) return cmd.commands.flatMap((c) => leaves(c, [...words, c.name()]));
  return [
    {
      words,
      args: cmd.registeredArguments.map((a) => ({ name: a.name(), required: a.required, variadic: a.variadic })),
      options: cmd.options
        .filter((o) => o.long !== undefined)
        .map((o) => ({ flag: o.long!, takesValue: o.required || o.optional, mandatory: o.mandatory })),
    },
  ];
}

const COMMANDS = leaves(buildProgram().program);

/** Values an option or argument may get: meaningful ones of the lab, edge cases, and noise. */
const valueArb: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      ...['', ' ', '0', '-1', '1', '2', '4', '200', '201', '65535', '65536', '1e3', '1.5', 'NaN', 'Infinity'],
      ...['99999999999999999999', '0x10', '1MiB', '8MiB', '1TiB', '-4MiB', '10m', '24h', '0s', '-5m', '50%', '101%'],
      ...['available', 'unavailable', 'fail', 'hang', 'slow', 'hospital', 'vm-001', 'vm-002', 'host-01'],
      ...['array-01/vm-001-data', 'array-01', 'lib-01', 'lib-01-drv-1', 'bks-01', 'fcsw-01', 'cpd-01', 'L1T001'],
      ...['nightly-data', 'all', '*', '-', '--', '--json', '..', '/', '/dev/null', 'a,b,,c', 'bks-01,bks-02'],
      ...['💥', 'é', '%s', '${HOME}', '$(id)', ';rm -rf x', '"', "'", '{}', '[]', 'null', 'true', 'restores/x'],
    ),
  },
  { weight: 2, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 1, arbitrary: fc.integer().map(String) },
  { weight: 1, arbitrary: fc.double().map(String) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 100_000 }).map((n) => 'x'.repeat(n)) },
);
/** An argument vector cannot hold NUL (execve ends the string there). */
const argArb = valueArb.map((v) => v.replaceAll('\u0000', ''));

/** --config: the lab's, a missing file, a directory, a broken file, or a fresh relative name. */
const configArb: fc.Arbitrary<string | null> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.constant('lab') },
  { weight: 1, arbitrary: fc.constantFrom('missing.yaml', 'a-directory', 'garbage.yaml') },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,12}(\.yaml)?$/) },
);

interface CliCase {
  command: number;
  /** Per option: 0–9, given when below 5 (below 9 for a required option), and its value. */
  options: { pick: number; value: string }[];
  args: (string | null)[];
  config: string | null;
  json: boolean;
  unknownOption: boolean;
  strayArg: string | null;
}

const caseArb: fc.Arbitrary<CliCase> = fc.record({
  command: fc.nat({ max: COMMANDS.length - 1 }),
  options: fc.array(fc.record({ pick: fc.nat({ max: 9 }), value: argArb }), { minLength: 12, maxLength: 12 }),
  // An argument is left out one time in eight (fast-check's `freq` is the odds of null).
  args: fc.array(fc.option(argArb, { freq: 8 }), { minLength: 3, maxLength: 3 }),
  config: configArb,
  json: fc.boolean(),
  unknownOption: fc.oneof({ weight: 1, arbitrary: fc.constant(true) }, { weight: 5, arbitrary: fc.constant(false) }),
  strayArg: fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: argArb }),
});

/** The argument vector of a case (without `node kura`). */
function argv(c: CliCase): string[] {
  const leaf = COMMANDS[c.command]!;
  const out: string[] = [];
  // `kura start` with a configuration that is not there writes one and its lab: only the lab's is given.
  const config = leaf.words[0] === 'start' ? lab.configFile : c.config === 'lab' ? lab.configFile : c.config;
  if (config !== null) out.push('--config', config);
  if (c.json) out.push('--json');
  out.push(...leaf.words);
  leaf.args.forEach((a, i) => {
    const v = c.args[i];
    if (v !== null && v !== undefined) out.push(v);
  });
  leaf.options.forEach((o, i) => {
    const pick = c.options[i % c.options.length]!;
    if (pick.pick >= (o.mandatory ? 9 : 5)) return;
    if (!o.takesValue) out.push(o.flag);
    // `--opt=value` keeps a value that starts with `-` a value.
    else out.push(`${o.flag}=${pick.value}`);
  });
  if (c.unknownOption) out.push('--no-such-option');
  if (c.strayArg !== null) out.push(c.strayArg);
  return out;
}

/** Whether a case would start long-running work (a datapath that serves, or a feed followed, until Ctrl-C). */
function startsLongWork(args: string[]): boolean {
  if (args.includes('events') && args.includes('--follow')) return true;
  if (!args.includes('datapath')) return false;
  const port = (flag: string) => {
    const v = args.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
    if (v === undefined) return false;
    const n = Number(v);
    return Number.isInteger(n) && n >= 0 && n <= 65535;
  };
  return port('--nbd-port') && port('--control-port');
}

/** Judges one run; returns what is wrong with it, or null. */
function judge(r: { code: number; stdout: string; stderr: string }): string | null {
  const all = `${r.stdout}\n${r.stderr}`;
  if (![0, 1, 2].includes(r.code)) return `exit ${r.code}, not 0, 1 or 2`;
  if (STACK_LINE.test(all)) return 'printed a stack trace';
  if (INTERNAL_ERROR.test(all)) return 'printed an internal error';
  if (r.code !== 0 && r.stderr.trim() === '' && !/"ok": false/.test(r.stdout))
    return `exit ${r.code} without a word why`;
  return null;
}

describe('the kura CLI with random values for every option of every command', () => {
  it('walks a program with commands to fuzz', () => {
    expect(COMMANDS.length).toBeGreaterThan(20);
    expect(COMMANDS.map((c) => c.words.join(' '))).toEqual(
      expect.arrayContaining(['backup', 'lab init', 'config check']),
    );
  });

  it('exits 0, 1 or 2 with a message, never with a stack trace', async () => {
    const codes = new Map<number, number>();
    await fuzz(
      'cli',
      fc.asyncProperty(caseArb, async (c) => {
        const args = argv(c);
        fc.pre(!startsLongWork(args));
        let timer: NodeJS.Timeout | undefined;
        const r = await Promise.race([
          runCli(args),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`kura ${args.join(' ')} did not finish within 20 s`)), 20_000);
          }),
        ]).finally(() => clearTimeout(timer));
        codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
        const wrong = judge(r);
        if (wrong)
          throw new Error(
            `kura ${JSON.stringify(args)}: ${wrong}\n--- stdout\n${r.stdout.slice(0, 3000)}\n--- stderr\n${r.stderr.slice(0, 3000)}`,
          );
      }),
      12_000,
    );
    console.log(`cli: exit codes ${JSON.stringify(Object.fromEntries(codes))}`);
  });
});
