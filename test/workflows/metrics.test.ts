/**
 * A worker process's Prometheus endpoints, as an operator's scraper sees them: after a backup,
 * Kura's endpoint counts exactly the backup's bytes for its class and method and shows the
 * target's recovery point and the pool's devices, and the Temporal SDK's own endpoint serves the
 * SDK's metrics beside it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { connectKura, makeLab, startWorkerProcess, type TestLab } from '../support/harness';
import { freePort } from '../support/nbd';
import { parseExposition, scrape, type Exposition } from '../support/prometheus';
import type { BackupReport } from '../../src/domain/jobs';

let lab: TestLab;
let workerPort: number;
let temporalPort: number;
const procs: ChildProcess[] = [];
let report: BackupReport;
let kuraMetrics: Exposition;

beforeAll(async () => {
  [workerPort, temporalPort] = [await freePort(), await freePort()];
  lab = await makeLab({ vms: 2, edit: (cfg) => void (cfg.metrics = { workerPort, temporalPort }) });
  // Its own process: the SDK's metrics are set when a process installs the Temporal runtime, once.
  await startWorkerProcess(lab, procs);
  const { kura, close } = await connectKura(lab);
  try {
    const handle = await kura.startBackup('vm-001', { requestedBy: 'metrics-test' });
    report = await handle.result();
  } finally {
    await close();
  }
  const { contentType, text } = await scrape(`http://127.0.0.1:${workerPort}/metrics`);
  expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  kuraMetrics = parseExposition(text);
});

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  lab?.cleanup();
});

describe("a worker's metrics after a backup", () => {
  it("count exactly the backup's bytes, once, under its class and method", () => {
    expect(report.sizeBytes).toBe(4 * 1024 * 1024);
    const labels = { class: 'vm', method: 'backup' };
    expect(kuraMetrics.types.get('kura_backup_bytes_total')).toBe('counter');
    expect(kuraMetrics.value('kura_backup_bytes_total', labels)).toBe(report.sizeBytes);
    expect(kuraMetrics.value('kura_backups_total', { ...labels, outcome: 'complete' })).toBe(1);
    expect(kuraMetrics.find('kura_backups_total', { outcome: 'failed' })).toEqual([]);
  });

  it("observe the backup's duration from its start to its record", () => {
    const labels = { class: 'vm', method: 'backup' };
    const seconds = (Date.parse(report.endedAt) - Date.parse(report.startedAt)) / 1000;
    expect(kuraMetrics.value('kura_backup_duration_seconds_count', labels)).toBe(1);
    // The catalog's end is taken just before the report's, so the two differ by the report's last steps.
    const observed = kuraMetrics.value('kura_backup_duration_seconds_sum', labels);
    expect(observed).toBeGreaterThan(0);
    expect(observed).toBeLessThanOrEqual(seconds);
  });

  it("show the target's recovery point: the age of its newest good backup", () => {
    const labels = { site: lab.site, target: 'vm-001' };
    const age = kuraMetrics.value('kura_last_good_backup_age_seconds', labels);
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(120);
    expect(kuraMetrics.value('kura_last_good_backup_timestamp_seconds', labels)).toBe(
      Date.parse(report.startedAt) / 1000,
    );
    // A target never backed up has no recovery point to show.
    expect(kuraMetrics.find('kura_last_good_backup_age_seconds', { target: 'vm-002' })).toEqual([]);
  });

  it("show the site pool's devices by kind and state", () => {
    const site = lab.loaded.config.sites[0]!;
    const drives = site.libraries.reduce((n, l) => n + l.drives.length, 0);
    const count = (kind: string) =>
      kuraMetrics.find('kura_pool_devices', { site: lab.site, kind }).reduce((n, s) => n + s.value, 0);
    expect(count('drive')).toBe(drives);
    expect(count('server')).toBe(site.servers.length);
    // The backup released everything it held: every drive is available again.
    expect(kuraMetrics.value('kura_pool_devices', { site: lab.site, kind: 'drive', state: 'available' })).toBe(drives);
  });

  it("serve the Temporal SDK's own metrics on their own port", async () => {
    const sdk = parseExposition((await scrape(`http://127.0.0.1:${temporalPort}/metrics`)).text);
    const names = [...sdk.types.keys()];
    expect(names.length).toBeGreaterThan(0);
    expect(names.every((n) => n.startsWith('temporal_'))).toBe(true);
    expect(sdk.find('temporal_activity_execution_latency_count').length).toBeGreaterThan(0);
  });
});
