/**
 * Runs every benchmark in sequence, each as its own process (so none inherits another's heap or
 * workers), passes its output through, and ends with one table of every verdict: the figure now,
 * its target, pass or short. A benchmark that printed no verdict, or failed, says so in the table.
 *
 *   npx tsx bench/all.ts [--quick] [--only spine,fleet] [--fleet-sizes 77,300,1000]
 *
 * `--quick` runs the data benchmarks on smaller sizes and fewer runs (the orchestration ones keep
 * their sizes); the table says which arguments each ran with.
 */
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { arg, runBench } from './support/lab-stack';
import { passes, targetText, verdictsIn, type Verdict } from './support/verdict';

const ROOT = path.resolve(__dirname, '..');

interface Bench {
  name: string;
  args: string[];
  quick: string[];
}

/** Every benchmark, in the order they run: the cheap ones first. */
function benches(fleetSizes: string): Bench[] {
  return [
    { name: 'datamover', args: [], quick: ['--size', '256MiB', '--runs', '1'] },
    { name: 'datapath', args: [], quick: ['--runs', '1', '--qemu-runs', '1'] },
    { name: 'failover', args: [], quick: ['--size', '128MiB', '--runs', '1'] },
    { name: 'direct', args: [], quick: ['--size', '64MiB', '--rate', '32MiB', '--runs', '1'] },
    { name: 'split', args: [], quick: ['--window', '5'] },
    { name: 'ladder', args: [], quick: [] },
    { name: 'remote', args: [], quick: ['--size', '8MiB', '--writes', '100'] },
    { name: 'store', args: [], quick: ['--size', '64MiB', '--vm-size', '16MiB'] },
    { name: 'store-tape', args: [], quick: ['--size', '64MiB', '--runs', '1'] },
    { name: 'spine', args: ['--n', '77', '--k', '4'], quick: ['--n', '77', '--k', '4'] },
    // The curve of the backups alone; `--guardians on` adds npm start's per-VM guardians (ADR 020).
    {
      name: 'fleet',
      args: ['--sizes', fleetSizes, '--guardians', 'off'],
      quick: ['--sizes', fleetSizes, '--guardians', 'off'],
    },
  ];
}

interface Outcome {
  bench: Bench;
  args: string[];
  code: number;
  seconds: number;
  verdicts: Verdict[];
}

/** Runs one benchmark with tsx, its output passed through as it comes; resolves with what it printed. */
function run(b: Bench, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(ROOT, 'bench', `${b.name}.ts`), ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      process.stdout.write(d);
    });
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    child.once('exit', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output }));
  });
}

function table(outcomes: Outcome[]): string {
  const rows: string[][] = [['benchmark', 'figure', 'now', 'target', 'verdict', 'time', 'arguments']];
  for (const o of outcomes) {
    const base = [`${o.seconds.toFixed(0)} s`, o.args.join(' ') || '(defaults)'];
    if (o.verdicts.length === 0) {
      rows.push([
        o.bench.name,
        '—',
        '—',
        '—',
        o.code === 0 ? 'no verdict printed' : `failed (exit ${o.code})`,
        ...base,
      ]);
      continue;
    }
    for (const v of o.verdicts) {
      rows.push([
        o.bench.name,
        v.metric,
        Number.isFinite(v.now) ? v.now.toFixed(3) : 'over limit',
        targetText(v),
        passes(v) ? 'pass' : 'short',
        ...base,
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const only = arg('only', '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const all = benches(arg('fleet-sizes', '77,300,1000'));
  const unknown = only.filter((n) => !all.some((b) => b.name === n));
  if (unknown.length > 0)
    throw new Error(`no benchmark ${unknown.join(', ')}; known: ${all.map((b) => b.name).join(', ')}`);
  const chosen = only.length > 0 ? all.filter((b) => only.includes(b.name)) : all;

  const startedAt = new Date().toISOString();
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const outcomes: Outcome[] = [];
  for (const b of chosen) {
    const args = quick ? b.quick : b.args;
    console.log(`\n=== bench/${b.name}.ts ${args.join(' ')}`);
    const t0 = performance.now();
    const { code, output } = await run(b, args);
    outcomes.push({ bench: b, args, code, seconds: (performance.now() - t0) / 1000, verdicts: verdictsIn(output) });
  }

  console.log('');
  console.log(
    `Summary of \`npx tsx bench/all.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\`, started ${startedAt} on ${os.availableParallelism()} CPU(s), load average ${load} at the start:`,
  );
  console.log('');
  console.log(table(outcomes));
  if (outcomes.some((o) => o.code !== 0)) process.exitCode = 1;
}

runBench(main);
