/**
 * Fuzzing kura.yaml: the lab's preset, rendered as `kura lab init` writes it, mutated — keys and
 * lines deleted or duplicated, values retyped, the file truncated, invalid UTF-8 and NUL bytes
 * inserted, huge values (long strings, big numbers, deep nesting, long lists) — and checked with
 * `kura config check`. It exits 0 (valid) or 2 (invalid) and lists each problem with where it is;
 * it never prints a stack trace or an internal error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { hospitalPreset, idcPreset, renderConfigYaml } from '../../src/lab/preset';
import { INTERNAL_ERROR, STACK_LINE, runCli } from './cli-in-process';
import { fuzz } from './fuzz';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-fuzz-config-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The presets as `kura lab init` renders them, at a few sizes: the hospital, and the SAN two companies share. */
const PRESETS = [
  ...[1, 3].map((vms) => renderConfigYaml(hospitalPreset({ vms, cartridgesPerLibrary: 2 }))),
  renderConfigYaml(idcPreset({ cartridgesPerLibrary: 2 })),
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path to a value inside a document, parents before children. */
function paths(v: Json, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

function getAt(root: Json, p: (string | number)[]): Json | undefined {
  let cur: Json | undefined = root;
  for (const k of p) cur = cur && typeof cur === 'object' ? (cur as Record<string, Json>)[k] : undefined;
  return cur;
}

/** Replaces (or, with `undefined`, removes) the value at a path; the root is replaced by returning it. */
function setAt(root: Json, p: (string | number)[], value: Json | undefined): Json {
  if (p.length === 0) return value ?? null;
  const parent = getAt(root, p.slice(0, -1));
  const key = p.at(-1)!;
  if (Array.isArray(parent) && typeof key === 'number') {
    if (value === undefined) parent.splice(key, 1);
    else parent[key] = value;
  } else if (parent && typeof parent === 'object') {
    if (value === undefined) delete (parent as Record<string, Json>)[key];
    else (parent as Record<string, Json>)[key] = value;
  }
  return root;
}

/** Values of other types, and huge ones, to put where the schema expects something else. */
const otherValueArb: fc.Arbitrary<Json> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom<Json>(null, true, false, 0, -1, 1.5, '', 'x', [], {}, 1e308, -1e308, 2 ** 64),
  },
  {
    weight: 4,
    arbitrary: fc.constantFrom<Json>(
      '99999999999999999999TiB',
      '1e400MiB',
      '-4MiB',
      '0x10MiB',
      'NaN',
      '25:00',
      '99:99',
    ),
  },
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json> },
  // Huge values, rarer: each costs the parser milliseconds.
  { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 300_000 }).map((n) => 'x'.repeat(n)) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => Array.from({ length: n }, (_, i) => `v${i}`)),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 50, max: 1000 }).map((depth) => {
      let v: Json = 'deep';
      for (let i = 0; i < depth; i++) v = [v];
      // Printed as what it is in a counterexample: fast-check's printer would recurse as deep.
      return Object.defineProperty(v, fc.toStringMethod, { value: () => `${depth} nested lists` });
    }),
  },
);

/** A mutation of the document's structure. */
type TreeMutation =
  | { kind: 'delete'; pick: number }
  | { kind: 'duplicate'; pick: number }
  | { kind: 'retype'; pick: number; value: Json };

const treeMutationArb: fc.Arbitrary<TreeMutation> = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('retype' as const), pick: fc.nat(), value: otherValueArb }),
);

function mutateTree(doc: Json, m: TreeMutation): Json {
  const all = paths(doc);
  const p = all[m.pick % all.length]!;
  switch (m.kind) {
    case 'delete':
      return setAt(doc, p, undefined);
    case 'duplicate': {
      // A list item twice (a duplicate name), or a value copied into its parent under a second key.
      const parent = getAt(doc, p.slice(0, -1));
      const value = structuredClone(getAt(doc, p) ?? null);
      if (Array.isArray(parent)) parent.push(value);
      else if (parent && typeof parent === 'object' && p.length > 0)
        (parent as Record<string, Json>)[`${String(p.at(-1))}`] = value;
      return doc;
    }
    case 'retype':
      return setAt(doc, p, m.value);
  }
}

/** A mutation of the file's bytes. */
type ByteMutation =
  | { kind: 'delete-line' | 'duplicate-line'; pick: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: readonly number[] }
  | { kind: 'huge-line'; at: number; line: string };

const INVALID_UTF8 = [[0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]];

const byteMutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constantFrom('delete-line' as const, 'duplicate-line' as const), pick: fc.nat() }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.oneof(
        fc.constantFrom(...INVALID_UTF8),
        fc.constant([0]),
        fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 8 }),
        fc.constantFrom(
          ...[
            ': ',
            '\t',
            '- ',
            '&a ',
            '*a ',
            '!!binary ',
            '? ',
            '{',
            '[',
            '"',
            "'",
            '%YAML 1.2\n---\n',
            '---\n',
            '<<: *a\n',
          ].map((s) => [...Buffer.from(s)]),
        ),
      ),
    }),
  },
  // Rarer than the others: each costs the parser milliseconds.
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('huge-line' as const),
      at: fc.nat(),
      line: fc.oneof(
        fc.integer({ min: 1000, max: 20_000 }).map((n) => `x: ${'['.repeat(n)}${']'.repeat(n)}`),
        fc.integer({ min: 1000, max: 10_000 }).map((n) => `x: ${'{a: '.repeat(n)}1${'}'.repeat(n)}`),
        fc.integer({ min: 100_000, max: 1_000_000 }).map((n) => `x: ${'y'.repeat(n)}`),
        // Aliases that expand to a billion values if a reader follows them all.
        fc.constant(
          `a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]`,
        ),
      ),
    }),
  },
);

function mutateBytes(file: Buffer, m: ByteMutation): Buffer {
  const lines = () => {
    const out: [number, number][] = [];
    let start = 0;
    for (let i = 0; i <= file.length; i++)
      if (i === file.length || file[i] === 0x0a) {
        out.push([start, Math.min(i + 1, file.length)]);
        start = i + 1;
      }
    return out;
  };
  switch (m.kind) {
    case 'delete-line':
    case 'duplicate-line': {
      const all = lines();
      const [a, b] = all[m.pick % all.length]!;
      const line = file.subarray(a, b);
      return Buffer.concat([
        file.subarray(0, a),
        ...(m.kind === 'duplicate-line' ? [line, line] : []),
        file.subarray(b),
      ]);
    }
    case 'truncate':
      return file.subarray(0, m.at % (file.length + 1));
    case 'insert': {
      const at = m.at % (file.length + 1);
      return Buffer.concat([file.subarray(0, at), Buffer.from(m.bytes), file.subarray(at)]);
    }
    case 'huge-line': {
      const all = lines();
      const [a] = all[m.at % all.length]!;
      return Buffer.concat([file.subarray(0, a), Buffer.from(`${m.line}\n`), file.subarray(a)]);
    }
  }
}

interface ConfigCase {
  preset: number;
  tree: TreeMutation[];
  bytes: ByteMutation[];
  json: boolean;
}

const caseArb: fc.Arbitrary<ConfigCase> = fc.record({
  preset: fc.nat({ max: PRESETS.length - 1 }),
  tree: fc.array(treeMutationArb, { maxLength: 3 }),
  bytes: fc.array(byteMutationArb, { maxLength: 3 }),
  json: fc.boolean(),
});

/** The file a case writes: the preset, its document mutated, then its bytes. */
function render(c: ConfigCase): Buffer {
  let text = PRESETS[c.preset]!;
  if (c.tree.length > 0) {
    let doc = parse(text) as Json;
    for (const m of c.tree) doc = mutateTree(doc, m);
    try {
      text = stringify(doc);
    } catch {
      // Nesting deeper than the YAML printer's stack: JSON is YAML too. (Deeper nesting than this
      // comes from the byte mutations, as text.)
      text = JSON.stringify(doc);
    }
  }
  let file: Buffer = Buffer.from(text);
  for (const m of c.bytes) file = mutateBytes(file, m);
  return file;
}

function isUtf8(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Where a problem is: a line, or a path inside the document. */
const LOCATED = /(^|\()line \d+|^[A-Za-z_][\w]*(\.|\[|$| \()/;

/** Checks one run of `kura config check`; returns why it is wrong, or null. */
export function judgeConfigCheck(r: { code: number; stdout: string; stderr: string }, json: boolean): string | null {
  const all = `${r.stdout}\n${r.stderr}`;
  if (STACK_LINE.test(all)) return 'printed a stack trace';
  if (INTERNAL_ERROR.test(all)) return 'printed an internal error';
  if (r.code === 0) return /is valid|"ok": true/.test(r.stdout) ? null : 'exit 0 without saying the file is valid';
  if (r.code !== 2) return `exit ${r.code}, not 0 or 2`;
  if (json) {
    const out = JSON.parse(r.stdout) as { error: { type: string; issues: { path: string; message: string }[] } };
    if (out.error.type !== 'ConfigInvalid') return `error type ${out.error.type}, not ConfigInvalid`;
    if (out.error.issues.length === 0) return 'no problem listed';
    const bad = out.error.issues.find((i) => !LOCATED.test(i.path) || i.message.trim() === '');
    return bad ? `a problem without a location or a reason: ${JSON.stringify(bad)}` : null;
  }
  if (!r.stderr.startsWith('kura: ConfigInvalid: ')) return 'exit 2 without a ConfigInvalid message';
  return null;
}

describe('kura config check on mutated presets', () => {
  it('exits 0 or 2, lists every problem with where it is, and never prints a stack trace', async () => {
    const file = path.join(dir, 'kura.yaml');
    await fuzz(
      'kura.yaml',
      fc.asyncProperty(caseArb, async (c) => {
        const bytes = render(c);
        writeFileSync(file, bytes);
        const r = await runCli(['--config', file, ...(c.json ? ['--json'] : []), 'config', 'check']);
        let wrong = judgeConfigCheck(r, c.json);
        if (
          !wrong &&
          !isUtf8(bytes) &&
          !/line \d+: bytes that are not UTF-8|"path": "line \d+",\s+"message": "bytes that are not UTF-8/.test(
            r.stdout + r.stderr,
          )
        )
          wrong = 'a file that is not UTF-8 was not refused at the line of the first bad byte';
        if (wrong)
          throw new Error(`${wrong} (exit ${r.code}):\n${r.stdout.slice(0, 2000)}\n${r.stderr.slice(0, 2000)}`);
      }),
      8_000,
    );
  });
});

describe('kura config check on the unmutated presets', () => {
  it('finds each preset valid', async () => {
    const file = path.join(dir, 'preset.yaml');
    for (const text of PRESETS) {
      writeFileSync(file, text);
      const r = await runCli(['--config', file, 'config', 'check']);
      expect([r.code, r.stdout]).toEqual([0, expect.stringContaining('is valid')]);
    }
  });
});

describe('files the fuzzer found reported without a place, as an internal error, or not at all', () => {
  /** `kura config check --json` on these bytes: exit code and the problems listed. */
  async function check(bytes: Buffer | string): Promise<{ code: number; issues: { path: string; message: string }[] }> {
    const file = path.join(dir, 'regression.yaml');
    writeFileSync(file, bytes);
    const r = await runCli(['--config', file, '--json', 'config', 'check']);
    const out = JSON.parse(r.stdout) as { error?: { issues: { path: string; message: string }[] } };
    return { code: r.code, issues: out.error?.issues ?? [] };
  }

  it('places the problem of an empty file at line 1', async () => {
    expect(await check('')).toEqual({
      code: 2,
      issues: [{ path: 'line 1', message: 'Invalid input: expected object, received null' }],
    });
  });

  it('reports collections nested too deeply to read as a problem of the file, at its line', async () => {
    const text = PRESETS[0]!.replace('\nsites:', `\nx: ${'['.repeat(20_000)}${']'.repeat(20_000)}\nsites:`);
    const line = text.split('\n').findIndex((l) => l.startsWith('x: ')) + 1;
    expect(await check(text)).toEqual({
      code: 2,
      issues: [
        {
          path: `line ${line}`,
          message: 'collections nest too deeply to read; a configuration needs only a few levels',
        },
      ],
    });
  });

  it('refuses aliases that expand to a billion values, at the line of the first alias, instead of failing with exit 1', async () => {
    const laughs =
      'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n';
    expect(await check(`${laughs}${PRESETS[0]!}`)).toEqual({
      code: 2,
      issues: [
        {
          path: 'line 2',
          message: 'aliases (*name) expand to more values than a configuration holds; write the values out instead',
        },
      ],
    });
  });

  it('refuses bytes that are not UTF-8, at their line, instead of reading them as U+FFFD', async () => {
    const text = PRESETS[0]!;
    const at = text.indexOf('vm-001');
    const line = text.slice(0, at).split('\n').length;
    const bytes = Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from([0xff]), Buffer.from(text.slice(at))]);
    expect(await check(bytes)).toEqual({
      code: 2,
      issues: [{ path: `line ${line}`, message: 'bytes that are not UTF-8; kura.yaml must be UTF-8 text' }],
    });
  });
});
