/**
 * Chaos: the qemu-storage-daemon of a `qsd` array is SIGKILLed at the split of a split-backup whose
 * hook holds PostgreSQL in backup mode. The kill is aimed, not timed: a gate in front of PostgreSQL
 * holds the hook's login (so the pair's sync is behind the operation) while the test takes the
 * daemon's QMP monitor, which serves one client at a time; then backup mode is entered and the
 * split's session waits for the monitor, and the daemon dies under it. The supervisor starts the
 * daemon again at the next call, which finds the pair's mirror gone and copies it in full again; the
 * split is retried (a device fault) until the pair is back in sync and made inside the same backup
 * mode. Afterwards nothing is left behind: no split, bitmap, snapshot or stray node, job, export or
 * file on the array, no PostgreSQL session in backup mode, no zone, drive or device held; the
 * image on tape restores byte-identical to the volume at the split, and the catalog keeps its label.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Kura } from '../../src/client';
import { Catalog } from '../../src/catalog/store';
import { ids } from '../../src/drivers/qsd/array';
import { QmpClient } from '../../src/drivers/qsd/qmp';
import { readArrayState } from '../../src/drivers/qsd/state';
import { waitGone } from '../../src/drivers/qsd/supervisor';
import { LabState } from '../../src/lab/state';
import { backupModeEnteredSignal } from '../../src/messages';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, eventually, sha256, startWorkers } from '../support/harness';
import { PG_PASSWORD, startPostgres, type TestPostgres } from '../support/postgres';
import { run } from '../support/qsd';
import { makeQsdLab, type QsdTestLab } from '../support/qsd-site';

const MiB = 1024 * 1024;
const VOLUME = 'vm-001-data';

/**
 * A TCP gate in front of PostgreSQL: every connection is announced (`arrived`) and held, its bytes
 * buffered, until the test opens the gate; from then on connections pass straight through.
 */
interface Gate {
  port: number;
  arrived: Promise<void>;
  open(): void;
  close(): Promise<void>;
}

async function gateTo(port: number): Promise<Gate> {
  let opened = false;
  const held: (() => void)[] = [];
  const sockets = new Set<net.Socket>();
  let announce: () => void = () => undefined;
  const arrived = new Promise<void>((r) => (announce = r));
  const server = net.createServer((client) => {
    sockets.add(client);
    client.pause();
    announce();
    const pass = () => {
      const upstream = net.connect(port, '127.0.0.1');
      sockets.add(upstream);
      // Either end closing closes the other: PostgreSQL sees the hook's logout as its own session ending.
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream).pipe(client);
    };
    if (opened) pass();
    else held.push(pass);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    arrived,
    open() {
      opened = true;
      for (const pass of held.splice(0)) pass();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

let pg: TestPostgres;
let gate: Gate;
let lab: QsdTestLab;
let workers: KuraWorkers;
let kura: Kura;
let close: () => Promise<void>;

beforeAll(async () => {
  pg = await startPostgres();
  gate = await gateTo(pg.port);
  process.env.KURA_TEST_PG_PASSWORD = PG_PASSWORD;
  lab = await makeQsdLab({
    vms: 1,
    dataVolumeSize: 4 * MiB,
    pieceSize: '1MiB',
    streams: 1,
    chunks: 4,
    // Room for the split's retries while the restarted daemon copies the pair in full again.
    deviceAttempts: 6,
    edit: (cfg) => {
      // A full copy takes a while, so the restarted daemon's pair is still copying when the split comes again.
      cfg.sites[0]!.arrays[0]!.freePool = { size: '16MiB', replicas: 2, copyRate: '2MiB' };
      cfg.sites[0]!.hooks = [
        {
          target: 'vm-001',
          kind: 'postgres',
          host: '127.0.0.1',
          port: gate.port,
          user: 'postgres',
          passwordEnv: 'KURA_TEST_PG_PASSWORD',
          timeout: '30s',
          heartbeat: '5s',
        },
      ];
    },
  });
  workers = await startWorkers(lab);
  ({ kura, close } = await connectKura(lab));
});

afterAll(async () => {
  await close?.();
  await workers?.shutdown();
  await lab?.cleanupQsd();
  await gate?.close();
  await pg?.stop();
});

/** Fresh random bytes over the whole volume through its NBD export, as a host writes them. */
async function hostWrites(bytes: number): Promise<void> {
  const file = path.join(lab.dir, `host-${randomBytes(4).toString('hex')}.bin`);
  await fs.writeFile(file, randomBytes(bytes));
  await lab.qsd.describeVolume(lab.site, lab.ref('vm-001').array, VOLUME);
  try {
    await run('qemu-io', ['-f', 'raw', '-c', `write -s ${file} 0 ${bytes}`, lab.array().nbdUri(VOLUME)], {
      timeout: 60_000,
    });
  } finally {
    await fs.rm(file, { force: true });
  }
}

/** What the daemon itself holds, asked over QMP without the driver (whose session would tidy it first). */
async function daemonHolds(socket: string): Promise<{ jobs: string[]; nodes: string[]; exports: string[] }> {
  const qmp = await QmpClient.connect(socket, 'test', 30_000);
  try {
    // A block job's id is its `device` in query-block-jobs.
    const jobs = await qmp.execute<{ device: string; status: string }[]>('query-block-jobs');
    const nodes = await qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
    const exports = await qmp.execute<{ id: string }[]>('query-block-exports');
    return {
      jobs: jobs.map((j) => `${j.device}:${j.status}`).sort(),
      // QEMU's own implicit nodes (`#block123`) come and go with jobs; the named ones are Kura's.
      nodes: nodes.map((n) => n['node-name']).filter((n) => !n.startsWith('#')),
      exports: exports.map((e) => e.id).sort(),
    };
  } finally {
    await qmp.close();
  }
}

/** Whether a workflow task has started after the hold's `backup-mode-entered` signal arrived. */
async function splitTaskStarted(workflowId: string): Promise<boolean> {
  const history = await kura.client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const signalled = events.findIndex(
    (e) => e.workflowExecutionSignaledEventAttributes?.signalName === backupModeEnteredSignal.name,
  );
  return signalled >= 0 && events.slice(signalled).some((e) => e.workflowTaskStartedEventAttributes != null);
}

describe("the array's qemu-storage-daemon killed at the split of a split-backup", () => {
  it('is restarted, the split is made again inside the same backup mode, and nothing is left held', async () => {
    const a = lab.array();
    await hostWrites(4 * MiB);
    await lab.qsd.createPair(lab.ref('vm-001'));
    expect((await a.waitPair(VOLUME, 'in-sync', 30_000)).state).toBe('in-sync');
    // No host writes from here on: the volume's image is the image at any split.
    const atSplit = await sha256(a.imagePath(VOLUME));
    const killed = (await a.supervisor.pid())!;
    expect(killed).toBeGreaterThan(0);

    let killedAt = 0;
    const handle = await kura.startBackup('vm-001', { method: 'split' });
    // The hook logs in once the pair is in sync: from now on the operation's next call of the
    // array is the split. Holding the monitor makes that call wait for it.
    await gate.arrived;
    const monitor = await QmpClient.connect(a.paths.socket, 'test', 30_000);
    try {
      gate.open();
      await eventually(async () => {
        const s = await pg.sessions();
        return s.length === 1 && s[0]!.state === 'idle' && s[0]!.query.includes('pg_backup_start');
      }, 30_000);
      // The workflow task that takes the hold's word runs the split (a local activity). Its history,
      // not a query, says so: queries wait while that task runs.
      await eventually(async () => splitTaskStarted(handle.workflowId), 30_000);
      const stateAtKill = await readArrayState(a.paths.stateFile);
      // The split has not reached the daemon: the pair is as the sync left it.
      expect(stateAtKill.pairs[VOLUME]?.phase).toBe('mirror');
      killedAt = Date.now();
      process.kill(killed, 'SIGKILL');
      expect(await waitGone(killed, 10_000)).toBe(true);
    } finally {
      await monitor.close();
    }

    const report = await handle.result();
    // The supervisor started a new daemon, which lost the mirror and copied the pair again.
    const restarted = await a.supervisor.pid();
    expect(restarted).toBeGreaterThan(0);
    expect(restarted).not.toBe(killed);
    const after = await readArrayState(a.paths.stateFile);
    expect(after.pairs[VOLUME]?.recovered).toEqual([
      expect.stringMatching(/the mirror job was gone; the full copy restarted$/),
    ]);
    // The resync after the copy found the split bitmap of the new daemon, with nothing written since the split.
    expect(after.pairs[VOLUME]?.lastCopy).toEqual({ copiedBytes: 0, totalBytes: 0 });

    // The split was made inside the one backup mode, whose stop succeeded: its label is the report's.
    expect(report).toMatchObject({ kind: 'split-backup', array: 'array-01', volume: VOLUME });
    expect(report.source?.from).toBe('replica');
    const mode = report.backupMode!;
    expect(mode).toMatchObject({ hook: 'postgres', rounds: 1 });
    expect(mode.label).toContain(`LABEL: ${handle.workflowId} round 1`);
    const splitAt = Date.parse(report.source!.at!);
    // Split by the restarted daemon: the kill came first.
    expect(splitAt).toBeGreaterThan(killedAt);
    expect(splitAt).toBeGreaterThanOrEqual(Date.parse(mode.enteredAt));
    expect(splitAt).toBeLessThanOrEqual(Date.parse(mode.leftAt));
    expect(report.sha256).toBe(atSplit);

    // Nothing is left on the array but the pair it had, back in sync: no split, snapshot, bitmap
    // export or stray node, job or file.
    expect(after.pairs[VOLUME]?.phase).toBe('mirror');
    expect(Object.keys(after.pairs)).toEqual([VOLUME]);
    expect(after.snapshots).toEqual({});
    expect(await daemonHolds(a.paths.socket)).toEqual({
      jobs: [`${ids.pairJob(VOLUME)}:ready`],
      nodes: expect.arrayContaining([ids.primary(VOLUME), ids.primary('vm-001-sw'), ids.replica(VOLUME)]) as string[],
      exports: [ids.nbdExport(VOLUME), ids.nbdExport('vm-001-sw')].sort(),
    });
    expect((await daemonHolds(a.paths.socket)).nodes).toHaveLength(3);
    expect(await fs.readdir(a.paths.poolDir)).toEqual([`replica-${VOLUME}.img`]);
    expect(await fs.readdir(a.paths.snapshotsDir)).toEqual([]);
    expect((await lab.qsd.pairStatus(lab.ref('vm-001'))).state).toBe('in-sync');

    // No session is left in backup mode.
    expect(await pg.sessions()).toEqual([]);
    expect(
      await pg.query(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_backup_start%' AND pid <> pg_backend_pid()",
      ),
    ).toEqual([]);

    // No zone, drive or device is held.
    const tables = await kura.pool.tables(lab.site);
    const held = [
      ...tables.servers,
      ...tables.libraries,
      ...tables.drives,
      ...tables.tapes,
      ...tables.switches,
      ...tables.copyDevices,
    ].filter((r) => r.holders.length > 0);
    expect(held).toEqual([]);
    const state = new LabState(lab.paths.labState);
    try {
      expect(state.zones(lab.site)).toEqual([]);
      const site = lab.loaded.config.sites[0]!;
      for (const library of site.libraries)
        for (const drive of library.drives) expect(state.driveContents(lab.site, drive.id)).toBeNull();
    } finally {
      state.close();
    }

    // The image on tape restores byte-identical to the volume at the split, and the catalog keeps its label.
    const dest = path.join(lab.dir, 'restores', 'vm-001.img');
    const restored = await (await kura.startRestore(report.backupId, dest)).result();
    expect(await sha256(dest)).toBe(atSplit);
    expect(restored.backupMode?.label).toBe(mode.label);
    const catalog = new Catalog(lab.paths.catalog);
    try {
      expect(catalog.backup(report.backupId)).toMatchObject({ status: 'complete', sha256: atSplit, backupMode: mode });
    } finally {
      catalog.close();
    }
  });
});
