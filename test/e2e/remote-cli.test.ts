/**
 * The lab WAN and remote copy as a person drives them from the CLI: faults set, a partition
 * started and cleared, and a refusal for a group kura.yaml does not hold (exit 2, its type named).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, makeLab, runKura, type TestLab } from '../support/harness';
import { readWanFaults, wanFaultsFile } from '../../src/lab/wan';
import { freePort } from '../remote/ledger';
import { groupName, withRemoteSite } from '../remote/lab';

let lab: TestLab;
const GROUP = groupName();
const kura = (args: string[]) => runKura(lab, args);

beforeAll(async () => {
  lab = await makeLab({ vms: 2, dataVolumeSize: 1024 * 1024, edit: withRemoteSite(await freePort(), GROUP) });
});

afterAll(() => lab?.cleanup());

describe('kura lab wan and kura remote', () => {
  it('sets faults, partitions the WAN for a while, shows it, and clears it', async () => {
    const set = await kura(['lab', 'wan', 'set', '--reorder', '0.3', '--drop', '0.1', '--delay', '20ms', '--json']);
    expect(set.code).toBe(0);
    expect(cliJson<{ faults: { reorder: number; drop: number; delayMs: number } }>(set).faults).toMatchObject({
      reorder: 0.3,
      drop: 0.1,
      delayMs: 20,
    });
    const before = Date.now();
    expect((await kura(['lab', 'wan', 'partition', '10s'])).code).toBe(0);
    const faults = readWanFaults(wanFaultsFile(lab.paths.lab));
    // The partition is added to the faults already set, and ends ten seconds from when it was asked.
    expect(faults.drop).toBe(0.1);
    expect(faults.partitionUntil).toBeGreaterThanOrEqual(before + 10_000);
    expect(faults.partitionUntil).toBeLessThan(Date.now() + 10_000);
    const show = await kura(['lab', 'wan', 'show']);
    expect(show.stdout).toMatch(/latency 5 ms/);
    expect(show.stdout).toMatch(/drop 0\.1/);
    expect(show.stdout).toMatch(/partitioned for another/);

    expect((await kura(['lab', 'wan', 'clear'])).code).toBe(0);
    expect(readWanFaults(wanFaultsFile(lab.paths.lab))).toMatchObject({ drop: 0, reorder: 0, partitionUntil: 0 });
  });

  it('refuses a chance out of range and a group kura.yaml does not hold', async () => {
    const bad = await kura(['lab', 'wan', 'set', '--drop', '1.5']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--drop must be a chance between 0 and 1/);
    const none = await kura(['remote', 'failover', 'nope']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/NotFound/);
    expect(none.stderr).toContain(`no remote-copy group "nope" in ${lab.configFile}; groups: ${GROUP}`);
  });
});
