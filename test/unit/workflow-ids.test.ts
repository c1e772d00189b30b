/** Workflow ids, schedule ids and task queues: built in one place, the same for every caller, usable in workflows. */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import * as path from 'node:path';
import {
  backupWorkflowId,
  catalogRebuildWorkflowId,
  fleetWorkflowId,
  guardianWorkflowId,
  isKuraScheduleId,
  ladderWorkflowId,
  onlineBackupWorkflowId,
  operationWorkflowId,
  parseScheduleId,
  nightJobScheduleId,
  poolWorkflowId,
  restoreWorkflowId,
  scheduleIdFor,
  scheduledFleetWorkflowId,
  vmDataBackupWorkflowId,
  vmFailureReportWorkflowId,
} from '../../src/api/workflow-ids';
import { CONTROL_TASK_QUEUE, serverTaskQueue } from '../../src/api/task-queues';

const at = '2026-11-22T02:00:00.000Z';

describe('workflow ids', () => {
  it("names a Nexus caller's failure report and data backup of a VM by the VM and the request's instant", () => {
    expect(vmFailureReportWorkflowId('vm-001', at)).toBe('vm-report/vm-001/20261122T020000Z');
    expect(vmDataBackupWorkflowId('vm-001', at)).toBe('vm-backup/vm-001/20261122T020000Z');
  });

  it('names a backup by its kind, target and the compact instant of the request', () => {
    expect(operationWorkflowId('backup', 'vm-001', at)).toBe('op/backup/vm-001/20261122T020000Z');
    expect(backupWorkflowId('vm-001', at)).toBe('op/backup/vm-001/20261122T020000Z');
  });

  it('keeps an array/volume target whole and the milliseconds of the instant when they are not zero', () => {
    expect(backupWorkflowId('array-01/vm-001-data', '2026-11-22T02:00:00.123Z')).toBe(
      'op/backup/array-01/vm-001-data/20261122T020000123Z',
    );
  });

  it('gives two requests of the same target at different instants different ids, and the same instant the same id', () => {
    expect(backupWorkflowId('vm-001', at)).toBe(backupWorkflowId('vm-001', '2026-11-22T02:00:00Z'));
    expect(backupWorkflowId('vm-001', at)).not.toBe(backupWorkflowId('vm-001', '2026-11-22T02:00:01.000Z'));
  });

  it('names a restore by the backup it restores', () => {
    expect(restoreWorkflowId('vm-001@20261122T020000Z', '2026-11-23T08:30:00.000Z')).toBe(
      'restore/vm-001@20261122T020000Z/20261123T083000Z',
    );
  });

  it('names an online backup by its array and volume', () => {
    expect(onlineBackupWorkflowId('array-01', 'vm-001-data', at)).toBe('online/array-01/vm-001-data/20261122T020000Z');
  });

  it('names a fleet run by its policy: with the instant when started by hand, without when a schedule appends its own', () => {
    expect(fleetWorkflowId('nightly-data', at)).toBe('fleet/nightly-data/20261122T020000Z');
    expect(scheduledFleetWorkflowId('nightly-data')).toBe('fleet/nightly-data');
  });

  it('names the long-lived entities by what they own: a VM guardian, a ladder incident, a site pool', () => {
    expect(guardianWorkflowId('vm-001')).toBe('vm/vm-001');
    expect(ladderWorkflowId('vm-001', '20261122T020000Z-3')).toBe('ladder/vm-001/20261122T020000Z-3');
    expect(poolWorkflowId('hospital')).toBe('pool/hospital');
  });

  it('names a catalog rebuild by its site and the instant of the request', () => {
    expect(catalogRebuildWorkflowId('hospital', at)).toBe('catalog-rebuild/hospital/20261122T020000Z');
  });
});

describe('schedule ids', () => {
  it('names the schedule of a policy by its site and policy', () => {
    expect(scheduleIdFor('hospital', 'nightly-data')).toBe('kura/hospital/nightly-data');
  });

  it('parses back the site and policy it was built from', () => {
    for (const [site, policy] of [
      ['hospital', 'nightly-data'],
      ['t1a2b3c4', 'all'],
      ['site.b_2', 'weekly-full'],
    ] as const) {
      const id = scheduleIdFor(site, policy);
      expect(isKuraScheduleId(id)).toBe(true);
      expect(parseScheduleId(id)).toEqual({ installation: 'default', site, policy });
    }
  });

  it("parses back a night-plan job's schedule, its target holding / and :", () => {
    for (const target of ['a-www', 'array1/vol-7', 'web1:/srv/www']) {
      expect(parseScheduleId(nightJobScheduleId('idc', 'nightly', target))).toEqual({
        installation: 'default',
        site: 'idc',
        policy: 'nightly',
        target,
      });
      expect(parseScheduleId(nightJobScheduleId('idc', 'nightly', target, '3f9c2a71'))).toEqual({
        installation: '3f9c2a71',
        site: 'idc',
        policy: 'nightly',
        target,
      });
    }
    expect(nightJobScheduleId('idc', 'nightly', 'array1/vol-7')).toBe('kura/idc/nightly+array1%2Fvol-7');
  });

  it("tells a site's schedules from those of a site whose name it starts with", () => {
    expect(parseScheduleId(scheduleIdFor('hospital-2', 'nightly'))?.site).toBe('hospital-2');
    expect(parseScheduleId(scheduleIdFor('hospital-2', 'nightly'))?.site).not.toBe('hospital');
  });

  it("does not claim schedules that are not Kura's", () => {
    for (const id of ['backup/hospital/nightly', 'kura', 'kura/', 'kura/hospital']) {
      expect(parseScheduleId(id)).toBeUndefined();
    }
    expect(isKuraScheduleId('nightly-vacuum')).toBe(false);
  });
});

describe('task queues', () => {
  it('puts each backup server on its own queue beside the control queue', () => {
    expect(CONTROL_TASK_QUEUE).toBe('kura-control');
    expect(serverTaskQueue('bks-01')).toBe('kura-server-bks-01');
    expect(serverTaskQueue('bks-01', 't-1234-kura-control')).toBe('t-1234-kura-server-bks-01');
  });

  it('appends the server to a control queue that does not end in "control"', () => {
    expect(serverTaskQueue('bks-02', 'backup-east')).toBe('backup-east-server-bks-02');
  });
});

describe('the builders stay importable by workflow code', () => {
  const root = path.resolve(__dirname, '..', '..');
  const forbidden = (spec: string) =>
    spec.startsWith('node:') ||
    builtinModules.includes(spec.split('/')[0]!) ||
    ['@temporalio/client', '@temporalio/worker', '@temporalio/activity'].includes(spec);

  /** Every module a file loads at run time (type-only imports are erased), followed through relative imports. */
  function runtimeImports(entry: string): { files: string[]; packages: Set<string> } {
    const files: string[] = [];
    const packages = new Set<string>();
    const visit = (file: string) => {
      if (files.includes(file)) return;
      files.push(file);
      const text = readFileSync(path.join(root, file), 'utf8');
      for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?[^;]*?from\s+'([^']+)';/gm)) {
        if (m[1]) continue;
        const spec = m[2]!;
        if (!spec.startsWith('.')) {
          packages.add(spec);
          continue;
        }
        const base = path.join(path.dirname(file), spec);
        visit(existsSync(path.join(root, `${base}.ts`)) ? `${base}.ts` : path.join(base, 'index.ts'));
      }
    };
    visit(entry);
    return { files, packages };
  }

  it('workflow-ids.ts loads nothing but pure domain code and zod', () => {
    const { files, packages } = runtimeImports('src/api/workflow-ids.ts');
    expect(files).toContain('src/domain/catalog.ts');
    expect([...packages]).toEqual(['zod']);
    expect([...packages].filter(forbidden)).toEqual([]);
  });

  it('would catch a module that loads the Temporal client: the facade does', () => {
    const { packages } = runtimeImports('src/api/kura.ts');
    expect([...packages].filter(forbidden)).toContain('@temporalio/client');
  });

  it("the Nexus service's contract loads nothing but pure domain code, zod and nexus-rpc", () => {
    const { files, packages } = runtimeImports('src/api/nexus-service.ts');
    expect(files.filter((f) => !f.startsWith('src/domain/') && !f.startsWith('src/api/'))).toEqual([]);
    expect([...packages].sort()).toEqual(['nexus-rpc', 'zod']);
  });

  it('task-queues.ts loads nothing at all', () => {
    const { files, packages } = runtimeImports('src/api/task-queues.ts');
    expect(files).toEqual(['src/api/task-queues.ts']);
    expect([...packages]).toEqual([]);
  });
});
