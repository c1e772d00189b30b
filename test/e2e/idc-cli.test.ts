/**
 * The shared SAN from the command line, as an operator runs it: `kura lab init --preset idc`
 * writes two companies on one SAN, `kura san show` lists per host each LDEV at its port and LUN,
 * the zones and the masks, and `--perf` adds per-volume IOPS, read/write ratio and bytes from a
 * running datapath's counters.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import type { SanView } from '../../src/domain/tenancy';
import type { VolumePerf } from '../../src/domain/volume-perf';
import { cliJson, makeLab, runKura, type TestLab } from '../support/harness';
import { freePort, nbdUrl, qemuIo } from '../support/nbd';

let lab: TestLab;
let dp: DatapathService;
const fresh = mkdtempSync(path.join(os.tmpdir(), 'kura-idc-'));
/** A lab of its own for `lab init`: only its directory and kura.yaml matter to the CLI. */
const initLab = (): TestLab => ({ ...lab, dir: fresh, configFile: path.join(fresh, 'kura.yaml') });

beforeAll(async () => {
  const [nbdPort, controlPort, datapathPort] = [await freePort(), await freePort(), await freePort()];
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 1024 * 1024,
    edit: (cfg) => {
      cfg.datapath = { nbdPort, controlPort };
      cfg.metrics = { datapathPort };
    },
  });
  dp = await startDatapath(lab.loaded, lab.paths);
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
  rmSync(fresh, { recursive: true, force: true });
});

describe('kura lab init --preset idc and kura san show', () => {
  it('writes two companies on one SAN and lists, per host, each LDEV at its port and LUN, the zones and the masks', async () => {
    const init = await runKura(initLab(), ['lab', 'init', '--preset', 'idc']);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain('site idc, 4 VMs on 2 hosts, 8 volumes');

    const shown = await runKura(initLab(), ['san', 'show']);
    expect(shown.code, shown.stderr).toBe(0);
    const line = shown.stdout.split('\n').find((l) => l.startsWith('bks-b ') && l.includes('b-www-data'));
    expect(line?.split(/\s{2,}/)).toEqual([
      'bks-b',
      'server',
      'b-corp',
      '21:00:00:24:ff:4b:02:01',
      'array-01/b-www-data',
      'cl1-b (50:06:0e:80:00:00:02:01)',
      '7',
      'b-corp',
      'b-zone',
    ]);

    const view = cliJson<SanView & { ok: boolean }>(await runKura(initLab(), ['san', 'show', '--json']));
    expect(view.zones.map((z) => `${z.company}/${z.name}`)).toEqual(['a-corp/a-zone', 'b-corp/b-zone']);
    // No host or server of one company sees a LUN of the other.
    for (const h of view.hosts) expect(h.luns.every((l) => l.owner === h.company)).toBe(true);
    expect(view.masks).toHaveLength(8);
  });

  it("adds per-volume IOPS, read/write ratio and bytes from the datapath's counters", async () => {
    const volume = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
    // The host keeps doing I/O (three reads to each write) while the CLI takes its two readings.
    let running = true;
    const host = (async () => {
      let n = 0;
      while (running) {
        await qemuIo(nbdUrl(dp.nbdPort, volume), ['write -P 0x5a 0 4k', 'read 0 4k', 'read 4k 4k', 'read 8k 4k']);
        n++;
      }
      return n;
    })();
    const run = await runKura(lab, ['san', 'show', '--perf', '--interval', '2s', '--json']);
    running = false;
    const rounds = await host;
    expect(run.code, run.stderr).toBe(0);
    const perf = cliJson<{ perf: VolumePerf[] }>(run).perf.find((p) => p.volume === volume);
    expect(perf).toBeDefined();
    expect(perf!.iops).toBeGreaterThan(0);
    // Three reads to a write, give or take the round each reading may cut in two.
    expect(perf!.readRatio).toBeGreaterThan(0.6);
    expect(perf!.readRatio).toBeLessThan(0.9);
    // The byte totals are the counters since the datapath started: at most what the host did.
    expect(perf!.bytesWritten).toBeGreaterThan(0);
    expect(perf!.bytesWritten).toBeLessThanOrEqual(rounds * 4096);
    expect(perf!.bytesRead).toBe(perf!.reads * 4096);
  });

  it('refuses --perf when the datapath serves no metrics, saying what to set', async () => {
    const r = await runKura(initLab(), ['san', 'show', '--perf']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      "--perf reads the datapath's counters, which it serves only when metrics.datapathPort is set",
    );
  });
});
