/**
 * `kura status` as an operator and a script run it: one page with a backup running (its bytes so
 * far), a device marked unavailable with its reason, a target past its policy's RPO, the backups
 * of the last night by class — and `--watch --json` streaming one page per refresh until Ctrl-C.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { LabState } from '../../src/lab/state';
import { StatusPageSchema, type StatusPage } from '../../src/domain/status';
import type { KuraWorkers } from '../../src/worker';
import { cliJson, labEnv, makeLab, runKura, startWorkers, type TestLab } from '../support/harness';
import { until } from '../support/vm-lab';

const MiB = 1024 * 1024;
let lab: TestLab;
let workers: KuraWorkers;

const kura = (args: string[]) => runKura(lab, args);

beforeAll(async () => {
  lab = await makeLab({
    vms: 2,
    dataVolumeSize: 4 * MiB,
    pieceSize: '1MiB',
    edit: (cfg) => {
      cfg.sites[0]!.policies = [{ name: 'nightly-data', targets: ['*'], nightly: '02:00', rpo: '1h' }];
    },
  });
  workers = await startWorkers(lab);
});

afterAll(async () => {
  await workers?.shutdown();
  lab?.cleanup();
});

describe('kura status', () => {
  it('shows a running backup with its progress, a device out of service with its reason, and the RPO breaches', async () => {
    // vm-002 is backed up and within its RPO; vm-001 has no good backup until the one that runs now.
    expect((await kura(['backup', 'vm-002', '--json'])).code).toBe(0);
    const state = new LabState(lab.paths.labState);
    // 128 KiB/s: the 4 MiB copy takes about 32 s of copying alone, so it is still running through
    // the JSON page and the text page even on a loaded machine, where each `kura` call takes seconds.
    for (const server of ['bks-01', 'bks-02'])
      state.addFault({ device: server, kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: MiB / 8, once: false });
    const started = await kura(['backup', 'vm-001', '--detach', '--json']);
    expect(started.code).toBe(0);
    const { workflowId } = cliJson<{ workflowId: string }>(started);
    const marked = await kura(['pool', 'mark', 'lib-02-drv-2', 'unavailable', '--reason', 'cleaning tape stuck']);
    expect(marked.code).toBe(0);

    try {
      // Visibility follows the server by a moment: read the page until it lists the backup with bytes moving.
      const page = await until(
        async () => StatusPageSchema.parse(cliJson(await kura(['status', '--json']))),
        (p: StatusPage) => (p.running ?? []).some((j) => j.workflowId === workflowId && (j.progress?.done ?? 0) > 0),
        60_000,
      );
      expect(page.problems).toEqual([]);
      expect(page.sites).toEqual([lab.site]);
      expect(page.taskQueue).toBe(lab.taskQueue);
      // Only what Kura has today: no section for work that does not exist (drills, remote copies, a second store).
      expect(Object.keys(page).sort()).toEqual(
        [
          'at',
          'devicesOut',
          'lastNight',
          'namespace',
          'problems',
          'rpo',
          'running',
          'sites',
          'taskQueue',
          'waitingForPerson',
        ].sort(),
      );
      expect(page.running).toEqual([
        {
          workflowId,
          kind: 'backup',
          target: 'vm-001',
          site: lab.site,
          startedAt: expect.any(String),
          progress: expect.objectContaining({ phase: 'launch', unit: 'bytes', total: 4 * MiB }),
        },
      ]);
      const progress = page.running![0]!.progress!;
      expect(progress.done).toBeGreaterThan(0);
      expect(progress.done).toBeLessThan(4 * MiB);
      expect(progress.fraction).toBeCloseTo(progress.done! / (4 * MiB), 6);
      expect(page.devicesOut).toEqual([
        { site: lab.site, kind: 'drive', name: 'lib-02-drv-2', reason: 'cleaning tape stuck' },
      ]);
      expect(page.waitingForPerson).toEqual([]);
      expect(page.rpo).toEqual({
        checked: 2,
        breaches: [
          {
            site: lab.site,
            policy: 'nightly-data',
            target: 'vm-001',
            rpoMs: 3_600_000,
            lastBackupId: null,
            lastDataTime: null,
            ageMs: null,
          },
        ],
      });
      expect(page.lastNight!.byClass).toEqual([
        { method: 'tape', targetClass: 'vm', complete: 1, failed: 0, running: 1, bytes: 4 * MiB, failures: [] },
      ]);
      expect(page.lastNight!.closedJobs).toEqual([{ kind: 'backup', byStatus: { completed: 1 } }]);

      const text = await kura(['status']);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/^Running now \(1\)$/m);
      expect(text.stdout).toMatch(/backup\s+vm-001\s+\S+\s+.*\[[#.]{10}\] \d+% .*launch: /);
      expect(text.stdout).toMatch(/^Devices out of service \(1\)/m);
      expect(text.stdout).toMatch(/drive\s+lib-02-drv-2\s+cleaning tape stuck/);
      expect(text.stdout).toMatch(/^RPO breaches \(1 of 2 targets\)$/m);
      expect(text.stdout).toMatch(/nightly-data\s+vm-001\s+none\s+never\s+60 min/);
      expect(text.stdout).not.toMatch(/Not shown/);
    } finally {
      state.clearFaults();
      state.close();
      await kura(['pool', 'mark', 'lib-02-drv-2', 'available']);
    }
  });

  it('refuses a window or a refresh that is no duration with InvalidInput and exit code 2', async () => {
    const since = await kura(['status', '--since', 'yesterday', '--json']);
    expect(since.code).toBe(2);
    expect(cliJson<{ error: { type: string; message: string } }>(since).error).toMatchObject({
      type: 'InvalidInput',
      message: '--since must be a duration such as 12h or 30m, not "yesterday"',
    });
    const watch = await kura(['status', '--watch', '0s']);
    expect(watch.code).toBe(2);
    expect(watch.stderr).toMatch(/InvalidInput: --watch must be a duration such as 12h or 30m, not "0s"/);
  });

  it('streams one JSON page per refresh with --watch until Ctrl-C, then exits 0', async () => {
    const child = spawn(path.join(__dirname, '..', '..', 'bin', 'kura'), ['status', '--watch', '300ms', '--json'], {
      cwd: lab.dir,
      env: labEnv(lab),
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const deadline = Date.now() + 60_000;
    while (out.split('\n').filter(Boolean).length < 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    expect(await code).toBe(0);
    const pages = out
      .split('\n')
      .filter(Boolean)
      .map((line) => StatusPageSchema.parse(JSON.parse(line)));
    expect(pages.length).toBeGreaterThanOrEqual(2);
    expect(Date.parse(pages[1]!.at)).toBeGreaterThan(Date.parse(pages[0]!.at));
    expect(pages.every((p) => p.sites[0] === lab.site && p.problems.length === 0)).toBe(true);
  });
});
