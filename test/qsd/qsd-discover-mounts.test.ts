/**
 * A host that discovers its mounts (`discoverMounts: true`): the resolve activity finds the volume
 * of a `host:/path` target on its own machine, from findmnt and losetup, and asks the
 * qemu-storage-daemon engine which volume a loop device's back-file is; a device no array serves
 * is a NotFound naming it.
 */
import { mkdtempSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { Kura } from '../../src/api/kura';
import { createArrayActivities } from '../../src/activities/array-functions';
import { createTargetActivities } from '../../src/activities/targets';
import { resolveTargetRef } from '../../src/config/targets';
import { ConfigSchema } from '../../src/domain/inventory';
import { labDrivers } from '../../src/drivers';
import { hospitalPreset } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';
import { run } from '../support/qsd';
import { makeQsdLab, QSD_ARRAY, type QsdTestLab } from '../support/qsd-site';

const MiB = 1024 * 1024;

let lab: QsdTestLab;
let state: LabState;
const top = mkdtempSync('/tmp/kura-discover-');
const mounted: string[] = [];

beforeAll(async () => {
  lab = await makeQsdLab({
    vms: 2,
    hosts: 1,
    dataVolumeSize: 8 * MiB,
    edit: (cfg) => {
      cfg.sites[0]!.hosts![0] = { name: 'host-01', discoverMounts: true };
      (cfg.sites[0] as { hooks?: unknown[] }).hooks = [
        { target: 'vm-002', kind: 'script', begin: ['true'], end: ['true'], timeout: '3s' },
      ];
    },
  });
  state = new LabState(lab.paths.labState);
});

afterAll(async () => {
  for (const m of mounted.splice(0).reverse()) await run('umount', [m]).catch(() => undefined);
  state?.close();
  await lab?.array().detachHost('vm-002-data');
  await lab?.cleanupQsd();
  await fs.rm(top, { recursive: true, force: true });
});

async function mount(file: string, dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await run('mount', ['-o', 'loop', file, dir]);
  mounted.push(dir);
}

describe('a host that discovers its mounts', () => {
  it("resolves host:/path through the mount's loop device to the qsd volume it is attached from", async () => {
    const hostFile = await lab.array().attachHost('vm-002-data');
    await run('mkfs.ext4', ['-q', '-F', hostFile]);
    const mnt = path.join(top, 'pgdata');
    await mount(hostFile, mnt);
    const activities = createTargetActivities({
      loaded: lab.loaded,
      drivers: labDrivers(lab.loaded, lab.paths, state),
    });

    // A path not made yet resolves through the mount that would hold it.
    await expect(activities.resolveTarget({ site: lab.site, target: `host-01:${mnt}/15/main` })).resolves.toEqual({
      site: lab.site,
      target: `host-01:${mnt}/15/main`,
      array: QSD_ARRAY,
      volume: 'vm-002-data',
      sizeBytes: 8 * MiB,
    });
    // The hook of the volume the path is on is found the same way on the worker.
    const arrays = createArrayActivities({ loaded: lab.loaded, drivers: labDrivers(lab.loaded, lab.paths, state) });
    await expect(arrays.applicationHook({ site: lab.site, target: `host-01:${mnt}/15/main` })).resolves.toEqual({
      kind: 'script',
      timeoutMs: 3000,
    });
  });

  it('refuses a path on a device no array serves, naming the device and what to do', async () => {
    const image = path.join(top, 'elsewhere.img');
    await fs.writeFile(image, Buffer.alloc(8 * MiB));
    await run('mkfs.ext4', ['-q', '-F', image]);
    const mnt = path.join(top, 'elsewhere');
    await mount(image, mnt);
    const activities = createTargetActivities({
      loaded: lab.loaded,
      drivers: labDrivers(lab.loaded, lab.paths, state),
    });
    const err = await activities.resolveTarget({ site: lab.site, target: `host-01:${mnt}` }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      type: 'NotFound',
      message: expect.stringMatching(
        new RegExp(
          `host-01:${mnt} is on ${mnt}, a file system on /dev/loop\\d+ \\(backed by ${image}\\), which no array of site ${lab.site} serves; put the path on a volume`,
        ),
      ),
    });
  });

  it("is resolved only by the worker: kura.yaml's own resolution says so, the client leaves it to the worker, and a host may not both list and discover mounts", () => {
    const site = lab.loaded.config.sites[0]!;
    expect(() => resolveTargetRef(site, 'host-01:/srv')).toThrow(
      /host host-01 discovers its mounts \(discoverMounts: true\), so host-01:\/srv is resolved only by the worker on that host/,
    );
    // The client leaves the path to the worker: the operation starts, and step 2 resolves it there.
    const job = new Kura({} as Client, lab.loaded).backupJob('host-01:/srv/db', { method: 'split' });
    expect(job.options.args[0]).toMatchObject({ kind: 'split-backup', target: 'host-01:/srv/db' });
    expect(() => new Kura({} as Client, lab.loaded).backupJob('host-09:/srv/db')).toThrow(/no host "host-09"/);
    const cfg = hospitalPreset({ vms: 1, hosts: 1 });
    cfg.sites[0]!.hosts![0] = {
      name: 'host-01',
      discoverMounts: true,
      mounts: [{ path: '/srv', volume: 'array-01/vm-001-data' }],
    };
    expect(ConfigSchema.safeParse(cfg).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'sites.0.hosts.0.discoverMounts: a host either lists its mounts or discovers them (discoverMounts: true), not both; remove one',
    ]);
  });
});
