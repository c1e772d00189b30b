/**
 * The ladder's pure rules and the lab's VM health model: which rung cures which depth, where a
 * new ladder starts given the stability window, when the next daily backup falls, and how the lab
 * VM answers health checks, restarts once per request, and swaps its data volume.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CURE_DEPTHS,
  RUNGS,
  cures,
  healthWaitOf,
  isDefiniteFailure,
  ladderPolicy,
  nextBackupAt,
  rungForDepth,
  startRungFor,
  type LadderView,
} from '../../src/domain/ladder';
import { LadderConfigSchema } from '../../src/domain/ladder-config';
import { parseConfigText } from '../../src/config/load';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { kuraPaths } from '../../src/config/paths';
import { createLabFiles, labVolumePath } from '../../src/lab/files';
import { LabState } from '../../src/lab/state';
import { LabHypervisor } from '../../src/drivers/lab/hypervisor';
import { sha256File } from '../../src/datamover/files';

describe('cure depths and rungs', () => {
  it('maps each depth to the rung that cures it, and a wider action cures a narrower fault', () => {
    expect(CURE_DEPTHS.map(rungForDepth)).toEqual([
      'apl-restart',
      'mw-restart',
      'os-reboot',
      'data-swap',
      'guarantee-swap',
      'human',
    ]);
    expect(cures('mw', 'apl')).toBe(true);
    expect(cures('apl', 'mw')).toBe(false);
    expect(cures('os', 'data')).toBe(false);
    expect(cures('guarantee', 'data')).toBe(true);
    expect(cures('guarantee', 'none')).toBe(false);
  });
});

describe('startRungFor', () => {
  const at = '2026-01-01T00:00:00.000Z';
  it('starts at the bottom when there was no earlier recovery', () => {
    expect(startRungFor(undefined, at, 60_000)).toBe('apl-restart');
  });
  it('continues above the last cure when the VM fails again within the window', () => {
    expect(startRungFor({ at, rung: 'mw-restart' }, '2026-01-01T00:00:30.000Z', 60_000)).toBe('os-reboot');
    expect(startRungFor({ at, rung: 'guarantee-swap' }, '2026-01-01T00:00:30.000Z', 60_000)).toBe('human');
  });
  it('starts at the bottom again once the VM was healthy for longer than the window', () => {
    expect(startRungFor({ at, rung: 'os-reboot' }, '2026-01-01T00:01:00.001Z', 60_000)).toBe('apl-restart');
  });
});

describe('nextBackupAt', () => {
  it('is the next occurrence of the daily time (UTC), today or tomorrow', () => {
    const now = Date.parse('2026-03-01T02:00:00.000Z');
    expect(new Date(nextBackupAt(now, { dailyBackup: '03:00' })).toISOString()).toBe('2026-03-01T03:00:00.000Z');
    expect(new Date(nextBackupAt(now, { dailyBackup: '01:30' })).toISOString()).toBe('2026-03-02T01:30:00.000Z');
  });
  it('is now plus the interval when one is set', () => {
    expect(nextBackupAt(1000, { dailyBackup: '03:00', backupEveryMs: 250 })).toBe(1250);
  });
});

describe('the ladder section of kura.yaml', () => {
  it('fills defaults and applies per-rung overrides', () => {
    const p = ladderPolicy(
      LadderConfigSchema.parse({
        attempts: 2,
        healthWait: '30s',
        rungs: { 'os-reboot': { healthWait: '5m', attempts: 1 } },
      }),
    );
    expect(p.rungs['apl-restart']).toEqual({ attempts: 2, healthWaitMs: 30_000, backoffMs: 10_000, failedChecks: 3 });
    expect(p.rungs['os-reboot']).toEqual({ attempts: 1, healthWaitMs: 300_000, backoffMs: 10_000, failedChecks: 3 });
    expect(p.keepImages).toBe(3);
    expect(p.dailyBackup).toBe('03:00');
  });
  it('escalates after 3 failed checks by default, per rung as configured, and 0 waits the whole health wait', () => {
    const p = ladderPolicy(
      LadderConfigSchema.parse({ rungs: { 'os-reboot': { failedChecks: 10 }, 'data-swap': { failedChecks: 0 } } }),
    );
    expect(p.rungs['apl-restart'].failedChecks).toBe(3);
    expect(p.rungs['os-reboot'].failedChecks).toBe(10);
    expect(p.rungs['data-swap'].failedChecks).toBe(0);
    expect(ladderPolicy(LadderConfigSchema.parse({ failedChecks: 5 })).rungs['mw-restart'].failedChecks).toBe(5);
    expect(LadderConfigSchema.safeParse({ failedChecks: -1 }).success).toBe(false);
  });
  it('reports a bad value with its path and line', () => {
    const cfg =
      renderConfigYaml(hospitalPreset({ vms: 1 })) +
      'ladder:\n  attempts: 0\n  dailyBackup: "25:00"\n  rungs: { reboot: { attempts: 1 } }\n';
    const message = (() => {
      try {
        parseConfigText(cfg, '/x/kura.yaml');
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(message).toMatch(/is not valid \(3 problems\)/);
    expect(message).toMatch(/ladder\.attempts \(line \d+\): Too small: expected number to be >=1/);
    expect(message).toMatch(/ladder\.dailyBackup \(line \d+\): must be a time of day as HH:MM/);
    expect(message).toMatch(/ladder\.rungs \(line \d+\): Unrecognized key: "reboot"/);
  });
});

describe('the health wait of a rung', () => {
  it('counts only a VM that is up and failing as a definite failure, not one restarting or stopped', () => {
    expect(isDefiniteFailure({ healthy: false, state: 'faulty' })).toBe(true);
    expect(isDefiniteFailure({ healthy: false, state: 'restarting' })).toBe(false);
    expect(isDefiniteFailure({ healthy: false, state: 'stopped' })).toBe(false);
    expect(isDefiniteFailure({ healthy: true, state: 'running' })).toBe(false);
  });

  it('says how long a rung in progress has waited for health and how long it will wait still', () => {
    const view: LadderView = {
      workflowId: 'ladder/vm-001/i',
      site: 's',
      vm: 'vm-001',
      incident: 'i',
      reason: 'r',
      status: 'climbing',
      currentRung: 'mw-restart',
      startedAt: '2026-11-29T10:00:00.000Z',
      rungs: RUNGS.map((rung) => ({ rung, status: 'pending', attempts: [] })),
    };
    view.rungs[1]!.status = 'running';
    view.rungs[1]!.attempts.push({
      attempt: 1,
      startedAt: '2026-11-29T10:00:05.000Z',
      outcome: 'running',
      healthSince: '2026-11-29T10:00:06.000Z',
      healthLimitMs: 120_000,
      escalateAfter: 3,
    });
    expect(healthWaitOf(view, Date.parse('2026-11-29T10:00:36.000Z'))).toEqual({
      rung: 'mw-restart',
      attempt: 1,
      since: '2026-11-29T10:00:06.000Z',
      waitedMs: 30_000,
      remainingMs: 90_000,
      escalateAfter: 3,
    });
    expect(healthWaitOf(view, Date.parse('2026-11-29T10:05:00.000Z'))?.remainingMs).toBe(0);
    // While the action runs there is no health wait yet; nor once the ladder waits for a person.
    delete view.rungs[1]!.attempts[0]!.healthSince;
    expect(healthWaitOf(view, Date.parse('2026-11-29T10:00:36.000Z'))).toBeUndefined();
    expect(healthWaitOf({ ...view, status: 'waiting-for-human', currentRung: 'human' }, 0)).toBeUndefined();
  });
});

describe('the lab VM', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function setup() {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kura-labvm-'));
    const text = renderConfigYaml({
      ...hospitalPreset({ vms: 1, dataVolumeSize: 65536, softwareVolumeSize: 65536, site: 's' }),
      lab: { aplRestart: 0, mwRestart: 0, osReboot: 0 },
    } as never);
    writeFileSync(path.join(dir, 'kura.yaml'), text);
    const loaded = parseConfigText(text, path.join(dir, 'kura.yaml'));
    const paths = kuraPaths(loaded);
    await createLabFiles(loaded, paths);
    const state = new LabState(paths.labState);
    return { loaded, paths, state, hv: new LabHypervisor(loaded, state, paths) };
  }

  it('is healthy until it has a fault, and a restart of the right depth cures it once per request', async () => {
    const { state, hv } = await setup();
    try {
      expect((await hv.health('s', 'vm-001')).healthy).toBe(true);
      state.setVmFault('s', 'vm-001', 'mw');
      expect(await hv.health('s', 'vm-001')).toMatchObject({ healthy: false, state: 'faulty' });
      await hv.restart('s', 'vm-001', 'apl', { request: 'r1', rung: 'apl-restart', incident: 'i' });
      expect((await hv.health('s', 'vm-001')).healthy).toBe(false);
      await hv.restart('s', 'vm-001', 'mw', { request: 'r2', rung: 'mw-restart', incident: 'i' });
      await hv.restart('s', 'vm-001', 'mw', { request: 'r2', rung: 'mw-restart', incident: 'i' });
      expect((await hv.health('s', 'vm-001')).healthy).toBe(true);
      expect(state.events({ device: 'vm-001' }).map((e) => [e.event, e.detail.cured])).toEqual([
        ['apl-restart', false],
        ['mw-restart', true],
      ]);
    } finally {
      state.close();
    }
  });

  it('builds a new data volume from an image and swaps it in, leaving the software volume alone', async () => {
    const { state, hv, paths } = await setup();
    try {
      const data = labVolumePath(paths, 's', 'array-01', 'vm-001-data');
      const sw = labVolumePath(paths, 's', 'array-01', 'vm-001-sw');
      const swBefore = readFileSync(sw);
      const imageFile = path.join(dir, 'img');
      const progress: { bytes: number; total: number }[] = [];
      const made = await hv.writeBaseImage('s', 'vm-001', 'guarantee', imageFile, (p) => progress.push(p));
      // The startup-guarantee image is the data the VM was created with, byte for byte.
      expect(made).toEqual({ sizeBytes: 65536, sha256: await sha256File(data) });
      expect(await sha256File(imageFile)).toBe(made.sha256);
      expect(progress.at(-1)).toEqual({ bytes: 65536, total: 65536 });
      writeFileSync(data, Buffer.alloc(65536, 1));
      state.setVmFault('s', 'vm-001', 'guarantee');
      const image = {
        imageId: 'vm-001@guarantee',
        kind: 'guarantee' as const,
        file: imageFile,
        sizeBytes: made.sizeBytes,
        sha256: made.sha256,
      };
      const req = { request: 'swap-1', rung: 'guarantee-swap', incident: 'i' };
      const { volume } = await hv.createVolumeFromImage(
        's',
        'vm-001',
        image,
        { ...req, request: 'c-1' },
        () => undefined,
      );
      await hv.swapDataVolume('s', 'vm-001', volume, image, req);
      await hv.swapDataVolume('s', 'vm-001', volume, image, req);
      expect(await sha256File(data)).toBe(made.sha256);
      expect(readFileSync(sw).equals(swBefore)).toBe(true);
      expect((await hv.health('s', 'vm-001')).healthy).toBe(true);
      expect(state.events({ device: 'vm-001', event: 'volume-swap' })).toHaveLength(1);
      await expect(
        hv.createVolumeFromImage(
          's',
          'vm-001',
          { ...image, sha256: 'f'.repeat(64) },
          { ...req, request: 'c-2' },
          () => undefined,
        ),
      ).rejects.toMatchObject({
        type: 'ChecksumMismatch',
        message: `the volume built from image vm-001@guarantee hashes to ${made.sha256}, but the image was recorded as ${'f'.repeat(64)}; the image is damaged`,
      });
    } finally {
      state.close();
    }
  });
});
