/**
 * `kura start` failing after it started its Temporal dev server: the error is reported with its
 * type, and the server is stopped by pid before the process exits, like on a stop.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  alive,
  devServerPids,
  killLeftovers,
  makeStartHome,
  portFree,
  startKura,
  type StartHome,
} from '../support/kura-start';

const ROOT = path.resolve(__dirname, '..', '..');

describe('kura start failing after its dev server is up', () => {
  let home: StartHome | undefined;
  afterAll(() => {
    killLeftovers(home);
    if (home) rmSync(home.dir, { recursive: true, force: true });
  });

  it('reports the error, stops the dev server it started and exits 1', async () => {
    home = await makeStartHome({ vms: 2 });
    const missing = path.join(home.dir, 'no-such-bundle.js');
    const run = startKura(home, [], { KURA_WORKFLOW_BUNDLE: missing });
    await run.waitFor(/starting workers/);
    const servers = devServerPids(home);
    expect(servers.length).toBe(1);
    const exit = await run.exit(60_000);
    const reportedAt = run.lines.find((l) => l.text.startsWith('kura: Error: '))?.at ?? Number.NaN;
    console.log(
      `[error after start-up] exit ${exit.code ?? exit.signal}, ${exit.at - reportedAt} ms after the error was reported; printed:\n  ${run.text().split('\n').join('\n  ')}`,
    );
    expect(exit.code).toBe(1);
    const lines = run.text().split('\n');
    const stopping = lines.findIndex((l) => /^kura: stopping the Temporal dev server/.test(l));
    const reported = lines.findIndex((l) => l.startsWith('kura: Error: ') && l.includes(missing));
    expect(stopping, run.text()).toBeGreaterThan(-1);
    expect(reported, run.text()).toBeGreaterThan(stopping);
    for (const pid of servers) expect(alive(pid), `dev server ${pid} still runs`).toBe(false);
    expect(devServerPids(home)).toEqual([]);
    expect(await portFree(home.port)).toBe(true);
  });

  it('a process dying of an uncaught error takes the dev server it started with it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-devserver-'));
    try {
      // A host that starts a server, prints its pid, then throws where nothing catches it.
      const script = `
        require('./src/stack/devserver').startDevServer({ headless: true, dbFile: process.argv[1] }).then((s) => {
          console.log(JSON.stringify({ pid: s.pid }));
          setTimeout(() => { throw new Error('an uncaught failure'); }, 100);
        });`;
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script, path.join(dir, 't.db')], {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.once('exit', (code) => resolve({ code, stdout, stderr }));
      });
      expect(r.stderr).toContain('Error: an uncaught failure');
      expect(r.code).toBe(1);
      const { pid } = JSON.parse(r.stdout) as { pid: number };
      await expect.poll(() => alive(pid), { timeout: 5000 }).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
