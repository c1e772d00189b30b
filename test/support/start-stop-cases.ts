/**
 * The stop cases of `kura start`, for one way of stopping it (Ctrl-C to the process group, SIGINT
 * to the process alone, SIGTERM): in the setup phase, during the main job with backups running and
 * queued in the pool, and while serving — each run followed by the next start in the same home,
 * which must pick up the interrupted work and finish every backup exactly once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../../src/config/load';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { Catalog } from '../../src/catalog/store';
import { poolWorkflowId } from '../../src/api/workflow-ids';
import { fleetProgressQuery, tablesQuery } from '../../src/messages';
import {
  alive,
  devServerPids,
  indexOf,
  killLeftovers,
  kuraIn,
  lastIndexOf,
  makeStartHome,
  portFree,
  processGroupOf,
  startKura,
  type Exit,
  type StartHome,
  type StartRun,
} from './kura-start';

export interface StopMode {
  /** Words for the test names. */
  name: string;
  signal: NodeJS.Signals;
  to: 'group' | 'process';
}

const ANNOUNCE = /^kura: (SIGINT|SIGTERM) received/;
const WORKERS = /^kura: shutting down workers/;
const SERVER = /^kura: stopping the Temporal dev server/;
const INTERRUPTED =
  /^kura: interrupted: (\d+) of (\d+) targets finished(?: \(\d+ failed\))?; the other (\d+) continue at the next start/;
const PROGRESS = /^backup: \d+\/\d+ targets/;
/** What must never be printed: a stack trace, a call on a closed connection, the server gone. */
const BROKEN = /Channel has been shut down|^\s+at |Unavailable: cannot reach the Temporal server/m;

/** What one stop looked like, for the report and the assertions. */
interface Stopped {
  exit: Exit;
  /** Milliseconds from the signal to the line that says what happens, and to the exit. */
  announcedMs: number;
  stoppedMs: number;
  /** The lines printed from the signal on. */
  after: string[];
}

async function stop(run: StartRun, mode: StopMode, home: StartHome): Promise<Stopped> {
  const servers = devServerPids(home);
  // Out of the terminal's process group, so Ctrl-C cannot kill it before the workers have stopped.
  for (const pid of servers) expect(processGroupOf(pid)).not.toBe(run.pid);
  const sent = run.signal(mode.signal, mode.to);
  const exit = await run.exit(60_000);
  const announced = run.lines.find((l) => ANNOUNCE.test(l.text));
  const after = run.lines.slice(sent.line).map((l) => l.text);
  const stopped = {
    exit,
    announcedMs: announced ? announced.at - sent.at : Number.NaN,
    stoppedMs: exit.at - sent.at,
    after,
  };
  console.log(
    `[${mode.name}] before the signal:\n  ${run.lines
      .slice(0, sent.line)
      .map((l) => l.text)
      .join(
        '\n  ',
      )}\n[${mode.name}] exit ${exit.code ?? exit.signal}, announced after ${stopped.announcedMs} ms, exited after ${stopped.stoppedMs} ms; printed since the signal:\n  ${after.join('\n  ')}`,
  );
  // No server is left: the one that ran is gone, none runs on the home's database, the ports are free.
  for (const pid of servers) expect(alive(pid), `dev server ${pid} still runs`).toBe(false);
  expect(devServerPids(home)).toEqual([]);
  expect(await portFree(home.port)).toBe(true);
  expect(await portFree(home.port + 1000)).toBe(true);
  return stopped;
}

/** The lines must appear in this order (each pattern after the previous one's line). */
function expectInOrder(run: StartRun, patterns: RegExp[]): void {
  let from = -1;
  for (const re of patterns) {
    const i = run.lines.findIndex((l, n) => n > from && re.test(l.text));
    expect(i, `${re} after line ${from} in:\n${run.text()}`).toBeGreaterThan(from);
    from = i;
  }
}

/** The last non-empty line printed. */
function lastLine(run: StartRun): string {
  return [...run.lines].reverse().find((l) => l.text.trim() !== '')?.text ?? '';
}

/** Waits until backups hold streams of the pool while others of the fleet still wait for theirs. */
async function waitForRunningAndQueued(home: StartHome, fleetId: string): Promise<void> {
  const connection = await Connection.connect({ address: `127.0.0.1:${home.port}` });
  try {
    const client = new Client({ connection, dataConverter: homeDataConverter(home) });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const [tables, fleet] = await Promise.all([
        client.workflow.getHandle(poolWorkflowId('hospital')).query(tablesQuery),
        client.workflow.getHandle(fleetId).query(fleetProgressQuery),
      ]).catch(() => [undefined, undefined] as const);
      const holding = new Set(tables?.drives.flatMap((d) => d.holders.map((h) => h.job)) ?? []);
      const running = fleet?.targets.filter((t) => t.state === 'running').length ?? 0;
      if (holding.size > 0 && running > holding.size) return;
      if (Date.now() > deadline) throw new Error(`no backups running and queued within 60 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await connection.close();
  }
}

/** The data converter of the home's installation: its key file, which `kura start` created. */
function homeDataConverter(home: StartHome) {
  return kuraDataConverter(loadConfig(path.join(home.dir, 'kura.yaml')));
}

/** The devices the site's pool holds unavailable, with the reason. */
async function unavailableDevices(home: StartHome): Promise<string[]> {
  const connection = await Connection.connect({ address: `127.0.0.1:${home.port}` });
  try {
    const t = await new Client({ connection, dataConverter: homeDataConverter(home) }).workflow
      .getHandle(poolWorkflowId('hospital'))
      .query(tablesQuery);
    return [...t.servers, ...t.libraries, ...t.drives, ...t.tapes, ...t.switches, ...t.copyDevices]
      .filter((d) => d.state === 'unavailable')
      .map((d) => `${d.name}: ${d.reason ?? ''}`);
  } finally {
    await connection.close();
  }
}

/** Registers the three phases for one way of stopping, sharing one kura home in sequence. */
export function stopCases(mode: StopMode): void {
  describe(`kura start stopped by ${mode.name}`, () => {
    let home: StartHome | undefined;
    let fleetId = '';

    afterAll(() => {
      killLeftovers(home);
      if (home) rmSync(home.dir, { recursive: true, force: true });
    });

    it('in the setup phase: stops the dev server it was starting and exits 130', async () => {
      home = await makeStartHome();
      const run = startKura(home);
      await run.waitFor(/starting the Temporal dev server/);
      // The server process exists but does not answer yet: this is still the setup phase.
      const h = home;
      await expect.poll(() => devServerPids(h).length, { timeout: 20_000, interval: 20 }).toBeGreaterThan(0);
      // The server runs with kura.yaml's history cache bound, the default here (docs/adr/052).
      const argv = readFileSync(`/proc/${devServerPids(h)[0]}/cmdline`, 'utf8').split('\0');
      expect(argv).toContain('history.hostLevelCacheMaxSize=512');
      const s = await stop(run, mode, home);
      expect(s.exit.code).toBe(130);
      expect(s.announcedMs).toBeLessThan(3000);
      expect(s.stoppedMs).toBeLessThan(15_000);
      expectInOrder(run, [ANNOUNCE, SERVER, INTERRUPTED]);
      expect(lastLine(run)).toMatch(INTERRUPTED);
      expect(lastLine(run)).toContain('0 of 6 targets finished; the other 6 continue at the next start');
      expect(run.text()).not.toMatch(BROKEN);
    });

    it('during the main job, with backups running and queued: stops in order and exits 130', async () => {
      expect(home).toBeDefined();
      const h = home!;
      killLeftovers(h); // a failed case before must not decide this one
      for (const lib of ['lib-01', 'lib-02']) {
        const r = await kuraIn(h, ['lab', 'fault', 'add', lib, '--kind', 'slow', '--after', '0', '--rate', '1MiB']);
        expect(r.code, r.output).toBe(0);
      }
      const run = startKura(h);
      fleetId = (await run.waitFor(/fleet run (fleet\/\S+?)[),]?$/))[1]!;
      await waitForRunningAndQueued(h, fleetId);
      const s = await stop(run, mode, h);
      expect(s.exit.code).toBe(130);
      expect(s.announcedMs).toBeLessThan(3000);
      expect(s.stoppedMs).toBeLessThan(20_000);
      expectInOrder(run, [ANNOUNCE, WORKERS, SERVER, INTERRUPTED]);
      // The progress display stopped before the workers did.
      expect(lastIndexOf(run.lines, PROGRESS)).toBeLessThan(indexOf(run.lines, WORKERS));
      const m = INTERRUPTED.exec(lastLine(run));
      expect(m, lastLine(run)).not.toBeNull();
      const [finished, total, rest] = [Number(m![1]), Number(m![2]), Number(m![3])];
      expect(total).toBe(6);
      expect(finished + rest).toBe(6);
      expect(rest).toBeGreaterThan(0);
      expect(run.text()).not.toMatch(BROKEN);
    });

    it('while serving: the next start resumes the interrupted run, finishes every backup once, and exits 0 when stopped', async () => {
      expect(fleetId).not.toBe('');
      const h = home!;
      killLeftovers(h);
      expect((await kuraIn(h, ['lab', 'fault', 'clear'])).code).toBe(0);
      const run = startKura(h);
      const resumed = await run.waitFor(/resuming the fleet run (fleet\/\S+?)[),]?\s/);
      expect(resumed[1]).toBe(fleetId);
      await run.waitFor(/Protected 6 of 6 targets of hospital: 48\.0 MiB in [\d.]+ s .*0 failed\./, 120_000);
      await run.waitFor(/^kura: serving —/);
      // The interruption cost no device its availability (a copy lost by a worker as it stopped
      // would have timed out and had its drive marked unavailable).
      expect(await unavailableDevices(h)).toEqual([]);
      const s = await stop(run, mode, h);
      expect(s.exit.code).toBe(0);
      expect(s.announcedMs).toBeLessThan(3000);
      expect(s.stoppedMs).toBeLessThan(15_000);
      expectInOrder(run, [ANNOUNCE, WORKERS, SERVER, /^kura: stopped/]);
      expect(run.text()).not.toMatch(BROKEN);

      // Every backup finished exactly once: one complete backup of each VM, none twice.
      const catalog = new Catalog(path.join(h.dir, '.kura', 'catalog.db'));
      const backups = catalog.listBackups();
      catalog.close();
      expect(backups.map((b) => b.target).sort()).toEqual(h.vms);
      expect(backups.every((b) => b.status === 'complete' && b.sizeBytes === 8 * 1024 * 1024)).toBe(true);
    });
  });
}
