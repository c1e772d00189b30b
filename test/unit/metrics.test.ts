/**
 * The worker's metrics without a server: what the activity interceptor counts from the activities
 * it sees finish or fail, and the `metrics` section of kura.yaml.
 */
import { describe, expect, it } from 'vitest';
import type { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { parseConfigText } from '../../src/config/load';
import { ConfigInvalidError } from '../../src/domain/errors';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { metricsInterceptor } from '../../src/metrics/activity-interceptor';
import { WorkerMetrics } from '../../src/metrics/worker-metrics';
import { parseExposition, type Exposition } from '../support/prometheus';

/** Runs one activity through the interceptor as a worker would, in a workflow of this type and id. */
async function run(
  metrics: WorkerMetrics,
  activity: { type: string; workflowType: string; workflowId: string; arg: unknown },
  body: () => Promise<unknown>,
): Promise<unknown> {
  const ctx = {
    info: {
      activityType: activity.type,
      workflowType: activity.workflowType,
      workflowExecution: { workflowId: activity.workflowId, runId: 'r' },
    },
  } as unknown as Context;
  const inbound = metricsInterceptor(metrics)(ctx).inbound!;
  return inbound.execute!({ args: [activity.arg], headers: {} }, () => body());
}

async function exposition(metrics: WorkerMetrics): Promise<Exposition> {
  return parseExposition(await metrics.registry.metrics());
}

const op = { workflowType: 'sanOperation', workflowId: 'op/backup/vm-001/20261129T020000Z' };

describe('the activity interceptor', () => {
  it('counts a completed backup once, with the bytes and duration of its catalog record', async () => {
    const m = new WorkerMetrics();
    const record = {
      target: 'vm-001',
      sizeBytes: 12_345,
      startedAt: '2026-11-29T02:00:00.000Z',
      endedAt: '2026-11-29T02:00:30.000Z',
    };
    await expect(run(m, { ...op, type: 'completeBackup', arg: {} }, async () => record)).resolves.toBe(record);
    const e = await exposition(m);
    const labels = { class: 'vm', method: 'backup' };
    expect(e.value('kura_backup_bytes_total', labels)).toBe(12_345);
    expect(e.value('kura_backup_duration_seconds_sum', labels)).toBe(30);
    expect(e.value('kura_backup_duration_seconds_bucket', { ...labels, le: '15' })).toBe(0);
    expect(e.value('kura_backup_duration_seconds_bucket', { ...labels, le: '60' })).toBe(1);
  });

  it('counts the bytes of a backup whose record lacks its end, without a duration that is not a number', async () => {
    const m = new WorkerMetrics();
    const record = { target: 'vm-001', sizeBytes: 100, startedAt: '2026-11-29T02:00:00.000Z', endedAt: null };
    await run(m, { ...op, type: 'completeBackup', arg: {} }, async () => record);
    const e = await exposition(m);
    expect(e.value('kura_backup_bytes_total', { class: 'vm', method: 'backup' })).toBe(100);
    expect(e.find('kura_backup_duration_seconds_count')).toEqual([]);
    expect(e.find('kura_backup_duration_seconds_sum')).toEqual([]);
  });

  it('counts an online backup of array/volume under the volume class and the online method', async () => {
    const m = new WorkerMetrics();
    const arg = { target: 'array-01/vol-7', sizeBytes: 4096, startedAt: new Date(Date.now() - 2000).toISOString() };
    const online = { workflowType: 'onlineBackup', workflowId: 'online/array-01/vol-7/20261129T020000Z' };
    await run(m, { ...online, type: 'recordOnlineImage', arg }, async () => ({ sha256: 'x' }));
    const e = await exposition(m);
    expect(e.value('kura_backup_bytes_total', { class: 'volume', method: 'online' })).toBe(4096);
    expect(e.value('kura_backup_duration_seconds_sum', { class: 'volume', method: 'online' })).toBeGreaterThanOrEqual(
      2,
    );
  });

  it('counts a failed backup by the type its catalog record starts with', async () => {
    const m = new WorkerMetrics();
    const arg = { backupId: 'vm-001@20261129T020000Z', error: 'NoResources: no drive free in library lib-1' };
    await run(m, { ...op, type: 'failBackup', arg }, async () => undefined);
    const e = await exposition(m);
    expect(e.value('kura_backup_failures_total', { class: 'vm', method: 'backup', type: 'NoResources' })).toBe(1);
    expect(e.value('kura_backups_total', { class: 'vm', method: 'backup', outcome: 'failed' })).toBe(1);
  });

  it('counts a failed activity attempt by its failure type and re-throws the same error', async () => {
    const m = new WorkerMetrics();
    const fault = ApplicationFailure.create({ message: 'drive-1 jammed', type: 'DeviceFault' });
    await expect(run(m, { ...op, type: 'copyPiece', arg: {} }, () => Promise.reject(fault))).rejects.toBe(fault);
    const e = await exposition(m);
    expect(e.value('kura_activity_failures_total', { activity: 'copyPiece', type: 'DeviceFault' })).toBe(1);
  });

  it('counts a ladder incident under the rung whose health wait saw the VM healthy, and no other', async () => {
    const m = new WorkerMetrics();
    const ladder = { workflowType: 'recoveryLadder', workflowId: 'ladder/vm-001/1' };
    const wait = (rung: string, healthy: boolean) =>
      run(m, { ...ladder, type: 'awaitHealthy', arg: { site: 's', vm: 'vm-001', rung } }, async () => ({ healthy }));
    await wait('apl-restart', false);
    await wait('mw-restart', true);
    const e = await exposition(m);
    expect(e.find('kura_ladder_incidents_cured_total').map((s) => [s.labels.rung, s.value])).toEqual([
      ['mw-restart', 1],
    ]);
  });
});

describe("kura.yaml's metrics section", () => {
  const yaml = (metrics?: Record<string, number>) => {
    const cfg = hospitalPreset({ vms: 2 });
    if (metrics) cfg.metrics = metrics;
    return renderConfigYaml(cfg);
  };

  it('turns every endpoint off when absent', () => {
    expect(parseConfigText(yaml(), '/k/kura.yaml').config.metrics).toEqual({
      workerPort: 0,
      temporalPort: 0,
      datapathPort: 0,
    });
  });

  it('refuses two endpoints on one port, naming both', () => {
    let err: unknown;
    try {
      parseConfigText(yaml({ workerPort: 9464, datapathPort: 9464 }), '/k/kura.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigInvalidError);
    const issues = (err as ConfigInvalidError).issues.map(
      (i) => `${i.path.replace(/ \(line \d+\)$/, '')}: ${i.message}`,
    );
    expect(issues).toEqual(["metrics.datapathPort: port 9464 is already workerPort's"]);
  });
});
