/**
 * The CLI fuzzers run `kura` in-process; these few cases run the real `bin/kura` beside the
 * in-process runner on the same input, so the runner's picture (exit code, output, no stack trace)
 * is known to be the one a person gets. Spawning costs about a second a case: the count stays small.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { STACK_LINE, runCli, type CliOutcome } from './cli-in-process';

const KURA = path.resolve(__dirname, '..', '..', 'bin', 'kura');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-fuzz-spawned-'));
  const laughs =
    'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n';
  writeFileSync(path.join(dir, 'laughs.yaml'), `${laughs}${renderConfigYaml(hospitalPreset({ vms: 1 }))}`);
  writeFileSync(path.join(dir, 'empty.yaml'), '');
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function spawnKura(args: string[]): Promise<CliOutcome> {
  return new Promise((resolve) => {
    execFile(
      KURA,
      args,
      { cwd: dir, timeout: 60_000, env: { ...process.env, KURA_CONFIG: '' } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const unpathed = (s: string) => s.replace(/[^\s"]*\.yaml/g, 'FILE');

const CASES: { title: string; args: () => string[]; code: number }[] = [
  { title: 'an unknown option', args: () => ['config', 'check', '--no-such-option'], code: 1 },
  {
    title: 'a kura.yaml of aliases',
    args: () => ['--config', path.join(dir, 'laughs.yaml'), 'config', 'check'],
    code: 2,
  },
  {
    title: 'an empty kura.yaml, with --json',
    args: () => ['--json', '--config', path.join(dir, 'empty.yaml'), 'config', 'check'],
    code: 2,
  },
];

describe('the in-process CLI runner against bin/kura', () => {
  it.each(CASES)('sees what a person sees for $title', async ({ args, code }) => {
    const [real, inProcess] = [await spawnKura(args()), await runCli(args())];
    expect(real.code).toBe(code);
    // The spawned CLI names files relative to its own directory; apart from that the two agree.
    const seen = (r: CliOutcome) => ({ ...r, stdout: unpathed(r.stdout), stderr: unpathed(r.stderr) });
    expect(seen(inProcess)).toEqual(seen(real));
    expect(`${real.stdout}${real.stderr}`).not.toMatch(STACK_LINE);
  });
});
