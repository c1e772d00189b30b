import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  Client,
  Connection,
  WorkflowUpdateFailedError,
  WorkflowUpdateStage,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger, NativeConnection, Worker } from '@temporalio/worker';
import { SiteSchema, type Site } from '../../src/domain/inventory';
import { ErrorType } from '../../src/domain/errors';
import type { DeviceRow, PoolTables } from '../../src/domain/pool';
import { markDeviceSignal, releaseUpdate, reserveStreamsUpdate, tablesQuery } from '../../src/messages';
import { KuraKind, KuraSite } from '../../src/search-attributes';
import { createPoolActivities } from '../../src/activities/pool';
import { poolWorkflowId } from '../../src/client';
import { TABLE_KEYS, findDevice, tablesFromSite } from '../../src/domain/pool-tables';
import type { resourcePool } from '../../src/workflows/resource-pool';
import { kuraDataConverter } from '../../src/codec/data-converter';

const taskQueue = `pool-test-${randomUUID()}`;
let connection: Connection;
let client: Client;
let worker: Worker;
let running: Promise<void>;

beforeAll(async () => {
  const address = inject('temporalAddress');
  const namespace = inject('temporalNamespace');
  connection = await Connection.connect({ address });
  // No key file: payloads in clear, failures encoded as every Kura worker encodes them.
  client = new Client({ connection, namespace, dataConverter: kuraDataConverter() });
  worker = await Worker.create({
    connection: await NativeConnection.connect({ address }),
    dataConverter: kuraDataConverter(),
    namespace,
    taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
  });
  running = worker.run();
});

afterAll(async () => {
  worker?.shutdown();
  await running;
  await connection?.close();
});

/**
 * A site with two libraries sharing `drives` (lib-1 gets the odd one), four cartridges each, and
 * every server and library reachable from arr-1 through sw-1 or sw-1 — sw-2.
 */
function site(name: string, spec: { drives: number; servers: { name: string; capacity: number }[] }): Site {
  const perLibrary = [Math.ceil(spec.drives / 2), Math.floor(spec.drives / 2)];
  const libs = perLibrary
    .map((count, l) => ({
      name: `lib-${l + 1}`,
      drives: Array.from({ length: count }, (_, d) => ({ id: `lib-${l + 1}-drv-${d + 1}` })),
      cartridges: Array.from({ length: 4 }, (_, c) => ({ id: `lib-${l + 1}-tape-${c + 1}`, capacity: '64MiB' })),
    }))
    .filter((l) => l.drives.length > 0);
  const switchFor = (i: number) => (i % 2 === 0 ? 'sw-1' : 'sw-2');
  return SiteSchema.parse({
    name,
    arrays: [{ name: 'arr-1' }],
    libraries: libs,
    switches: [
      { name: 'sw-1', capacity: 8 },
      { name: 'sw-2', capacity: 8 },
    ],
    servers: spec.servers,
    links: [
      ['arr-1', 'sw-1'],
      ['sw-1', 'sw-2'],
      ...spec.servers.map((x, i) => [x.name, switchFor(i)]),
      ...libs.map((l, i) => [l.name, switchFor(i)]),
    ],
  });
}

async function startPool(s: Site, maxHistoryEvents?: number): Promise<WorkflowHandle<typeof resourcePool>> {
  return client.workflow.start<typeof resourcePool>('resourcePool', {
    workflowId: `${poolWorkflowId(s.name)}/${randomUUID()}`,
    taskQueue,
    args: [
      { site: s.name, tables: tablesFromSite(s), ...(maxHistoryEvents === undefined ? {} : { maxHistoryEvents }) },
    ],
  });
}

/** The typed failure behind a failed update, or the activity's own failure. */
function failureOf(err: unknown): ApplicationFailure {
  const inner = err instanceof WorkflowUpdateFailedError ? err.cause : err;
  if (!(inner instanceof ApplicationFailure)) throw new Error(`expected an ApplicationFailure, got ${String(err)}`);
  return inner;
}

function rows(t: PoolTables): DeviceRow[] {
  return TABLE_KEYS.flatMap((k) => t[k]);
}

/** Runs an activity in a fresh mock context (its own cancellation state), keeping its types. */
function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> {
  return mockEnv().run(fn, ...args) as Promise<R>;
}

/** Expected refusals are asserted on; the mock's own "Activity failed" warnings are noise here. */
const mockEnv = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('resourcePool workflow', () => {
  it('grants 20 concurrent requests all or nothing and never beyond any device capacity', async () => {
    // 4 drives, but the servers carry 1 + 2 streams: exactly 3 jobs can hold a stream at once.
    const s = site(`burst-${randomUUID().slice(0, 8)}`, {
      drives: 4,
      servers: [
        { name: 'srv-1', capacity: 1 },
        { name: 'srv-2', capacity: 2 },
      ],
    });
    const pool = await startPool(s);
    const jobs = Array.from({ length: 20 }, (_, i) => `job-${i}`);
    const results = await Promise.allSettled(
      jobs.map((job) => pool.executeUpdate(reserveStreamsUpdate, { args: [{ job, array: 'arr-1' }] })),
    );

    const granted = results.flatMap((r, i) => (r.status === 'fulfilled' ? [jobs[i] as string] : []));
    expect(granted).toHaveLength(3);
    for (const r of results) if (r.status === 'rejected') expect(failureOf(r.reason).type).toBe(ErrorType.NoResources);

    const tables = await pool.query(tablesQuery);
    for (const row of rows(tables)) expect(row.holders.length, row.name).toBeLessThanOrEqual(row.capacity);
    const driveHolders = tables.drives.flatMap((d) => d.holders.map((h) => h.job));
    expect(new Set(driveHolders).size).toBe(driveHolders.length);
    expect([...driveHolders].sort()).toEqual([...granted].sort());
    const tapeHolders = tables.tapes.flatMap((t) => t.holders.map((h) => h.job));
    expect([...tapeHolders].sort()).toEqual([...granted].sort());

    const description = await pool.describe();
    expect(description.typedSearchAttributes.get(KuraKind)).toBe('pool');
    expect(description.typedSearchAttributes.get(KuraSite)).toBe(s.name);
  });

  it('does not grant a device marked unavailable by signal', async () => {
    const s = site(`mark-${randomUUID().slice(0, 8)}`, { drives: 2, servers: [{ name: 'srv-1', capacity: 4 }] });
    const pool = await startPool(s);
    await pool.signal(markDeviceSignal, { device: 'lib-1-drv-1', state: 'unavailable', reason: 'head failure' });
    const a = await pool.executeUpdate(reserveStreamsUpdate, { args: [{ job: 'job-a', array: 'arr-1' }] });
    expect(a.streams.map((x) => x.drive)).toEqual(['lib-2-drv-1']);
    const refused = await pool
      .executeUpdate(reserveStreamsUpdate, { args: [{ job: 'job-b', array: 'arr-1' }] })
      .catch((e: unknown) => e);
    const failure = failureOf(refused);
    expect(failure.type).toBe(ErrorType.NoResources);
    expect(failure.message).toContain('lib-1-drv-1 unavailable: head failure');
    expect(findDevice(await pool.query(tablesQuery), 'lib-1-drv-1')).toMatchObject({
      state: 'unavailable',
      reason: 'head failure',
      holders: [],
    });
  });

  it('grants waiting requests first come, first served as devices are released', async () => {
    const s = site(`fifo-${randomUUID().slice(0, 8)}`, { drives: 1, servers: [{ name: 'srv-1', capacity: 4 }] });
    const pool = await startPool(s);
    await pool.executeUpdate(reserveStreamsUpdate, { args: [{ job: 'job-a', array: 'arr-1' }] });

    const order: string[] = [];
    const b = await pool.startUpdate(reserveStreamsUpdate, {
      args: [{ job: 'job-b', array: 'arr-1', waitMs: 60_000 }],
      waitForStage: WorkflowUpdateStage.ACCEPTED,
    });
    const c = await pool.startUpdate(reserveStreamsUpdate, {
      args: [{ job: 'job-c', array: 'arr-1', waitMs: 60_000 }],
      waitForStage: WorkflowUpdateStage.ACCEPTED,
    });
    const bDone = b.result().then((g) => (order.push('job-b'), g));
    const cDone = c.result().then((g) => (order.push('job-c'), g));

    // Nobody may jump the line, not even a request that does not want to wait.
    const jumper = failureOf(
      await pool
        .executeUpdate(reserveStreamsUpdate, { args: [{ job: 'job-d', array: 'arr-1' }] })
        .catch((e: unknown) => e),
    );
    expect(jumper.message).toMatch(/^2 earlier requests are waiting for resources \(first: job job-b\)/);
    // A short wait times out and says how long it waited.
    const impatient = failureOf(
      await pool
        .executeUpdate(reserveStreamsUpdate, { args: [{ job: 'job-e', array: 'arr-1', waitMs: 300 }] })
        .catch((e: unknown) => e),
    );
    expect(impatient.type).toBe(ErrorType.NoResources);
    // Timers fire at or after their time (later on a loaded server), so check the wait, not its unit.
    const waited =
      /^waited (\d+(?:\.\d+)?) (ms|s) for resources without success \(still 2 requests ahead in the queue\)/.exec(
        impatient.message,
      );
    expect(waited, impatient.message).not.toBeNull();
    expect(Number(waited![1]) * (waited![2] === 's' ? 1000 : 1)).toBeGreaterThanOrEqual(300);

    expect(await pool.executeUpdate(releaseUpdate, { args: [{ job: 'job-a' }] })).toEqual({ released: 5 });
    expect((await bDone).streams[0]?.drive).toBe('lib-1-drv-1');
    await sleep(300);
    expect(order).toEqual(['job-b']);
    await pool.executeUpdate(releaseUpdate, { args: [{ job: 'job-b' }] });
    expect((await cDone).streams[0]?.drive).toBe('lib-1-drv-1');
    expect(order).toEqual(['job-b', 'job-c']);
    expect(findDevice(await pool.query(tablesQuery), 'lib-1-drv-1')?.holders).toEqual([{ job: 'job-c', stream: 0 }]);
  });

  it('fails a waiting cartridge request at once, naming the device, when its only path is marked unavailable', async () => {
    const s = site(`down-${randomUUID().slice(0, 8)}`, { drives: 1, servers: [{ name: 'srv-1', capacity: 4 }] });
    const pool = await startPool(s);
    await pool.executeUpdate(reserveStreamsUpdate, { args: [{ job: 'backup-a', array: 'arr-1' }] });
    // A restore waits for the one drive, which is only busy…
    const restore = await pool.startUpdate(reserveStreamsUpdate, {
      args: [{ job: 'restore-r', array: 'arr-1', tape: 'lib-1-tape-2', waitMs: 60_000 }],
      waitForStage: WorkflowUpdateStage.ACCEPTED,
    });
    const t0 = Date.now();
    // …until the switch in front of its library stops answering.
    await pool.signal(markDeviceSignal, { device: 'sw-1', state: 'unavailable', reason: 'stopped answering' });
    const refused = failureOf(await restore.result().catch((e: unknown) => e));
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(refused.type).toBe(ErrorType.NoResources);
    expect(refused.message).toBe(
      'cartridge lib-1-tape-2 cannot be had: sw-1 is unavailable: stopped answering, and waiting for busy devices would not help; mark it available with `kura pool mark sw-1 available` once it is fixed',
    );
    expect(refused.details?.[0]).toEqual({
      unavailable: [{ name: 'sw-1', reason: 'stopped answering' }],
      anyOne: false,
    });
    // Refused means refused: nothing is held for it.
    expect(findDevice(await pool.query(tablesQuery), 'lib-1-tape-2')?.holders).toEqual([]);
  });

  it('lets a cartridge request that asks to wait for unavailable devices wait until one is brought back', async () => {
    const s = site(`back-${randomUUID().slice(0, 8)}`, { drives: 1, servers: [{ name: 'srv-1', capacity: 4 }] });
    const pool = await startPool(s);
    await pool.signal(markDeviceSignal, { device: 'sw-1', state: 'unavailable', reason: 'stopped answering' });
    const restore = await pool.startUpdate(reserveStreamsUpdate, {
      args: [{ job: 'restore-w', array: 'arr-1', tape: 'lib-1-tape-3', waitMs: 60_000, waitForUnavailable: true }],
      waitForStage: WorkflowUpdateStage.ACCEPTED,
    });
    let settled = false;
    const granted = restore.result().finally(() => (settled = true));
    await sleep(1000);
    expect(settled).toBe(false);
    await pool.signal(markDeviceSignal, { device: 'sw-1', state: 'available' });
    expect((await granted).streams.map((x) => [x.switches, x.drive, x.tape])).toEqual([
      [['sw-1'], 'lib-1-drv-1', 'lib-1-tape-3'],
    ]);
  });

  it('keeps its tables across continue-as-new', async () => {
    // lib-1 has two drives, lib-2 one (marked unavailable): 'holder' keeps one, the cycles use the other.
    const s = site(`can-${randomUUID().slice(0, 8)}`, { drives: 3, servers: [{ name: 'srv-1', capacity: 4 }] });
    const pool = await startPool(s, 30);
    const first = (await pool.describe()).runId;
    await pool.signal(markDeviceSignal, { device: 'lib-2-drv-1', state: 'unavailable', reason: 'cleaning' });
    await pool.executeUpdate(reserveStreamsUpdate, { args: [{ job: 'holder', array: 'arr-1' }] });
    let cycles = 0;
    while ((await pool.describe()).runId === first && cycles < 40) {
      await pool.executeUpdate(reserveStreamsUpdate, {
        args: [{ job: `cycle-${cycles}`, array: 'arr-1', waitMs: 5000 }],
      });
      await pool.executeUpdate(releaseUpdate, {
        args: [{ job: `cycle-${cycles}`, tapeUsage: { 'lib-1-tape-2': 1000 + cycles } }],
      });
      cycles++;
    }
    expect((await pool.describe()).runId).not.toBe(first);

    const tables = await pool.query(tablesQuery);
    expect(findDevice(tables, 'lib-2-drv-1')).toMatchObject({ state: 'unavailable', reason: 'cleaning' });
    expect(findDevice(tables, 'lib-1-drv-1')?.holders).toEqual([{ job: 'holder', stream: 0 }]);
    expect(findDevice(tables, 'lib-1-tape-2')?.usedBytes).toBe(1000 + cycles - 1);
    // The job that held its devices before the new run gets the same grant back.
    const again = await pool.executeUpdate(reserveStreamsUpdate, { args: [{ job: 'holder', array: 'arr-1' }] });
    expect(again.streams.map((x) => [x.drive, x.tape])).toEqual([['lib-1-drv-1', 'lib-1-tape-1']]);
  });
});

describe('pool activities', () => {
  it('starts the pool on first use and re-throws a refusal as a non-retryable NoResources failure', async () => {
    const s = site(`act-${randomUUID().slice(0, 8)}`, { drives: 1, servers: [{ name: 'srv-1', capacity: 2 }] });
    const acts = createPoolActivities({ client, sites: () => [s], taskQueue, heartbeatMs: 100 });
    const grant = await runActivity(acts.reserveStreams, s.name, { job: 'job-a', array: 'arr-1' });
    expect(grant.streams.map((x) => x.drive)).toEqual(['lib-1-drv-1']);

    const refused = await runActivity(acts.reserveStreams, s.name, { job: 'job-b', array: 'arr-1' }).catch(
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ApplicationFailure);
    expect(refused).toMatchObject({ type: ErrorType.NoResources, nonRetryable: true });
    expect((refused as Error).message).toContain('lib-1 has no free drive (lib-1-drv-1 held by job job-a stream 0)');

    const unknown = await runActivity(acts.poolTables, 'no-such-site').catch((e: unknown) => e);
    expect(unknown).toMatchObject({ type: ErrorType.NotFound, nonRetryable: true });
  });

  it('books a reservation once when its activity is retried after a lost reply, and answers the running pool without starting another run', async () => {
    const s = site(`retry-${randomUUID().slice(0, 8)}`, { drives: 2, servers: [{ name: 'srv-1', capacity: 2 }] });
    const acts = createPoolActivities({ client, sites: () => [s], taskQueue, heartbeatMs: 100 });
    // The first call starts the pool (there is none yet); the retry, the same activity's second
    // attempt, is a plain update to the running pool with the same update id.
    const first = await runActivity(acts.reserveStreams, s.name, { job: 'job-a', array: 'arr-1' });
    const pool = client.workflow.getHandle(poolWorkflowId(s.name));
    const run = (await pool.describe()).runId;
    const retried = (await new MockActivityEnvironment({ attempt: 2 }, { logger: new DefaultLogger('ERROR') }).run(
      acts.reserveStreams,
      s.name,
      { job: 'job-a', array: 'arr-1' },
    )) as typeof first;
    expect(retried).toEqual(first);
    expect((await pool.describe()).runId).toBe(run);

    // job-a holds one drive, not two: job-b gets the other, and job-c none.
    const tables = await runActivity(acts.poolTables, s.name);
    expect(tables.drives.filter((d) => d.holders.some((h) => h.job === 'job-a')).map((d) => d.name)).toEqual(
      first.streams.map((x) => x.drive),
    );
    const b = await runActivity(acts.reserveStreams, s.name, { job: 'job-b', array: 'arr-1' });
    expect(b.streams).toHaveLength(1);
    expect(b.streams[0]?.drive).not.toBe(first.streams[0]?.drive);
    const refused = await runActivity(acts.reserveStreams, s.name, { job: 'job-c', array: 'arr-1' }).catch(
      (e: unknown) => e,
    );
    expect(refused).toMatchObject({ type: ErrorType.NoResources, nonRetryable: true });

    // A release retried the same way frees the job's drive once and answers alike.
    const released = await runActivity(acts.releaseStreams, s.name, { job: 'job-a' });
    const again = await runActivity(acts.releaseStreams, s.name, { job: 'job-a' });
    // Its server, drive, cartridge and switch rows.
    expect(released.released).toBeGreaterThanOrEqual(3);
    expect(again).toEqual(released);
    const after = await runActivity(acts.poolTables, s.name);
    expect(after.drives.filter((d) => d.holders.length > 0).map((d) => d.name)).toEqual(b.streams.map((x) => x.drive));
  });

  it('starts a new run of a pool whose workflow was ended, when a job next reserves', async () => {
    const s = site(`ended-${randomUUID().slice(0, 8)}`, { drives: 1, servers: [{ name: 'srv-1', capacity: 1 }] });
    const acts = createPoolActivities({ client, sites: () => [s], taskQueue, heartbeatMs: 100 });
    await runActivity(acts.poolTables, s.name);
    const pool = client.workflow.getHandle(poolWorkflowId(s.name));
    const ended = (await pool.describe()).runId;
    await pool.terminate('ended by an operator');
    // The plain update finds the run closed; the activity starts the pool again with the update.
    const granted = await runActivity(acts.reserveStreams, s.name, { job: 'job-a', array: 'arr-1' });
    expect(granted.streams).toHaveLength(1);
    const now = await pool.describe();
    expect(now.runId).not.toBe(ended);
    expect(now.status.name).toBe('RUNNING');
  });

  it('heartbeats while waiting and withdraws the request when cancelled', async () => {
    const s = site(`cancel-${randomUUID().slice(0, 8)}`, { drives: 1, servers: [{ name: 'srv-1', capacity: 2 }] });
    const acts = createPoolActivities({ client, sites: () => [s], taskQueue, heartbeatMs: 100 });
    await runActivity(acts.reserveStreams, s.name, { job: 'job-a', array: 'arr-1' });

    const env = mockEnv();
    let beats = 0;
    env.on('heartbeat', () => beats++);
    const waiting = (
      env.run(acts.reserveStreams, s.name, { job: 'job-b', array: 'arr-1', waitMs: 60_000 }) as Promise<unknown>
    ).catch((e: unknown) => e);
    await sleep(1000);
    env.cancel();
    expect(await waiting).toBeInstanceOf(CancelledFailure);
    expect(beats).toBeGreaterThanOrEqual(3);

    // job-b left the line: once job-a releases, the drive stays free.
    await runActivity(acts.releaseStreams, s.name, { job: 'job-a' });
    await sleep(300);
    const tables = await runActivity(acts.poolTables, s.name);
    expect(findDevice(tables, 'lib-1-drv-1')).toMatchObject({ state: 'available', holders: [] });
  });
});
