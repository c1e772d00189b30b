/**
 * Restore drills on the real dev server over a small lab with every class of seed 000: a drill
 * restores a VM, a file server and a client from the store into a host of its own, measures each
 * one's recovery time, records it and leaves nothing behind; with a chunk damaged in both stores
 * the client fails, typed, people are told, and the drill still cleans up. The schedules fire the
 * nightly report.
 */
import { createServer, type Server } from 'node:http';
import { chmodSync, copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { inject } from 'vitest';
import { Worker } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { parse as parseYaml } from 'yaml';
import { DrillLog } from '../../src/catalog/drills';
import { Catalog } from '../../src/catalog/store';
import { drillScheduleId, type KuraDrills } from '../../src/api/drills';
import { ChunkStore } from '../../src/store/chunk-store';
import type { KuraWorkers } from '../../src/worker';
import type { DrillReport } from '../../src/workflows/drill';
import { cliJson, runKura, failureOf, startWorkers, treeFingerprint, uniqueId, type TestLab } from '../support/harness';
import { makeDrillLab } from '../support/drill-lab';
import { classVolumeDigests, closeWorkflowLab, writeLabConfig } from '../support/workflow-lab';
import { REPLAY_KEY_FILE } from '../replay/recorder';
let lab: TestLab;
let client: Client;
let workers: KuraWorkers;
let close: () => Promise<void>;
let drills: KuraDrills;
let webhook: Server;
const alerts: { subject: string }[] = [];
let installation: string;
/** The control task queue of the drill lab's own installation. */
let taskQueue: string;

/** Every production volume's digest: a drill must change none of them. */
const productionDigests = () => classVolumeDigests(lab);

const drillHosts = () => {
  const dir = path.join(lab.paths.lab, 'drill-hosts');
  return existsSync(dir) ? readdirSync(dir) : [];
};

beforeAll(async () => {
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      alerts.push(JSON.parse(body) as { subject: string });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  const port = (webhook.address() as { port: number }).port;
  installation = `dr-${uniqueId()}`;
  ({ lab, client, workers, drills, close, taskQueue } = await makeDrillLab({
    installation,
    edit: (cfg) => {
      cfg.notify = { webhook: `http://127.0.0.1:${port}/kura` };
    },
  }));
});

afterAll(async () => {
  for (const job of ['run', 'report'] as const)
    await client?.schedule
      .getHandle(drillScheduleId(job, installation))
      .delete()
      .catch(() => undefined);
  await closeWorkflowLab({ lab, workers, close });
  await new Promise((r) => webhook?.close(r));
});

describe('restore drills', () => {
  it('restore a target of every class into a host of their own, healthy, recorded, and leave nothing behind', async () => {
    const before = await productionDigests();
    const labTree = treeFingerprint(lab.paths.lab);
    const handle = await drills.run({ healthEveryMs: 50 });
    const report: DrillReport = await handle.result();
    expect(report.failed).toBe(0);
    expect(report.targets.map((t) => [t.className, t.target, t.outcome, t.store])).toEqual([
      ['client', 'cl-01', 'healthy', 'primary'],
      ['server', 'fs-01', 'healthy', 'primary'],
      ['vm', 'vm-001', 'healthy', 'primary'],
    ]);
    const vm = report.targets.find((t) => t.className === 'vm')!;
    // A VM is healthy only after its boot on the drill host (the lab's 300 ms).
    expect(vm.rtoMs).toBeGreaterThanOrEqual(300);
    expect(vm.host).toMatch(/^drill-[0-9a-f]{8}$/);
    expect(lab.loaded.config.sites[0]!.hosts.map((h) => h.name)).not.toContain(vm.host);
    expect(report.hostsRemoved).toEqual([vm.host]);
    // The VM came back as a VM image restore brings it back: from the definition its image holds.
    expect(report.vms).toEqual([
      {
        target: 'vm-001',
        name: 'vm-001',
        dataTime: expect.any(String),
        definitionFrom: 'image',
        note: null,
        volumes: { software: 'array-01/vm-001-sw', data: 'array-01/vm-001-data' },
      },
    ]);

    // Nothing left, nothing production touched.
    expect(drillHosts()).toEqual([]);
    expect(treeFingerprint(lab.paths.lab)).toBe(labTree);
    expect(await productionDigests()).toEqual(before);
    expect(alerts).toEqual([]);

    const log = new DrillLog(lab.paths.catalog);
    try {
      expect(log.list({ drillId: handle.workflowId })).toEqual(
        report.targets.map((t) => expect.objectContaining({ ...t, rtoMs: expect.any(Number) })),
      );
    } finally {
      log.close();
    }
  });

  it('fail a client whose chunk is damaged in both stores, typed, alert, and still clean up', async () => {
    const catalog = new Catalog(lab.paths.catalog);
    const backupId = catalog.listStoreBackups({ target: 'cl-01' })[0]!.backupId;
    catalog.close();
    const primary = new ChunkStore(path.join(lab.paths.home, 'store', 'primary'));
    const copy = new ChunkStore(path.join(lab.paths.home, 'store', 'copy'));
    const victim = (await primary.readIndex(backupId)).chunks[3]!;
    for (const s of [primary, copy]) {
      const file = s.chunkPath(victim);
      const bytes = readFileSync(file);
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x5a;
      writeFileSync(file, bytes);
    }
    const before = await productionDigests();
    const handle = await drills.run({ healthEveryMs: 50 });
    const err = await handle.result().catch((e: unknown) => e);
    const f = failureOf(err);
    expect(f.type).toBe('ChecksumMismatch');
    expect(f.message).toMatch(/^1 of 3 target\(s\) of drill .* failed: cl-01: /);
    const log = new DrillLog(lab.paths.catalog);
    try {
      const rows = log.list({ drillId: handle.workflowId });
      expect(rows.map((r) => [r.target, r.outcome, r.errorType])).toEqual([
        ['cl-01', 'failed', 'ChecksumMismatch'],
        ['fs-01', 'healthy', null],
        ['vm-001', 'healthy', null],
      ]);
      expect(rows[0]!.error).toMatch(/chunk/);
      expect(rows[0]!.rtoMs).toBeNull();
    } finally {
      log.close();
    }
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.subject).toMatch(
      /^restore drill .*: 1 of 3 target\(s\) did not come back: cl-01 \(ChecksumMismatch: /,
    );
    expect(drillHosts()).toEqual([]);
    expect(await productionDigests()).toEqual(before);
  });

  it('are scheduled with the nightly report, and the report schedule writes the page', async () => {
    const ids = [drillScheduleId('run', installation), drillScheduleId('report', installation)];
    expect(await drills.applySchedules({ drillAt: '03:30' })).toEqual({ created: ids, updated: [] });
    expect(await drills.applySchedules({ drillAt: '03:30' })).toEqual({ created: [], updated: ids });
    const run = await client.schedule.getHandle(ids[0]!).describe();
    expect(run.spec.calendars?.[0]).toMatchObject({
      hour: [{ start: 3, end: 3, step: 1 }],
      minute: [{ start: 30, end: 30, step: 1 }],
    });
    expect(run.action).toMatchObject({ type: 'startWorkflow', workflowType: 'restoreDrill' });
    await client.schedule.getHandle(ids[1]!).trigger();
    const dir = path.join(lab.paths.home, 'reports');
    const deadline = Date.now() + 20_000;
    while (!(existsSync(dir) && readdirSync(dir).length > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const [file] = readdirSync(dir);
    expect(file).toMatch(/^estate-\d{4}-\d{2}-\d{2}\.html$/);
    const html = readFileSync(path.join(dir, file!), 'utf8');
    expect(html).toContain('cl-01');
    expect(html.match(/<svg /g)).toHaveLength(6);
  });

  it('run, show and report from the command line', async () => {
    const run = await runKura(lab, ['--json', 'drill', 'run', '--class', 'server']);
    expect(run.code).toBe(0);
    const report = cliJson<DrillReport>(run);
    expect(report.targets.map((t) => [t.className, t.target, t.outcome])).toEqual([['server', 'fs-01', 'healthy']]);
    const show = await runKura(lab, ['--json', 'drill', 'show', report.drillId]);
    expect(cliJson<unknown[]>(show)).toEqual([expect.objectContaining({ target: 'fs-01', outcome: 'healthy' })]);
    const out = path.join(lab.dir, 'out', 'report.html');
    const page = await runKura(lab, ['report', '--out', out]);
    expect(page.code).toBe(0);
    expect(page.stdout.trim()).toBe(`wrote ${out}`);
    const html = readFileSync(out, 'utf8');
    // The failed drill of the client is on the page with its reason.
    expect(html).toMatch(/<td>cl-01<\/td><td>failed<\/td><td>—<\/td><td>ChecksumMismatch: chunk 3 /);
    expect(drillHosts()).toEqual([]);
  });

  it("bring a VM back from its image's definition after kura.yaml moved its volumes, and remove it with their host", async () => {
    // kura.yaml now puts vm-001 on other volumes, and the workers are restarted on it.
    type Doc = {
      sites: {
        vms: { name: string; softwareVolume: string; dataVolume: string }[];
        arrays: { volumes: { id: string }[] }[];
      }[];
    };
    const doc = parseYaml(readFileSync(lab.configFile, 'utf8')) as Doc;
    const site = doc.sites[0]!;
    for (const id of ['vm-001-sw', 'vm-001-data'])
      site.arrays[0]!.volumes.push({ ...site.arrays[0]!.volumes.find((v) => v.id === id)!, id: `${id}-moved` });
    const entry = site.vms.find((v) => v.name === 'vm-001')!;
    entry.softwareVolume = 'array-01/vm-001-sw-moved';
    entry.dataVolume = 'array-01/vm-001-data-moved';
    const loaded = writeLabConfig(lab, 'kura-moved.yaml', doc);
    expect(loaded.config.sites[0]!.vms[0]!.dataVolume).toBe('array-01/vm-001-data-moved');
    await workers.shutdown();
    workers = await startWorkers(lab, loaded);
    const labTree = treeFingerprint(lab.paths.lab);

    const report = await (await drills.run({ classes: ['vm'], healthEveryMs: 50 })).result();
    expect(report.targets.map((t) => [t.target, t.outcome])).toEqual([['vm-001', 'healthy']]);
    expect(report.vms).toEqual([
      expect.objectContaining({
        target: 'vm-001',
        definitionFrom: 'image',
        note: null,
        volumes: { software: 'array-01/vm-001-sw', data: 'array-01/vm-001-data' },
      }),
    ]);
    // What it created — the host, the image read into it, the VM and its volumes — is gone.
    expect(report.hostsRemoved).toEqual([report.targets[0]!.host]);
    expect(drillHosts()).toEqual([]);
    expect(treeFingerprint(lab.paths.lab)).toBe(labTree);
  });

  it('bring a VM whose newest image holds no definition back from kura.yaml on their host, saying so, production untouched', async () => {
    // Back on the lab's own kura.yaml, and a newer image of vm-001 taken the way images were before definitions.
    await workers.shutdown();
    workers = await startWorkers(lab);
    const T = new Date().toISOString();
    const vm = lab.loaded.config.sites[0]!.vms.find((v) => v.name === 'vm-001')!;
    for (const [part, ref] of [
      ['software', vm.softwareVolume],
      ['data', vm.dataVolume],
    ] as const) {
      const [array, volume] = ref.split('/') as [string, string];
      await client.workflow.execute('storeBackup', {
        taskQueue,
        workflowId: `${installation}/store/backup/${uniqueId()}`,
        args: [{ site: lab.site, target: `vm-001/${part}`, array, volume, dataTime: T }],
      });
    }
    const before = await productionDigests();
    const labTree = treeFingerprint(lab.paths.lab);
    const report = await (await drills.run({ classes: ['vm'], healthEveryMs: 50 })).result();
    expect(report.targets.map((t) => [t.target, t.outcome])).toEqual([['vm-001', 'healthy']]);
    expect(report.vms).toEqual([
      expect.objectContaining({
        target: 'vm-001',
        dataTime: T,
        definitionFrom: 'kura.yaml',
        volumes: { software: 'array-01/vm-001-sw', data: 'array-01/vm-001-data' },
      }),
    ]);
    expect(report.vms[0]!.note).toMatch(
      /holds no definition of vm-001 \(taken before images kept one\): created from vm-001's entry in /,
    );
    // Created on the drill's host, not rebuilt over production's volumes; and gone with the host.
    expect(await productionDigests()).toEqual(before);
    expect(drillHosts()).toEqual([]);
    expect(treeFingerprint(lab.paths.lab)).toBe(labTree);
  });
});

describe('drills recorded before a VM came back from its definition', () => {
  it('replay as they ran: each target restored by restoreForDrill, the VM started from kura.yaml', async () => {
    const recorded = JSON.parse(
      readFileSync(path.join(__dirname, 'histories', 'restore-drill-before-definition.json'), 'utf8'),
    ) as { workflowId: string; history: unknown };
    const history = historyFromJSON(recorded.history);
    // Recorded under the replay key; a key file must be its owner's alone, which git does not keep.
    const keyFile = path.join(lab.dir, 'replay-keys.json');
    copyFileSync(REPLAY_KEY_FILE, keyFile);
    chmodSync(keyFile, 0o600);
    await Worker.runReplayHistory(
      {
        workflowBundle: { codePath: inject('workflowBundlePath') },
        dataConverter: kuraDataConverter({ keyFile }),
      },
      history,
      recorded.workflowId,
    );
    expect(
      (history.events ?? []).flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []),
    ).toEqual([
      'planDrill',
      'createDrillHost',
      'restoreForDrill',
      'restoreForDrill',
      'restoreForDrill',
      'awaitDrillHealthy',
      'removeDrillHost',
      'recordDrill',
    ]);
  });
});
