/**
 * A SAN shared by two companies (seed 003's internet data centre, `kura lab init --preset idc`),
 * against a real Temporal server: a copy by company A's server from company B's LUN is refused
 * AccessDenied before anything changes and is told to the events feed and the webhook with both
 * names; each company's backups run on its own server; a restore of A's backup never lands on B's
 * volume, whether asked of the workflow or of the activity directly; a device fault reaches the
 * feed and the webhook too, and `kura events` reads the feed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createCopyActivities } from '../../src/activities/copy';
import { createRestoreFileActivities } from '../../src/activities/restore-files';
import { Catalog } from '../../src/catalog/store';
import type { FeedEvent } from '../../src/domain/events';
import type { BackupReport } from '../../src/domain/jobs';
import { labDrivers } from '../../src/drivers';
import { labCartridgePath, labVolumePath } from '../../src/lab/files';
import { idcPreset } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';
import type { Kura } from '../../src/client';
import type { KuraWorkers } from '../../src/worker';
import {
  cliJson,
  connectKura,
  eventually,
  failureOf,
  labEnv,
  makeLab,
  repairLab,
  runKura,
  sha256,
  startWorkers,
  treeFingerprint,
  type TestLab,
} from '../support/harness';

const MiB = 1024 * 1024;

let lab: TestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;
let state: LabState;
let webhook: Server;
/** What the notify webhook received, in order. */
const posted: Record<string, unknown>[] = [];
const procs: ChildProcess[] = [];
let aBackup: BackupReport;

const volumeFile = (volume: string) => labVolumePath(lab.paths, lab.site, 'array-01', volume);
const mockEnv = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });

/** The feed as `kura events` reads it. */
function feed(): FeedEvent[] {
  const catalog = new Catalog(lab.paths.catalog);
  try {
    return catalog.events({ limit: 1000 });
  } finally {
    catalog.close();
  }
}

/** The error a promise rejects with (the test fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a refusal, the call succeeded');
    },
    (err: unknown) => err,
  );
}

beforeAll(async () => {
  // The webhook: a real HTTP server on loopback (a random port) that records every body it is sent.
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      posted.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  const port = (webhook.address() as { port: number }).port;
  lab = await makeLab({
    pieceSize: '512KiB',
    streams: 1,
    chunks: 2,
    deviceAttempts: 2,
    edit: (cfg) => {
      const idc = idcPreset({
        site: cfg.sites[0]!.name,
        dataVolumeSize: MiB,
        softwareVolumeSize: MiB / 2,
        cartridgesPerLibrary: 4,
        cartridgeCapacity: 256 * MiB,
        drivesPerLibrary: 2,
      });
      // Too small a free pool for any replica: a replica-refresh fails, and the feed hears of it.
      idc.sites[0]!.arrays[0]!.freePool = { size: '512KiB', replicas: 1 };
      cfg.sites = idc.sites;
      cfg.notify = { webhook: `http://127.0.0.1:${port}/kura` };
    },
  });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
  state = new LabState(lab.paths.labState);
  aBackup = await (await kura.startBackup('a-www')).result();
});

afterEach(() => repairLab(kura, lab.site, state));

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
  state?.clearFaults();
  await close?.();
  await workers?.shutdown();
  state?.close();
  lab?.cleanup();
  await new Promise((r) => webhook?.close(r));
});

describe('zoning and LUN security between two companies', () => {
  it("refuses a copy by company A's server from company B's LUN, changes nothing, and tells the feed and the webhook both names", async () => {
    const before = treeFingerprint(lab.paths.lab);
    const err = await rejection((await kura.startBackup('b-app', { server: 'bks-a' })).result());

    const f = failureOf(err);
    expect(f.type).toBe('AccessDenied');
    expect(f.message).toContain(
      'backup server bks-a of company a-corp may not read LUN 5 (array-01/b-app-data on port array-01/cl1-b): it belongs to company b-corp',
    );
    // Nothing changed: no lab file (volume, cartridge) was touched, the catalog holds no backup of
    // b-app, and the pool holds nothing for it.
    expect(treeFingerprint(lab.paths.lab)).toBe(before);
    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.listBackups({ target: 'b-app' })).toEqual([]);
    } finally {
      catalog.close();
    }
    const tables = await kura.pool.tables(lab.site);
    expect([...tables.servers, ...tables.drives, ...tables.tapes].flatMap((r) => r.holders)).toEqual([]);

    // Told: one event in the feed, and the same event posted to the webhook.
    const event = feed().find((e) => e.subject === 'backup of b-app refused');
    expect(event).toMatchObject({ kind: 'job-failure', type: 'AccessDenied', site: lab.site });
    expect(String(event?.detail.error)).toMatch(/bks-a of company a-corp .* belongs to company b-corp/);
    await eventually(async () => posted.some((p) => p.subject === 'backup of b-app refused'));
    const body = posted.find((p) => p.subject === 'backup of b-app refused');
    expect(body).toMatchObject({
      subject: 'backup of b-app refused',
      type: 'AccessDenied',
      error: event?.detail.error,
      event: { seq: event?.seq, kind: 'job-failure', type: 'AccessDenied', site: lab.site },
    });
  });

  it("runs each company's backup on its own server, and restores it byte-identical", async () => {
    expect(aBackup.streams.map((s) => s.server)).toEqual(['bks-a']);
    const b = await (await kura.startBackup('b-www')).result();
    expect(b.streams.map((s) => s.server)).toEqual(['bks-b']);
    const dest = path.join(lab.dir, 'restores', 'b-www.img');
    const mark = state.events().at(-1)?.seq ?? 0;
    await (await kura.startRestore(b.backupId, dest)).result();
    expect(await sha256(dest)).toBe(await sha256(volumeFile('b-www-data')));
    // Read back by b-corp's own server: every path the restore zoned runs through bks-b.
    const zoned = state.events({ event: 'zone-set', since: mark }).map((e) => e.detail.members as string[]);
    expect(zoned.length).toBeGreaterThan(0);
    for (const members of zoned) expect(members).toContain('bks-b');
  });

  it("refuses the copy activity itself when A's server is handed B's LUN, before any byte moves", async () => {
    const drivers = labDrivers(lab.loaded, lab.paths, state);
    const tape = labCartridgePath(lab.paths, lab.site, 'lib-01', 'L1T004');
    const tapeBefore = readFileSync(tape);
    // One request, refused twice: before the zone exists, and after.
    const crossCompanyCopy = {
      site: lab.site,
      server: 'bks-a',
      devices: ['bks-a', 'fcsw-01', 'lib-01', 'lib-01-drv-2', 'L1T004'],
      source: { array: 'array-01', volume: 'b-www-data', offset: 0, length: MiB, volumeSize: MiB },
      target: { site: lab.site, library: 'lib-01', drive: 'lib-01-drv-2', tape: 'L1T004', position: 0 },
      header: {
        backupId: 'b-www@2026-11-29T00:00:00.000Z',
        target: 'b-www',
        job: 'direct',
        copy: 0,
        piece: 0,
        offset: 0,
        sizeBytes: MiB,
        dataTime: '2026-11-29T00:00:00.000Z',
      },
    };
    const err = await rejection(mockEnv().run(createCopyActivities({ drivers }).copyPiece, crossCompanyCopy));
    // The zone check comes first: a path nobody zoned is refused as such; zone it and the LUN's
    // owner refuses.
    expect(failureOf(err).type).toBe('AccessDenied');
    await drivers.fabric.createZone(lab.site, { name: 'direct-attempt', members: ['array-01', 'bks-a', 'lib-01'] });
    const owned = await rejection(mockEnv().run(createCopyActivities({ drivers }).copyPiece, crossCompanyCopy));
    await drivers.fabric.deleteZone(lab.site, 'direct-attempt');
    expect(failureOf(owned)).toEqual({
      type: 'AccessDenied',
      message:
        'backup server bks-a of company a-corp may not read LUN 7 (array-01/b-www-data on port array-01/cl1-b): it belongs to company b-corp; nothing was copied. Back it up through a server of b-corp',
    });
    expect(readFileSync(tape).equals(tapeBefore)).toBe(true);
  });
});

describe("a restore of A's backup never lands on B's volume", () => {
  it("refuses a restore to the path of B's volume, leaving it as it was, and tells the feed", async () => {
    const target = volumeFile('b-app-data');
    const before = await sha256(target);
    const err = await rejection((await kura.startRestore(aBackup.backupId, target)).result());
    expect(failureOf(err)).toMatchObject({ type: 'AccessDenied' });
    expect(failureOf(err).message).toContain(
      `backup ${aBackup.backupId} is of company a-corp, and may not be restored onto LUN 5 (array-01/b-app-data on port array-01/cl1-b) of company b-corp; nothing was written`,
    );
    expect(await sha256(target)).toBe(before);
    expect(feed().find((e) => e.subject === `restore of ${aBackup.backupId} refused`)).toMatchObject({
      kind: 'job-failure',
      type: 'AccessDenied',
    });
  });

  it("refuses a restore onto B's volume by name, as a new volume", async () => {
    const before = await sha256(volumeFile('b-www-data'));
    const err = await rejection(
      (await kura.startRestore(aBackup.backupId, { array: 'array-01', volume: 'b-www-data' })).result(),
    );
    expect(failureOf(err).type).toBe('AccessDenied');
    expect(failureOf(err).message).toContain('of company b-corp; nothing was written');
    expect(await sha256(volumeFile('b-www-data'))).toBe(before);
  });

  it("refuses the restore activities themselves when handed B's volume", async () => {
    const acts = createRestoreFileActivities({ loaded: lab.loaded, paths: lab.paths, drivers: workersDrivers() });
    const source = { backupId: aBackup.backupId, site: lab.site, array: 'array-01', volume: 'a-www-data' };
    const byPath = await rejection(
      mockEnv().run(acts.prepareRestore, { destination: volumeFile('b-www-data'), job: 'direct', source }),
    );
    const byName = await rejection(
      mockEnv().run(acts.prepareVolumeRestore, {
        site: lab.site,
        array: 'array-01',
        volume: 'b-www-data',
        job: 'direct',
        sizeBytes: MiB,
        source,
      }),
    );
    for (const err of [byPath, byName]) {
      expect(failureOf(err).type).toBe('AccessDenied');
      expect(failureOf(err).message).toMatch(
        /^backup a-www@.* is of company a-corp, and may not be restored onto LUN 7 /,
      );
    }
  });
});

describe('the events feed', () => {
  it('records a device fault and the job failure it caused, posts both to the webhook, and `kura events` lists them', async () => {
    const follow = spawn(path.join(__dirname, '..', '..', 'bin', 'kura'), ['events', '--follow', '--json'], {
      cwd: lab.dir,
      env: labEnv(lab),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    procs.push(follow);
    let followed = '';
    follow.stdout!.on('data', (d: Buffer) => (followed += d.toString()));

    state.addFault({ once: false, device: 'lib-01-drv-1', kind: 'fail', after: { percent: 10 } });
    const err = await rejection((await kura.startBackup('a-app')).result());
    expect(failureOf(err).type).toBe('DeviceFault');

    const fault = feed().find((e) => e.kind === 'device-fault' && e.device === 'lib-01-drv-1');
    expect(fault).toMatchObject({ type: 'DeviceFault', site: lab.site });
    expect(fault?.subject).toMatch(
      /^device lib-01-drv-1 of site \S+ is at fault and out of service: lab fault on lib-01-drv-1/,
    );
    const failed = feed().find((e) => e.subject === 'backup of a-app failed');
    expect(failed).toMatchObject({ kind: 'job-failure', type: 'DeviceFault' });
    expect(failed!.seq).toBeGreaterThan(fault!.seq);
    await eventually(async () => posted.some((p) => p.subject === 'backup of a-app failed'));
    expect(posted.find((p) => p.subject === fault?.subject)).toMatchObject({
      device: 'lib-01-drv-1',
      event: { seq: fault?.seq, kind: 'device-fault', device: 'lib-01-drv-1' },
    });

    const listed = cliJson<FeedEvent[]>(await runKura(lab, ['events', '--json']));
    expect(listed.map((e) => e.seq)).toEqual(feed().map((e) => e.seq));
    // --follow printed the events recorded while it ran, one JSON object a line.
    await eventually(async () => followed.includes('backup of a-app failed'), 10_000);
    const lines = followed
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as FeedEvent);
    expect(lines.map((e) => e.seq)).toContain(fault!.seq);
    follow.kill('SIGTERM');
  });
});

describe('the events feed of other jobs', () => {
  it('hears of a failed replica-refresh too', async () => {
    // The array's free pool is too small for any replica.
    const refresh = await rejection((await kura.startReplicaRefresh('a-www')).result());
    expect(failureOf(refresh).type).toBe('NoResources');
    expect(feed().find((e) => e.subject.startsWith('replica-refresh of a-www failed'))).toMatchObject({
      kind: 'job-failure',
      type: 'NoResources',
      site: lab.site,
    });
  });
});

function workersDrivers() {
  return labDrivers(lab.loaded, lab.paths, state);
}
