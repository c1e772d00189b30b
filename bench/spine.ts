/**
 * Orchestration benchmark: N end-to-end backups of small lab volumes (reserve, mount, copy,
 * unmount, record, release — real files, real catalog) against N empty workflows on the same
 * Temporal dev server, both with the same bound of K in flight. Prints both rates and the ratio,
 * then the same N backups as one fleet run (child workflows in a sliding window of K).
 *
 *   npx tsx bench/spine.ts [--n 77] [--k 4] [--size 1MiB] [--guardians off|on] [--timeline off|on]
 *                          [--server-cache cli|WORKFLOWS]
 *
 * Besides the rates it prints where a backup's time and CPU go (docs/adr/045): one backup's
 * history by event kind, its workflow tasks and (local) activities, the share of its span spent
 * inside workflow tasks, in activities and waiting for a worker to pick a task up, and the CPU
 * seconds per job of the dev server and of this process (Kura's workers, the empty workflows'
 * worker and the client) for the empty workflows and for the backups, and each step's own time
 * (median and mean of every (local) activity of the backups, measured around its code), which
 * set against the backup's span says how much of it is the passage between the steps (docs/adr/049).
 * `--timeline on` prints that backup's events with their times, which shows where a gap lies
 * (docs/adr/053).
 *
 * `--server-cache` bounds the dev server's history cache (docs/adr/052): kura.yaml's default (512) unless
 * given; `cli` keeps the Temporal CLI's 8,096. The bench prints the cache's lookups and misses.
 *
 * The VM guardians of the recovery ladder (a workflow per VM polling its health) are off by
 * default: they are a load of their own that grows with the estate, not a backup's orchestration,
 * and bench/fleet.ts measures them (docs/adr/020-fleet-cost.md).
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection, Worker, type ActivityInterceptorsFactory } from '@temporalio/worker';
import { hospitalPreset } from '../src/lab/preset';
import { kuraDataConverter } from '../src/codec/data-converter';
import { parseSize } from '../src/domain/units';
import { poolWorkflowId } from '../src/api/workflow-ids';
import { arg, runBench, serverCacheArg, serverCacheText, withLabStack } from './support/lab-stack';
import { printVerdict } from './support/verdict';
import { cacheDelta, serverCacheStats } from './support/server-cache';

/** End-to-end backups ÷ empty workflows, as rates at the same bound (docs/adr/020-fleet-cost.md). */
const TARGET_RATIO = 0.5;

/** Runs `count` jobs with at most `k` in flight; returns the wall time in seconds. */
async function window(count: number, k: number, job: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(k, count) }, async () => {
      while (next < count) await job(next++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs `count` jobs in the window and measures the wall time and the CPU of the server and of this process. */
async function measured(
  serverPid: number,
  count: number,
  k: number,
  job: (i: number) => Promise<unknown>,
): Promise<{ seconds: number; serverCpu: number; ownCpu: number }> {
  const server0 = cpuSeconds(serverPid);
  const own0 = cpuSeconds(process.pid);
  const seconds = await window(count, k, job);
  return { seconds, serverCpu: cpuSeconds(serverPid) - server0, ownCpu: cpuSeconds(process.pid) - own0 };
}

/** Each (local) activity's own durations in milliseconds, by its type, while `on`. */
const stepTimes = { on: false, byType: new Map<string, number[]>() };

/** Times each activity's own code, the codec and the worker's dispatch left out. */
const timeSteps: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const t0 = performance.now();
      try {
        return await next(input);
      } finally {
        if (stepTimes.on) {
          const type = `${ctx.info.activityType}${ctx.info.isLocal ? '' : ' (activity)'}`;
          stepTimes.byType.set(type, [...(stepTimes.byType.get(type) ?? []), performance.now() - t0]);
        }
      }
    },
  },
});

/** The steps' times as the profile prints them: per type, in the order first seen, the median and the mean. */
function stepLines(): string[] {
  let sum = 0;
  const parts = [...stepTimes.byType].map(([type, ms]) => {
    const sorted = [...ms].sort((a, b) => a - b);
    const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
    sum += mean;
    return `${type} ${(sorted[Math.floor(sorted.length / 2)] ?? 0).toFixed(1)}/${mean.toFixed(1)}`;
  });
  return [
    `  each step's own time (median/mean ms): ${parts.join(', ')}`,
    `    the steps' means add up to ${sum.toFixed(0)} ms a backup`,
  ];
}

const EventType = temporal.api.enums.v1.EventType;

function millis(t: temporal.api.history.v1.IHistoryEvent['eventTime']): number {
  return Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
}

/**
 * One workflow's history as the profile prints it: events by kind, activities, local activities and
 * workflow tasks, and how its span divides into time inside workflow tasks (the workflow code with
 * its local activities, the pool's round trips among them), time in activities, and time waiting
 * for a worker to pick a task up.
 */
async function historyProfile(client: Client, workflowId: string, timeline: boolean): Promise<string[]> {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const kinds: Record<string, number> = {};
  const span = millis(events[events.length - 1]?.eventTime) - millis(events[0]?.eventTime);
  let inTasks = 0;
  let inActivities = 0;
  let waiting = 0;
  const at = new Map<number, number>();
  const start0 = millis(events[0]?.eventTime);
  // The history's events with their times since its start: where a gap between two steps lies.
  if (timeline)
    for (const e of events)
      console.log(
        `    +${millis(e.eventTime) - start0} ms ${(EventType[e.eventType ?? 0] ?? '').replace('EVENT_TYPE_', '').toLowerCase()} ${e.markerRecordedEventAttributes?.markerName ?? ''}`,
      );
  for (const e of events) {
    const kind = (EventType[e.eventType ?? 0] ?? 'unknown').replace('EVENT_TYPE_', '').toLowerCase();
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    const t = millis(e.eventTime);
    at.set(Number(e.eventId), t);
    const since = (id: unknown) => t - (at.get(Number(id)) ?? t);
    if (e.workflowTaskStartedEventAttributes) waiting += since(e.workflowTaskStartedEventAttributes.scheduledEventId);
    if (e.workflowTaskCompletedEventAttributes) inTasks += since(e.workflowTaskCompletedEventAttributes.startedEventId);
    if (e.activityTaskStartedEventAttributes) waiting += since(e.activityTaskStartedEventAttributes.scheduledEventId);
    if (e.activityTaskCompletedEventAttributes)
      inActivities += since(e.activityTaskCompletedEventAttributes.startedEventId);
  }
  const activities = kinds['activity_task_scheduled'] ?? 0;
  const local = events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length;
  const tasks = kinds['workflow_task_completed'] ?? 0;
  const share = (ms: number) => `${ms} ms (${span > 0 ? Math.round((100 * ms) / span) : 0} %)`;
  return [
    `  one backup's history: ${events.length} events, ${activities} activities, ${local} local activities, ${tasks} workflow tasks, ${span} ms from start to end`,
    `    by kind: ${Object.entries(kinds)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
    `    inside workflow tasks ${share(inTasks)}, in activities ${share(inActivities)}, waiting to be picked up ${share(waiting)}, the rest between them`,
  ];
}

/**
 * The site's pool during the backups, from its current run's history: how many workflow tasks it
 * took and how many updates they answered, and the median time a task waited to be picked up and
 * spent inside the worker. Every reservation and release is one of its updates, answered in such
 * a task (docs/adr/053).
 */
async function poolProfile(client: Client, workflowId: string, from: number, to: number): Promise<string[]> {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const at = new Map<number, number>();
  const waits: number[] = [];
  const inside: number[] = [];
  let updates = 0;
  for (const e of events) {
    const t = millis(e.eventTime);
    at.set(Number(e.eventId), t);
    if (t < from || t > to) continue;
    const since = (id: unknown) => t - (at.get(Number(id)) ?? t);
    if (e.workflowTaskStartedEventAttributes) waits.push(since(e.workflowTaskStartedEventAttributes.scheduledEventId));
    if (e.workflowTaskCompletedEventAttributes)
      inside.push(since(e.workflowTaskCompletedEventAttributes.startedEventId));
    if (e.workflowExecutionUpdateAcceptedEventAttributes) updates++;
  }
  const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  return [
    `  the pool during the backups (its current run): ${inside.length} workflow tasks answering ${updates} updates; each task waited ${mid(waits)} ms to be picked up and took ${mid(inside)} ms inside the worker (medians)`,
  ];
}

async function main(): Promise<void> {
  const n = Number(arg('n', '77'));
  const k = Number(arg('k', '4'));
  const size = parseSize(arg('size', '1MiB')) ?? 1024 * 1024;
  const cfg = hospitalPreset({ vms: n, dataVolumeSize: size, softwareVolumeSize: 4096, site: 'bench' });
  // One stream, one chunk: this measures orchestration per job, not the stream logic (bench/failover does).
  cfg.tuning = { pieceSize: '256MiB', reserveWait: '10m', streams: 1, chunks: 1 };
  const guardians = arg('guardians', 'off') === 'on';
  if (!guardians) cfg.ladder = { guardVms: false };
  await withLabStack(
    'spine',
    cfg,
    async ({ server, metricsPort, loaded, client, kura }) => {
      const native = await NativeConnection.connect({ address: server.address });
      const baseline = await Worker.create({
        connection: native,
        // The same encryption as Kura's workers, so the ratio compares orchestration, not the codec.
        dataConverter: kuraDataConverter(loaded),
        taskQueue: 'bench-empty',
        workflowsPath: require.resolve('./support/empty-workflow'),
      });
      const baselineRun = baseline.run();
      const vms = loaded.config.sites[0]!.vms.map((v) => v.name);

      // Warm both paths once so bundling and first-task costs are not measured.
      await client.workflow.execute('emptyWorkflow', { taskQueue: 'bench-empty', workflowId: 'warm-empty' });
      await (await kura.startBackup(vms[0]!, { requestedAt: new Date(0).toISOString() })).result();

      const empty = await measured(server.pid, n, k, (i) =>
        client.workflow.execute('emptyWorkflow', { taskQueue: 'bench-empty', workflowId: `empty-${i}` }),
      );
      const emptySeconds = empty.seconds;
      const at = Date.now();
      const cacheAtFleet = await serverCacheStats(metricsPort);
      const fleetT0 = performance.now();
      const fleet = await (
        await kura.startFleet('all', { concurrency: k, requestedAt: new Date(at + n + 1000).toISOString() })
      ).result();
      const fleetSeconds = (performance.now() - fleetT0) / 1000;
      const cacheAtBackups = await serverCacheStats(metricsPort);
      const ids: string[] = [];
      stepTimes.on = true;
      const backupsStart = Date.now();
      const backups = await measured(server.pid, n, k, (i) =>
        kura.startBackup(vms[i]!, { requestedAt: new Date(at + i).toISOString() }).then((h) => {
          ids[i] = h.workflowId;
          return h.result();
        }),
      );
      const backupSeconds = backups.seconds;
      const backupsEnd = Date.now();
      stepTimes.on = false;
      const cacheAfter = await serverCacheStats(metricsPort);

      const emptyRate = n / emptySeconds;
      const backupRate = n / backupSeconds;
      console.log(
        `spine benchmark: N=${n} backups of ${size} bytes each, concurrency bound K=${k}, dev server (SQLite) on 127.0.0.1 with ${serverCacheText(serverCacheArg())}, ${guardians ? 'a guardian per VM' : 'no VM guardians'}, load average ${loadavg()[0]!.toFixed(2)}`,
      );
      console.log(`  empty workflows     : ${emptySeconds.toFixed(2)} s, ${emptyRate.toFixed(1)} workflows/s`);
      console.log(
        `  end-to-end backups  : ${backupSeconds.toFixed(2)} s, ${backupRate.toFixed(1)} backups/s (${((n * size) / backupSeconds / 1024 / 1024).toFixed(1)} MiB/s)`,
      );
      console.log(
        `  ratio backups/empty : ${(backupRate / emptyRate).toFixed(3)}  (each backup: 7 local activities and 2 activities in 3 workflow tasks: resolve, reserve at once, then record start, zone and mount together, the copy run (an activity, which reads its copy back), then record, then each stream's tape catalog, unmount and unzone as one step, and the release, an activity)`,
      );
      const perJob = (cpu: number) => `${((1000 * cpu) / n).toFixed(0)} ms`;
      console.log(
        `  CPU per job         : empty workflow ${perJob(empty.serverCpu)} server + ${perJob(empty.ownCpu)} workers and client; backup ${perJob(backups.serverCpu)} server + ${perJob(backups.ownCpu)} workers and client`,
      );
      const middle = ids[Math.floor(n / 2)];
      if (middle)
        for (const line of await historyProfile(client, middle, arg('timeline', 'off') === 'on')) console.log(line);
      for (const line of stepLines()) console.log(line);
      const pool = poolWorkflowId(loaded.config.sites[0]!.name, loaded.config.installation);
      for (const line of await poolProfile(client, pool, backupsStart, backupsEnd)) console.log(line);
      console.log(
        `  fleet run (children): ${fleetSeconds.toFixed(2)} s, ${(n / fleetSeconds).toFixed(1)} backups/s, ${fleet.succeeded} succeeded, ${fleet.failed} failed`,
      );
      console.log(`  during the fleet run, ${cacheDelta(cacheAtFleet, cacheAtBackups)}`);
      console.log(`  during the backups, ${cacheDelta(cacheAtBackups, cacheAfter)}`);

      printVerdict({
        bench: 'spine',
        metric: 'backups ÷ empty workflows (rate)',
        now: backupRate / emptyRate,
        target: TARGET_RATIO,
        direction: 'atLeast',
        note: `N=${n}, K=${k}, ${size} bytes per backup, 1 stream, 1 chunk, guardians ${guardians ? 'on' : 'off'}`,
      });

      baseline.shutdown();
      await baselineRun;
      await native.close();
    },
    undefined,
    [timeSteps],
  );
}

runBench(main);
