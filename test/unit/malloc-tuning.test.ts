/**
 * The glibc malloc settings Kura's processes start with (docs/adr/054): `bin/kura` executes Node with
 * them, an operator's own values win, and the Dockerfile gives the image the same ones.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MALLOC_TUNING, withMallocTuning } from '../../src/stack/malloc';

const ROOT = path.join(__dirname, '..', '..');
const KURA = path.join(ROOT, 'bin', 'kura');
const dirs: string[] = [];

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Runs `bin/kura` as a program with a `node` first on PATH that records, instead of running Kura, the
 * MALLOC_ variables it was executed with and its arguments.
 */
function execKura(args: string[], env: NodeJS.ProcessEnv = {}): { malloc: Record<string, string>; argv: string[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-malloc-'));
  dirs.push(dir);
  const out = path.join(dir, 'seen');
  const fake = path.join(dir, 'node');
  writeFileSync(
    fake,
    `#!/bin/sh\nenv | grep '^MALLOC_' > '${out}.env'\nfor a in "$@"; do printf '%s\\0' "$a"; done > '${out}.argv'\n`,
  );
  chmodSync(fake, 0o755);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_')));
  const r = spawnSync(KURA, args, { env: { ...clean, ...env, PATH: `${dir}:${process.env.PATH}` }, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  const malloc = Object.fromEntries(
    readFileSync(`${out}.env`, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('=', 2) as [string, string]),
  );
  const argv = readFileSync(`${out}.argv`, 'utf8').split('\0').slice(0, -1);
  return { malloc, argv };
}

describe('bin/kura', () => {
  it('executes Node on itself with the malloc settings and the arguments unchanged', () => {
    const seen = execKura(['backup', 'vm 01', '--json', '']);
    expect(seen.malloc).toEqual(MALLOC_TUNING);
    expect(seen.argv).toEqual([KURA, 'backup', 'vm 01', '--json', '']);
  });

  it("keeps an operator's own value of a setting", () => {
    const seen = execKura(['status'], { MALLOC_ARENA_MAX: '4' });
    expect(seen.malloc).toEqual({ ...MALLOC_TUNING, MALLOC_ARENA_MAX: '4' });
  });

  it('is a comment to Node, so `node bin/kura` runs the CLI as before', () => {
    const r = spawnSync(process.execPath, [KURA, 'help', 'worker'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('run the control worker and the backup-server workers');
  });
});

describe('the malloc settings elsewhere', () => {
  it('the Dockerfile sets each of them for the image', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    for (const [name, value] of Object.entries(MALLOC_TUNING))
      expect(dockerfile).toMatch(new RegExp(`^\\s*${name}=${value}\\b`, 'm'));
  });

  it('withMallocTuning adds the missing ones and keeps the ones set', () => {
    const given = { PATH: '/bin', MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_ARENA_MAX: '' };
    expect(withMallocTuning(given)).toEqual({ PATH: '/bin', MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_ARENA_MAX: '2' });
    expect(given.MALLOC_ARENA_MAX).toBe('');
  });
});
