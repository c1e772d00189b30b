/**
 * The `kura` CLI as a person (or a script with --json) runs it: real processes, a real server,
 * real files. Exit codes: 0 done, 2 the input was refused (nothing changed), 1 the job failed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { cliJson, runKura, makeLab, sha256, startWorkers, treeFingerprint, type TestLab } from '../support/harness';
import type { KuraWorkers } from '../../src/worker';
import { scheduleIdFor } from '../../src/client';

let lab: TestLab;
let workers: KuraWorkers;

const kura = (args: string[], env: Record<string, string> = {}) => runKura(lab, args, env);

const json = cliJson;

beforeAll(async () => {
  lab = await makeLab({ vms: 3, dataVolumeSize: 3 * 1024 * 1024, pieceSize: '1MiB' });
  workers = await startWorkers(lab);
});

afterAll(async () => {
  await workers?.shutdown();
  lab?.cleanup();
});

describe('kura backup, catalog and restore', () => {
  it('backs up a VM, lists it, and restores it byte-identical, all with --json', async () => {
    const b = await kura(['backup', 'vm-001', '--chunks', '3', '--json']);
    expect(b.code).toBe(0);
    const backup = json<{ ok: boolean; backupId: string; pieces: unknown[] }>(b);
    expect(backup.ok).toBe(true);
    expect(backup.pieces).toHaveLength(3);

    const list = json<{ backupId: string; status: string }[]>(await kura(['catalog', 'list', '--json']));
    expect(list.find((r) => r.backupId === backup.backupId)?.status).toBe('complete');
    const shown = json<{ pieces: { piece: number; tape: string }[] }>(
      await kura(['catalog', 'show', backup.backupId, '--json']),
    );
    expect(shown.pieces.map((p) => p.piece)).toEqual([0, 1, 2]);

    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    const r = await kura(['restore', backup.backupId, '--to', dest, '--json']);
    expect(r.code).toBe(0);
    expect(json<{ destination: string }>(r).destination).toBe(dest);
    expect(await sha256(dest)).toBe(await sha256(lab.dataVolume('vm-001')));
  });

  it('shows progress and a summary a person can act on', async () => {
    const r = await kura(['backup', 'vm-002']);
    expect(r.code).toBe(0);
    // A phase before the end, as the first poll found it (on a loaded machine, past resolve already).
    expect(r.stderr).toMatch(/backup vm-002: (accept|resolve|plan|launch|collect) \d+% — \S/);
    expect(r.stderr).toMatch(/backup vm-002: done 100% — backed up 3145728 bytes as vm-002@/);
    expect(r.stdout).toMatch(/backed up vm-002 \(array-01\/vm-002-data\) as vm-002@\d{8}T\d{6}/);
    expect(r.stdout).toMatch(/restore with: kura restore vm-002@/);
  });

  it('copies on two streams in parallel mode, showing each stream and what became of it', async () => {
    const r = await kura(['backup', 'vm-003', '--streams', '2', '--mode', 'parallel', '--chunks', '4']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/stream 0 L1T\d+ (copying|done) \(bks-01 → fcsw-01 → lib-01\/lib-01-drv-\d\)/);
    expect(r.stderr).toMatch(/stream 1 L2T\d+ (copying|done) \(bks-02 → fcsw-02 → lib-02\/lib-02-drv-\d\)/);
    expect(r.stdout).toMatch(/in 8 piece\(s\) on .* \(parallel\)/);
    expect(r.stdout).toMatch(/stream 0: bks-01 → fcsw-01 → lib-01\/lib-01-drv-\d with L1T\d+: complete, 4 piece\(s\)/);
    expect(r.stdout).toMatch(/stream 1: bks-02 → fcsw-02 → lib-02\/lib-02-drv-\d with L2T\d+: complete, 4 piece\(s\)/);
  });

  it('rebuilds the catalog from the cartridges and finds it equal to the catalog', async () => {
    const out = path.join(lab.dir, 'rebuilt.db');
    const r = await kura(['catalog', 'rebuild', '--from-tapes', '--out', out, '--json']);
    expect(r.code).toBe(0);
    const result = json<{ backups: number; differences: string[] | null }>(r);
    expect(result.backups).toBeGreaterThanOrEqual(3);
    expect(result.differences).toEqual([]);
    const again = await kura(['catalog', 'rebuild', '--from-tapes', '--out', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/DestinationExists: .*rebuilt\.db already exists/);
  });

  it('writes no rebuilt catalog when a cartridge cannot be read, naming each one and why', async () => {
    const mark = (device: string, state: string) =>
      kura(['pool', 'mark', device, state, '--reason', 'robot arm jammed', '--json']);
    for (const d of ['lib-01-drv-1', 'lib-01-drv-2']) expect((await mark(d, 'unavailable')).code).toBe(0);
    try {
      const out = path.join(lab.dir, 'rebuilt-partial.db');
      const r = await kura(['catalog', 'rebuild', '--from-tapes', '--out', out, '--wait', '0s', '--json']);
      expect(r.code).toBe(1);
      const { error } = json<{ error: { type: string; message: string } }>(r);
      expect(error.type).toBe('NoResources');
      expect(error.message).toMatch(
        /^4 of 8 cartridge\(s\) could not be read, so no catalog was written \(lib-01\/L1T001: NoResources: cartridge L1T001 cannot be had: lib-01-drv-1 is unavailable: robot arm jammed; lib-01-drv-2 is unavailable: robot arm jammed, .*`kura pool mark lib-01-drv-1 available`.*; lib-01\/L1T002: /,
      );
      expect(error.message).toContain('lib-01/L1T004: NoResources');
      expect(existsSync(out)).toBe(false);

      const human = await kura(['catalog', 'rebuild', '--from-tapes', '--out', out, '--wait', '0s']);
      expect(human.code).toBe(1);
      expect(human.stderr).toMatch(
        new RegExp(
          `catalog rebuild ${lab.site}: cartridge L1T001 of lib-01 not read: NoResources: cartridge L1T001 cannot be had: lib-01-drv-1 is unavailable`,
        ),
      );
      expect(human.stderr).toMatch(new RegExp(`catalog rebuild ${lab.site}: 8/8 cartridges, \\d+ catalog entries`));
      expect(human.stderr).toMatch(/kura: NoResources: 4 of 8 cartridge\(s\) could not be read/);
      expect(existsSync(out)).toBe(false);
      const bad = await kura(['catalog', 'rebuild', '--from-tapes', '--out', out, '--wait', 'soon']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/InvalidInput: --wait must be a duration such as 0s, 30s or 10m, not "soon"/);
    } finally {
      for (const d of ['lib-01-drv-1', 'lib-01-drv-2']) await mark(d, 'available');
    }
  });
});

describe('refused input changes nothing', () => {
  it('refuses an unknown target with NotFound and exit code 2', async () => {
    const before = treeFingerprint(lab.paths.lab);
    const r = await kura(['backup', 'vm-999']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^kura: NotFound: unknown target "vm-999" in site t\w+: name a VM/);
    expect(treeFingerprint(lab.paths.lab)).toBe(before);
  });

  it('refuses an unknown backup id with NotFound', async () => {
    const r = await kura([
      'restore',
      'vm-001@20200101T000000Z',
      '--to',
      path.join(lab.dir, 'restores', 'none.img'),
      '--json',
    ]);
    expect(r.code).toBe(2);
    expect(json<{ error: { type: string; message: string } }>(r).error).toMatchObject({
      type: 'NotFound',
      message: expect.stringMatching(/no backup "vm-001@20200101T000000Z"/),
    });
    expect(existsSync(path.join(lab.dir, 'restores', 'none.img'))).toBe(false);
  });

  it('refuses a restore outside the restore roots with AccessDenied', async () => {
    const list = json<{ backupId: string }[]>(await kura(['catalog', 'list', '--json']));
    const outside = path.join(lab.dir, 'outside.img');
    const r = await kura(['restore', list[0]!.backupId, '--to', outside]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/kura: AccessDenied: restore destination .*outside\.img is outside the restore roots/);
    expect(existsSync(outside)).toBe(false);
  });

  it('refuses --store for a tape backup, and a store that is neither primary nor copy, with InvalidInput', async () => {
    const list = json<{ backupId: string }[]>(await kura(['catalog', 'list', '--json']));
    const dest = path.join(lab.dir, 'restores', 'store-flag.img');
    const tape = await kura(['restore', list[0]!.backupId, '--to', dest, '--store', 'copy']);
    expect(tape.code).toBe(2);
    expect(tape.stderr).toMatch(
      /kura: InvalidInput: --store applies only to a backup in the deduplicated store; vm-\d+@\S+ is on tape, so restore it without --store/,
    );
    const bad = await kura(['restore', list[0]!.backupId, '--to', dest, '--store', 'basement']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /kura: InvalidInput: invalid --store: \(input\): Invalid option: expected one of "primary"\|"copy"/,
    );
    expect(existsSync(dest)).toBe(false);
  });

  it('reports every problem of a malformed kura.yaml with its path, and starts nothing', async () => {
    const broken = path.join(lab.dir, 'broken.yaml');
    copyFileSync(path.join(__dirname, '..', 'fixtures', 'broken-kura.yaml'), broken);
    const r = await kura(['--config', broken, 'backup', 'vm-001']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/ConfigInvalid: .*broken\.yaml is not valid \(3 problems\)/);
    for (const p of [
      'sites[0].arrays[0].volumes[1].size',
      'sites[0].libraries[1].drives[3].id',
      'sites[0].policies[0].nightly',
    ]) {
      expect(r.stderr).toContain(p);
    }
  });

  it('rejects a bad flag value with InvalidInput', async () => {
    const bad = await kura(['backup', 'vm-001', '--mode', 'sideways']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/InvalidInput: --mode must be failover or parallel, not "sideways"/);
    const r = await kura(['backup', 'vm-001', '--streams', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/InvalidInput: --streams must be a whole number from 1 to 8, not "many"/);
  });

  it('rejects a stream kind it does not know with InvalidInput', async () => {
    const bad = await kura(['backup', 'vm-001', '--stream-kind', 'serverless']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/InvalidInput: --stream-kind must be lan-free or direct, not "serverless"/);
  });

  it('refuses a restore whose --wait is no duration with InvalidInput, creating nothing', async () => {
    const dest = path.join(lab.dir, 'restores', 'never.img');
    const r = await kura(['restore', 'vm-001@20200101T000000Z', '--to', dest, '--wait', 'forever']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/InvalidInput: --wait must be a duration such as 30s, 10m or 2h, not "forever"/);
    expect(existsSync(dest)).toBe(false);
  });
});

describe('kura lab and pool', () => {
  it('adds, lists and clears an injected fault', async () => {
    const add = await kura(['lab', 'fault', 'add', 'lib-01-drv-1', '--kind', 'fail', '--after', '50%', '--json']);
    expect(add.code).toBe(0);
    const faults = json<{ device: string; kind: string; after: { percent?: number } }[]>(
      await kura(['lab', 'fault', 'list', '--json']),
    );
    expect(faults).toEqual([expect.objectContaining({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 50 } })]);
    expect((await kura(['lab', 'fault', 'clear'])).code).toBe(0);
    expect(json<unknown[]>(await kura(['lab', 'fault', 'list', '--json']))).toEqual([]);
  });

  it('refuses a fault on a device the estate does not have', async () => {
    const r = await kura(['lab', 'fault', 'add', 'no-such-drive', '--kind', 'fail', '--after', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/NotFound: .*no-such-drive/);
  });

  it('shows the pool tables with every device available once the jobs are done', async () => {
    const tables = json<{ servers: { name: string; state: string }[]; drives: { state: string }[] }>(
      await kura(['pool', 'show', '--json']),
    );
    expect(tables.servers.map((s) => s.name)).toEqual(['bks-01', 'bks-02']);
    expect(tables.drives.every((d) => d.state === 'available')).toBe(true);
  });
});

describe('kura schedule', () => {
  it("turns each policy's nightly time into a schedule that a trigger runs", async () => {
    const applied = json<{ created: string[]; updated: string[] }>(await kura(['schedule', 'apply', '--json']));
    expect(applied.created).toEqual([scheduleIdFor(lab.site, 'nightly-data')]);
    const again = json<{ created: string[]; updated: string[] }>(await kura(['schedule', 'apply', '--json']));
    expect(again).toMatchObject({ created: [], updated: [scheduleIdFor(lab.site, 'nightly-data')] });

    const handle = workers.client.schedule.getHandle(scheduleIdFor(lab.site, 'nightly-data'));
    const desc = await handle.describe();
    expect(desc.spec.calendars?.[0]).toMatchObject({
      hour: [{ start: 2, end: 2, step: 1 }],
      minute: [{ start: 0, end: 0, step: 1 }],
    });
    expect(desc.policies.overlap).toBe('SKIP');

    expect((await kura(['schedule', 'trigger', 'nightly-data'])).code).toBe(0);
    // The triggered fleet run backs up all three VMs.
    const deadline = Date.now() + 60_000;
    let fleetId: string | undefined;
    while (!fleetId && Date.now() < deadline) {
      const d = await handle.describe();
      fleetId = d.info.recentActions[0]?.action.workflow.workflowId;
      if (!fleetId) await new Promise((r) => setTimeout(r, 250));
    }
    const report = await workers.client.workflow.getHandle(fleetId!).result();
    expect(report).toMatchObject({ policy: 'nightly-data', succeeded: 3, failed: 0 });
    await handle.delete();
  });
});

// Last: the store backup and its tape copy it makes would be the newest backups the tests above list.
describe('kura store to-tape', () => {
  it("copies a target's store backup to tape, lists the link, and refuses an unknown id with NotFound and exit 2", async () => {
    const stored = await kura(['store', 'backup', 'array-01/vm-003-data', '--target', 'vm-003', '--json']);
    expect(stored.code).toBe(0);
    const storeId = json<{ backupId: string }>(stored).backupId;
    const copied = await kura(['store', 'to-tape', 'vm-003', '--chunks', '3', '--json']);
    expect(copied.code).toBe(0);
    const copy = json<{ ok: boolean; copies: { storeBackupId: string; backupId: string; sha256: string }[] }>(copied);
    expect(copy.copies.map((c) => [c.storeBackupId, c.sha256])).toEqual([
      [storeId, await sha256(lab.dataVolume('vm-003'))],
    ]);
    const listed = await kura(['catalog', 'list', '--target', 'vm-003']);
    expect(listed.stdout).toMatch(/Copy of/);
    expect(listed.stdout.split('\n').find((l) => l.startsWith(copy.copies[0]!.backupId))).toContain(storeId);

    const unknown = await kura(['store', 'to-tape', 'vm-003@20200101T000000Z']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/kura: NotFound: .*no backup "vm-003@20200101T000000Z" in the catalog/);
  });
});
