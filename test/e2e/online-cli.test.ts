/**
 * `kura backup <target> --online` and `kura datapath` as a person runs them: real processes, the
 * real dev server, the datapath serving the lab volume while qemu-io keeps writing to it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { onlineProgressLine } from '../../src/cli/online';
import type { OnlineBackupReport } from '../../src/domain/datapath';
import type { KuraWorkers } from '../../src/worker';
import { runKura, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';
import { PatternWriter, freePort, nbdUrl } from '../support/nbd';

const SIZE = 8 * 1024 * 1024;
let lab: TestLab;
let workers: KuraWorkers;
let dp: DatapathService;

const kura = (args: string[]) => runKura(lab, args);

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({
    vms: 2,
    dataVolumeSize: SIZE,
    edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort, copyRate: '4MiB' }),
  });
  dp = await startDatapath(lab.loaded, lab.paths);
  workers = await startWorkers(lab);
});

afterAll(async () => {
  await workers?.shutdown();
  await dp?.close();
  lab?.cleanup();
});

describe('kura backup --online', () => {
  it('backs up while the host writes, showing the phases on the way and the quiesce window at the end', async () => {
    const name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
    const writer = new PatternWriter(nbdUrl(dp.nbdPort, name), SIZE);
    writer.start();
    const r = await kura(['backup', 'vm-001', '--online']);
    await writer.stop();
    expect(r.code, r.stderr).toBe(0);
    expect(writer.failed()).toEqual([]);
    expect(r.stderr).toMatch(
      /^online vm-001: base-copy · [\d.]+ (B|KiB|MiB) of 8\.0 MiB — copying array-01\/vm-001-data as of /m,
    );
    expect(r.stdout).toMatch(
      new RegExp(`^backed up vm-001 \\(${name}\\) online as vm-001@\\d{8}T\\d{6}\\d{0,3}Z$`, 'm'),
    );
    expect(r.stdout).toMatch(
      /catch-up round\(s\), path normal; host commands held [\d.]+ ms \(I\/O timeout 30000 ms, [\d.]+%\)/,
    );
  });

  it('prints the report as JSON with --json, the image matching its SHA-256', async () => {
    const r = await kura(['--json', 'backup', 'vm-002', '--online']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as OnlineBackupReport & { ok: boolean };
    expect(report).toMatchObject({ ok: true, target: 'vm-002', sizeBytes: SIZE, ioTimeoutMs: 30_000 });
    expect(report.quiesceMs).toBeGreaterThan(0);
    expect(await sha256(report.image)).toBe(report.sha256);
  });

  it('refuses an unknown target with NotFound and exit code 2, starting nothing', async () => {
    const r = await kura(['backup', 'vm-999', '--online']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^kura: NotFound: unknown target "vm-999" in site t\w+: name a VM/);
    expect([...dp.volumes.values()].map((v) => v.status().mode)).toEqual(['passthrough', 'passthrough']);
  });
});

describe('kura datapath', () => {
  it('refuses a port that is not a number with InvalidInput and exit code 2', async () => {
    const r = await kura(['datapath', '--nbd-port', 'abc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--nbd-port must be a port number from 0 to 65535, not "abc"');
  });
});

describe('the online progress line', () => {
  it('shows round, unreflected bytes, ETA and path while catching up', () => {
    const line = onlineProgressLine(
      'vm-001',
      {
        phase: 'catch-up',
        activity: 'catch-up round 3',
        bytesDone: SIZE,
        bytesTotal: SIZE,
        startedAt: '',
        etaMs: 120,
        unreflectedBytes: 65536,
        rounds: 3,
        path: 'throttled',
        quiesceMs: null,
      },
      0,
    );
    expect(line).toBe(
      'online vm-001: catch-up · round 3 · unreflected 64.0 KiB · ETA 120 ms · path throttled — catch-up round 3',
    );
  });

  it('says the ETA is unknown before a rate has been measured', () => {
    const line = onlineProgressLine(
      'vm-001',
      {
        phase: 'quiesce',
        activity: 'x',
        bytesDone: 0,
        bytesTotal: SIZE,
        startedAt: '',
        etaMs: null,
        unreflectedBytes: 0,
        rounds: 1,
        path: 'normal',
        quiesceMs: null,
      },
      0,
    );
    expect(line).toContain('ETA unknown');
  });
});
