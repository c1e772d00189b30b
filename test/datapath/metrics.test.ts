/**
 * The datapath's Prometheus endpoint: a host's reads and writes over NBD show up as latency
 * histograms and bytes of that volume and operation, and a backup's journal as its bytes on disk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { datapathVolumes, startDatapath, type DatapathService } from '../../src/datapath/service';
import { DatapathClient } from '../../src/datapath/client';
import { JOURNAL_HEADER_BYTES } from '../../src/datapath/journal';
import { makeLab, type TestLab } from '../support/harness';
import { freePort, nbdUrl, qemuIo } from '../support/nbd';
import { parseExposition, scrape } from '../support/prometheus';

const SIZE = 1024 * 1024;
let lab: TestLab;
let dp: DatapathService;
let name: string;

beforeAll(async () => {
  const [nbdPort, controlPort, datapathPort] = [await freePort(), await freePort(), await freePort()];
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: SIZE,
    edit: (cfg) => {
      cfg.datapath = { nbdPort, controlPort };
      cfg.metrics = { datapathPort };
    },
  });
  dp = await startDatapath(lab.loaded, lab.paths);
  name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

describe('the datapath metrics', () => {
  it('are served on the configured loopback port only when kura.yaml asks for them', async () => {
    const port = lab.loaded.config.metrics.datapathPort;
    expect(dp.metricsUrl).toBe(`http://127.0.0.1:${port}/metrics`);
    const off = await startDatapath(lab.loaded, lab.paths, { nbdPort: 0, controlPort: 0, metricsPort: 0 });
    try {
      expect(off.metricsUrl).toBeUndefined();
    } finally {
      await off.close();
    }
  });

  it("count the host's writes and reads by volume and operation, with their latency", async () => {
    const before = parseExposition((await scrape(dp.metricsUrl!)).text);
    const count = (e: typeof before, metric: string, op: string) => e.find(metric, { volume: name, op })[0]?.value ?? 0;
    await qemuIo(nbdUrl(dp.nbdPort, name), ['write -P 0xab 0 64k', 'write -P 0xcd 64k 32k', 'read -P 0xab 0 64k']);
    const { contentType, text } = await scrape(dp.metricsUrl!);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const after = parseExposition(text);
    expect(after.types.get('kura_datapath_io_seconds')).toBe('histogram');
    const delta = (metric: string, op: string) => count(after, metric, op) - count(before, metric, op);
    expect(delta('kura_datapath_io_seconds_count', 'write')).toBe(2);
    expect(delta('kura_datapath_io_bytes_total', 'write')).toBe(96 * 1024);
    expect(delta('kura_datapath_io_bytes_total', 'read')).toBeGreaterThanOrEqual(64 * 1024);
    // Every request falls in the +Inf bucket, and the histogram's sum is a time, not a count.
    expect(after.value('kura_datapath_io_seconds_bucket', { volume: name, op: 'write', le: '+Inf' })).toBe(
      after.value('kura_datapath_io_seconds_count', { volume: name, op: 'write' }),
    );
    expect(after.value('kura_datapath_io_seconds_sum', { volume: name, op: 'write' })).toBeGreaterThan(0);
    expect(delta('kura_datapath_io_errors_total', 'write')).toBe(0);
  });

  it("report a backup's journal as the bytes of its file, and the phase the volume is in", async () => {
    const client = new DatapathClient(dp.controlUrl, dp.token);
    const backupId = 'metrics@20261129T000000Z';
    const image = path.join(lab.dir, 'metrics.img');
    const idle = parseExposition((await scrape(dp.metricsUrl!)).text);
    expect(idle.value('kura_datapath_journal_bytes', { volume: name })).toBe(0);
    expect(idle.value('kura_datapath_phase', { volume: name, phase: 'passthrough' })).toBe(1);

    await client.enterBackup(name, backupId, image);
    try {
      await qemuIo(nbdUrl(dp.nbdPort, name), ['write -P 0x11 0 4k', 'write -P 0x22 8k 4k']);
      const e = parseExposition((await scrape(dp.metricsUrl!)).text);
      const files = datapathVolumes(lab.loaded, lab.paths).find((v) => v.name === name)!;
      const journal = path.join(files.stateDir, `${path.basename(files.mainFile)}.journal`);
      expect(e.value('kura_datapath_journal_bytes', { volume: name })).toBe(statSync(journal).size);
      expect(e.value('kura_datapath_journal_bytes', { volume: name })).toBeGreaterThanOrEqual(
        2 * (JOURNAL_HEADER_BYTES + 4096),
      );
      expect(e.value('kura_datapath_journal_entries', { volume: name })).toBeGreaterThanOrEqual(2);
      expect(e.value('kura_datapath_phase', { volume: name, phase: 'passthrough' })).toBe(0);
      expect(e.find('kura_datapath_phase', { volume: name }).filter((s) => s.value === 1)).toHaveLength(1);
    } finally {
      await client.abort(name, backupId);
    }
    const done = parseExposition((await scrape(dp.metricsUrl!)).text);
    expect(done.value('kura_datapath_journal_bytes', { volume: name })).toBe(0);
  });

  it('answer any other path with a 404', async () => {
    const res = await fetch(dp.metricsUrl!.replace('/metrics', '/'));
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('/metrics');
  });
});
