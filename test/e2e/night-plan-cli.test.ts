/**
 * `kura plan night` and `kura plan apply` as an operator runs them against a lab shaped like seed
 * 003's internet data centre: four servers' volumes whose sizes, at kura.yaml's throughput, take
 * 1 h, 30 min, 1 h 30 and 2 h; the pool's drives; the real dev server's Schedules.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { cliJson, makeLab, runKura, startWorkers, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { Catalog } from '../../src/catalog/store';
import {
  Kura,
  nightJobScheduleId,
  scheduleIdFor,
  type AppliedNightSchedules,
  type NightPlanResult,
} from '../../src/client';
import { byClass, parseXml } from '../support/xml';

// 512 B/s: an hour moves 1,843,200 bytes, so these real 0.9–3.5 MiB volumes give the seed's durations.
const RATE = 512;
const HOUR = 3600 * RATE;
// vm-001 is A's WWW server (1 h), vm-002 B's application server (30 min), vm-003 A's application
// server (1 h 30), vm-004 B's WWW server (2 h), listed in that order in the policy.
const SIZES: Record<string, number> = { 'vm-001': HOUR, 'vm-002': HOUR / 2, 'vm-003': 1.5 * HOUR, 'vm-004': 2 * HOUR };
const DATE = '2026-12-01';

let lab: TestLab;
let workers: KuraWorkers;
const kura = (args: string[]) => runKura(lab, args);
const jobs = ['vm-001', 'vm-002', 'vm-003', 'vm-004'];

beforeAll(async () => {
  lab = await makeLab({
    vms: 4,
    drivesPerLibrary: 1,
    edit: (cfg) => {
      const site = cfg.sites[0]!;
      for (const v of site.arrays[0]!.volumes ?? []) {
        const vm = v.id.replace(/-data$/, '');
        if (SIZES[vm] !== undefined) v.size = SIZES[vm];
      }
      site.policies = [{ name: 'idc', targets: jobs, nightly: '02:00', streams: 1, chunks: 1 }];
      site.night = { window: { start: '00:00', end: '06:00' }, timezone: 'UTC', throughput: RATE };
    },
  });
  workers = await startWorkers(lab);
});

afterAll(async () => {
  for (const t of jobs)
    await workers?.client.schedule
      .getHandle(nightJobScheduleId(lab.site, 'idc', t))
      .delete()
      .catch(() => undefined);
  await workers?.shutdown();
  lab?.cleanup();
});

const pool = () => new Kura(workers.client, lab.loaded, lab.taskQueue).pool;
const times = (r: NightPlanResult) => r.plan.jobs.map((j) => [j.target, j.start, j.end, j.drives]);

describe('kura plan night', () => {
  it("reproduces the seed's night on the one drive the pool has free, and draws it", async () => {
    // Marked through the client in this process: the CLI's own `kura pool mark` has tests of its own.
    await pool().mark(lab.site, { device: 'lib-02-drv-1', state: 'unavailable', reason: 'cleaning' });
    const svgFile = path.join(lab.dir, 'plan.svg');
    const r = await kura(['plan', 'night', '--date', DATE, '--svg', svgFile, '--json']);
    expect(r.code).toBe(0);
    const plan = cliJson<NightPlanResult>(r);
    expect(times(plan)).toEqual([
      ['vm-001', '00:00', '01:00', ['lib-01-drv-1']],
      ['vm-002', '01:00', '01:30', ['lib-01-drv-1']],
      ['vm-003', '01:30', '03:00', ['lib-01-drv-1']],
      ['vm-004', '03:00', '05:00', ['lib-01-drv-1']],
    ]);
    expect(plan.plan.jobs.every((j) => j.sizeFrom === 'volume' && j.rateFrom === 'configured')).toBe(true);
    expect(plan.leftOut).toEqual([{ drive: 'lib-02-drv-1', reason: 'cleaning' }]);
    expect(plan.note).toBeUndefined();

    const svg = parseXml(readFileSync(svgFile, 'utf8'));
    expect(byClass(svg, 'lane').map((l) => l.attributes['data-drive'])).toEqual(['lib-01-drv-1']);
    expect(byClass(svg, 'bar').map((b) => b.attributes['data-start'])).toEqual(['00:00', '01:00', '01:30', '03:00']);

    const human = await kura(['plan', 'night', '--date', DATE]);
    expect(human.stdout).toContain('window 00:00–06:00 (UTC), 1 free drive (lib-01-drv-1)');
    expect(human.stdout).toMatch(
      /^03:00 +05:00 +lib-01-drv-1 +idc\/vm-004 +3\.5 MiB \(volume\) +0\.5 kB\/s \(configured\) +2\.0 h$/m,
    );
    expect(human.stdout).toContain('drive lib-02-drv-1 left out: cleaning');
    expect(human.stdout).toContain('all planned jobs end by 05:00');
  });

  it('runs the jobs concurrently on both drives once the second is back, ending earlier', async () => {
    await pool().mark(lab.site, { device: 'lib-02-drv-1', state: 'available' });
    const plan = cliJson<NightPlanResult>(await kura(['plan', 'night', '--date', DATE, '--json']));
    expect(times(plan)).toEqual([
      ['vm-001', '00:00', '01:00', ['lib-01-drv-1']],
      ['vm-002', '00:00', '00:30', ['lib-02-drv-1']],
      ['vm-003', '00:30', '02:00', ['lib-02-drv-1']],
      ['vm-004', '01:00', '03:00', ['lib-01-drv-1']],
    ]);
    expect(plan.plan.endAt).toBe(`${DATE}T03:00:00.000Z`);
  });
});

describe('kura plan apply', () => {
  it("installs one schedule per job at its planned time in place of the policy's fixed time, and again idempotently", async () => {
    const fixed = scheduleIdFor(lab.site, 'idc');
    expect(cliJson<{ created: string[] }>(await kura(['schedule', 'apply', '--json'])).created).toEqual([fixed]);

    const first = await kura(['plan', 'apply', '--date', DATE, '--json']);
    expect(first.code).toBe(0);
    const applied = cliJson<NightPlanResult & { applied: AppliedNightSchedules }>(first).applied;
    const ids = jobs.map((t) => nightJobScheduleId(lab.site, 'idc', t));
    expect(applied.created.sort()).toEqual([...ids].sort());
    expect(applied.deleted).toEqual([fixed]);

    const expected: Record<string, [number, number]> = {
      'vm-001': [0, 0],
      'vm-002': [0, 0],
      'vm-003': [0, 30],
      'vm-004': [1, 0],
    };
    for (const target of jobs) {
      const desc = await workers.client.schedule.getHandle(nightJobScheduleId(lab.site, 'idc', target)).describe();
      const [hour, minute] = expected[target]!;
      expect(desc.spec.calendars?.[0]).toMatchObject({
        hour: [{ start: hour, end: hour, step: 1 }],
        minute: [{ start: minute, end: minute, step: 1 }],
      });
      expect(desc.spec.timezone).toBe('UTC');
      expect(desc.policies.overlap).toBe('SKIP');
      expect(desc.action).toMatchObject({
        workflowType: 'fleetProtection',
        args: [{ policy: 'idc', targets: [target] }],
      });
    }
    await expect(workers.client.schedule.getHandle(fixed).describe()).rejects.toThrow(/not found/i);

    const again = cliJson<{ applied: AppliedNightSchedules }>(await kura(['plan', 'apply', '--date', DATE, '--json']));
    expect(again.applied).toMatchObject({ created: [], deleted: [], skipped: [] });
    expect(again.applied.updated.sort()).toEqual([...ids].sort());
  });

  it("backs up the one target of a job's schedule when it fires, and the next plan uses what that backup measured", async () => {
    const handle = workers.client.schedule.getHandle(nightJobScheduleId(lab.site, 'idc', 'vm-002'));
    await handle.trigger();
    let fleetId: string | undefined;
    for (const deadline = Date.now() + 60_000; !fleetId && Date.now() < deadline;) {
      fleetId = (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId;
      if (!fleetId) await new Promise((r) => setTimeout(r, 250));
    }
    const report = await workers.client.workflow.getHandle(fleetId!).result();
    expect(report).toMatchObject({ policy: 'idc', succeeded: 1, failed: 0 });
    expect(report.targets.map((t: { target: string }) => t.target)).toEqual(['vm-002']);

    const catalog = new Catalog(lab.paths.catalog);
    const b = catalog.listBackups({ target: 'vm-002', status: 'complete' })[0]!;
    catalog.close();
    const plan = cliJson<NightPlanResult>(await kura(['plan', 'night', '--date', DATE, '--json']));
    const job = plan.plan.jobs.find((j) => j.target === 'vm-002')!;
    expect(job).toMatchObject({ sizeFrom: 'catalog', sizeBytes: SIZES['vm-002'], rateFrom: 'measured' });
    expect(job.bytesPerSecond).toBeCloseTo(
      (b.sizeBytes / (Date.parse(b.endedAt!) - Date.parse(b.startedAt))) * 1000,
      3,
    );
    // The lab copies far faster than 512 B/s, so the job now takes its minimum of one minute.
    expect(job.durationMs).toBe(60_000);
  });

  it('refuses a plan that leaves a job out, naming it and why, and changes no schedule', async () => {
    // The same estate with a window too short for B's WWW server after the others on one drive.
    const cfg = parse(readFileSync(lab.configFile, 'utf8')) as {
      sites: { night: { window: { end: string } }; libraries: { drives: unknown[] }[] }[];
    };
    cfg.sites[0]!.night.window.end = '02:30';
    const shortFile = path.join(lab.dir, 'short.yaml');
    writeFileSync(shortFile, stringify(cfg));
    const before = (await workers.client.schedule.getHandle(nightJobScheduleId(lab.site, 'idc', 'vm-004')).describe())
      .spec.calendars?.[0];

    const r = await kura(['--config', shortFile, 'plan', 'apply', '--date', DATE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`the night plan of site ${lab.site} leaves 1 job out, so no schedule was changed`);
    expect(r.stderr).toMatch(/idc\/vm-004: it needs 2\.0 h .*it would end at 03:00, after the window closes at 02:30/);

    const after = (await workers.client.schedule.getHandle(nightJobScheduleId(lab.site, 'idc', 'vm-004')).describe())
      .spec.calendars?.[0];
    expect(after).toEqual(before);
  });

  it('gives way to the fixed nightly time again with kura schedule apply', async () => {
    const fixed = scheduleIdFor(lab.site, 'idc');
    const r = cliJson<{ created: string[]; deleted: string[] }>(await kura(['schedule', 'apply', '--json']));
    expect(r.created).toEqual([fixed]);
    expect(r.deleted.sort()).toEqual(jobs.map((t) => nightJobScheduleId(lab.site, 'idc', t)).sort());
    await workers.client.schedule.getHandle(fixed).delete();
  });
});
