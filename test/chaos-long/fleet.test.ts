/**
 * Chaos: the Temporal server is SIGKILLed at a seeded random instant of a fleet backup of 20 VMs and
 * started again on the same SQLite file. Every backup completes or fails with a typed reason, every
 * complete one restores byte-identical, the catalog claims nothing more, and the pool holds nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { ErrorType } from '../../src/domain/errors';
import { fleetProgressQuery } from '../../src/messages';
import { makeLab, sha256, type TestLab } from '../support/harness';
import { acrossOutage, chaosSeed, killAndRestart, startPrivateKura, type PrivateKura } from '../support/private-server';
import { heldRows, labHolds, restoreAllEqual } from './checks';

const MiB = 1024 * 1024;
const VMS = 20;

let lab: TestLab;
let pk: PrivateKura;

beforeAll(async () => {
  lab = await makeLab({ vms: VMS, hosts: 4, dataVolumeSize: MiB, softwareVolumeSize: MiB, pieceSize: '1MiB' });
  pk = await startPrivateKura(lab);
});

afterAll(async () => {
  await pk?.close();
  lab?.cleanup();
});

describe('the Temporal server killed during a fleet backup of 20 VMs', () => {
  it('finishes every backup or fails it typed; complete ones restore byte-identical; nothing held', async () => {
    const { random } = chaosSeed('fleet');
    const vms = lab.loaded.config.sites[0]!.vms.map((v) => v.name);
    expect(vms).toHaveLength(VMS);
    const sources = new Map<string, string>();
    for (const vm of vms) sources.set(vm, await sha256(lab.dataVolume(vm)));

    const started = Date.now();
    const handle = await pk.kura.startFleet('all', { concurrency: 4 });
    // The instant: after a seeded number of the 20 backups have finished (1..16), plus a seeded
    // fraction of a second, so the kill always lands while the fleet is running.
    const after = 1 + Math.floor(random() * 16);
    const extraMs = Math.floor(random() * 500);
    for (;;) {
      // Until its first workflow task has run, the fleet has no query handler yet.
      const p = await handle.query(fleetProgressQuery).catch(() => undefined);
      if (p && p.targets.filter((t) => t.state === 'done' || t.state === 'failed').length >= after) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const { killedAtMs } = await killAndRestart(pk.server, { since: Date.now(), atMs: extraMs });
    console.log(
      `fleet: server killed ${Date.now() - started} ms into the run, after ${after} backups (+${killedAtMs} ms)`,
    );

    const report = await acrossOutage(() => handle.result());
    expect(report.succeeded + report.failed).toBe(VMS);
    // A failure names one of Kura's failure types; none is expected, but none may be untyped.
    const types = Object.values(ErrorType) as string[];
    for (const t of report.targets.filter((x) => x.state === 'failed')) expect(types).toContain(t.error?.split(':')[0]);
    expect(report.targets.filter((t) => t.state === 'failed').map((t) => t.error)).toEqual([]);

    // The catalog claims exactly the backups the fleet reports complete; nothing stays running.
    const catalog = new Catalog(lab.paths.catalog);
    const rows = catalog.listBackups({ site: lab.site });
    catalog.close();
    expect(rows.filter((r) => r.status === 'running')).toEqual([]);
    const done = report.targets.filter((t) => t.state === 'done');
    expect(
      rows
        .filter((r) => r.status === 'complete')
        .map((r) => r.backupId)
        .sort(),
    ).toEqual(done.map((t) => t.backupId!).sort());

    await restoreAllEqual(
      pk.kura,
      done.map((t) => ({ backupId: t.backupId!, sha256: sources.get(t.target)! })),
      path.join(lab.dir, 'restores'),
    );
    expect(await heldRows(pk.kura, lab.site)).toEqual([]);
    expect(labHolds(lab)).toEqual({ zones: [], snapshots: [], splitPairs: [] });
    console.log(`fleet: ${Date.now() - started} ms in all`);
  });
});
