// Runs the fuzzers of Kura's boundaries (test/fuzz/) for longer than `npm test` gives them, and
// prints the closing table: each boundary, the inputs tried, the seed, and whether it failed.
//
// Usage: npm run fuzz -- [--minutes N] [--seed S]
//   --minutes N  each fuzzer runs N minutes (default 5); they run two at a time, as `npm test` runs files
//   --seed S     replay a run: every fuzzer uses this seed (a failure prints its seed)
// A failure names its counterexample and seed; make it a regression test beside the fuzzer.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = process.argv[i + 1];
  if (value === undefined) {
    console.error(`fuzz: ${name} needs a value`);
    process.exit(2);
  }
  return value;
}

const minutes = Number(option('--minutes', '5'));
if (!Number.isFinite(minutes) || minutes <= 0) {
  console.error(`fuzz: --minutes must be a positive number, not "${option('--minutes', '')}"`);
  process.exit(2);
}
const seed = option('--seed', undefined);
if (seed !== undefined && !/^-?\d+$/.test(seed)) {
  console.error(`fuzz: --seed must be an integer, not "${seed}"`);
  process.exit(2);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-fuzz-'));
const report = path.join(dir, 'report.jsonl');
const budgetMs = Math.round(minutes * 60_000);
console.log(`fuzz: each boundary for ${minutes} min${seed === undefined ? '' : `, seed ${seed}`}`);
const vitest = spawnSync(
  process.execPath,
  [
    path.join(root, 'node_modules', 'vitest', 'vitest.mjs'),
    'run',
    'test/fuzz',
    '--testTimeout',
    String(budgetMs + 600_000),
  ],
  {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      KURA_FUZZ_MS: String(budgetMs),
      KURA_FUZZ_REPORT: report,
      ...(seed === undefined ? {} : { KURA_FUZZ_SEED: seed }),
    },
  },
);

const rows = existsSync(report)
  ? readFileSync(report, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
  : [];
rmSync(dir, { recursive: true, force: true });
console.log('\n| boundary | inputs tried | skipped | seconds | seed | outcome |');
console.log('|---|---:|---:|---:|---:|---|');
for (const r of rows)
  console.log(
    `| ${r.boundary} | ${r.runs} | ${r.skipped} | ${(r.ms / 1000).toFixed(0)} | ${r.seed} | ${r.failed ? 'FAILED' : 'no failure'} |`,
  );
process.exit(vitest.status ?? 1);
