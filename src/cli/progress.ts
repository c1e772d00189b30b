/**
 * Shows a running job while the CLI waits for it: a progress bar fed by the workflow's `progress`
 * query and the running copy's heartbeat (bytes so far), or plain lines when not on a terminal.
 */
import { SingleBar, Presets } from 'cli-progress';
import { defaultPayloadConverter } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';
import type { FleetProgress } from '../domain/fleet';
import type { Progress } from '../domain/jobs';
import { formatBytes } from '../domain/units';
import { fleetProgressQuery, progressQuery } from '../messages';

const POLL_MS = 500;

/** Bytes reported by the heartbeat of the job's running activity, if any. */
async function heartbeatBytes(handle: WorkflowHandle): Promise<number> {
  const d = await handle.describe();
  let bytes = 0;
  for (const a of d.raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    if (!payload) continue;
    try {
      const details = defaultPayloadConverter.fromPayload<{ bytes?: number }>(payload);
      if (typeof details?.bytes === 'number') bytes += details.bytes;
    } catch {
      // Heartbeats of other activities carry other shapes; they add no bytes.
    }
  }
  return bytes;
}

/**
 * Calls `tick` every POLL_MS until `result` settles. A failing tick is tried again at the next
 * one: the workflow may not have run its first task yet, and a progress display must never fail
 * the command it decorates.
 */
async function pollUntilSettled(result: Promise<unknown>, tick: () => Promise<void>): Promise<void> {
  let settled = false;
  const done = result.then(
    () => (settled = true),
    () => (settled = true),
  );
  while (!settled) {
    await tick().catch(() => undefined);
    await Promise.race([done, new Promise((r) => setTimeout(r, POLL_MS))]);
  }
}

/** One line of a job's progress for a log (not a terminal): phase, percentage, what it does. */
function progressLine(title: string, p: Progress, done: number, step: number): string {
  const pct = p.phase === 'done' ? 100 : p.bytesTotal ? Math.floor((done / p.bytesTotal) * (100 / step)) * step : 0;
  return `${title}: ${p.phase} ${pct}% — ${p.activity}`;
}

/**
 * Waits for a backup or restore to end while showing its progress; returns its result or throws
 * its failure. With `quiet` (e.g. --json) nothing is drawn.
 */
export async function watchJob<T>(handle: WorkflowHandle, opts: { title: string; quiet?: boolean }): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (opts.quiet) return result;
  const bar = process.stderr.isTTY
    ? new SingleBar({ format: `${opts.title} |{bar}| {percentage}% {done}/{size} {rate} {phase}: {activity}`, hideCursor: true, stream: process.stderr, clearOnComplete: false }, Presets.shades_classic)
    : undefined;
  let started = false;
  let lastLine = '';
  const say = (line: string) => {
    if (line !== lastLine) process.stderr.write(`${line}\n`);
    lastLine = line;
  };
  const t0 = Date.now();
  await pollUntilSettled(result, async () => {
    const p = await handle.query(progressQuery);
    const inFlight = p.phase === 'launch' ? await heartbeatBytes(handle) : 0;
    const done = Math.min(p.bytesDone + inFlight, p.bytesTotal);
    if (!bar) return say(progressLine(opts.title, p, done, 10));
    const seconds = (Date.now() - t0) / 1000;
    const fields = { done: formatBytes(done), size: formatBytes(p.bytesTotal), rate: seconds > 0 ? `${formatBytes(done / seconds)}/s` : '', phase: p.phase, activity: p.activity };
    if (!started) bar.start(Math.max(p.bytesTotal, 1), done, fields);
    else bar.setTotal(Math.max(p.bytesTotal, 1));
    bar.update(done, fields);
    started = true;
  });
  if (bar && started) {
    bar.update(bar.getTotal());
    bar.stop();
  } else if (!bar) {
    // A short job may end between two polls: always show where it ended.
    const p = await handle.query(progressQuery).catch(() => undefined);
    if (p) say(progressLine(opts.title, p, p.bytesDone, 1));
  }
  return result;
}

/** Waits for a fleet run while showing how many targets are done, failed and running. */
export async function watchFleet<T>(handle: WorkflowHandle, opts: { title: string; quiet?: boolean }): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (opts.quiet) return result;
  const bar = process.stderr.isTTY
    ? new SingleBar({ format: `${opts.title} |{bar}| {value}/{total} targets, {failed} failed, {running} running, {bytes} ({rate})`, hideCursor: true, stream: process.stderr }, Presets.shades_classic)
    : undefined;
  let started = false;
  let lastReported = -1;
  const t0 = Date.now();
  await pollUntilSettled(result, async () => {
    const p: FleetProgress = await handle.query(fleetProgressQuery);
    const done = p.targets.filter((t) => t.state === 'done' || t.state === 'failed').length;
    const bytes = p.targets.reduce((n, t) => n + (t.bytes ?? 0), 0);
    const seconds = (Date.now() - t0) / 1000;
    const fields = {
      failed: p.targets.filter((t) => t.state === 'failed').length,
      running: p.targets.filter((t) => t.state === 'running').length,
      bytes: formatBytes(bytes),
      rate: `${formatBytes(seconds > 0 ? bytes / seconds : 0)}/s`,
    };
    if (bar) {
      if (!started) bar.start(p.targets.length, done, fields);
      bar.update(done, fields);
      started = true;
    } else if (done !== lastReported && (done === p.targets.length || done - lastReported >= Math.max(1, Math.floor(p.targets.length / 10)))) {
      process.stderr.write(`${opts.title}: ${done}/${p.targets.length} targets, ${fields.failed} failed, ${fields.running} running, ${fields.bytes}\n`);
      lastReported = done;
    }
  });
  if (bar && started) bar.stop();
  return result;
}
