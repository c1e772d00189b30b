/**
 * Shows a running job while the CLI waits for it: a progress bar fed by the workflow's `progress`
 * query and the running copy's heartbeat (bytes so far), or plain lines when not on a terminal.
 */
import { SingleBar, Presets } from 'cli-progress';
import { defaultPayloadConverter } from '@temporalio/common';
import type { WorkflowHandle } from '@temporalio/client';
import type { FleetProgress } from '../domain/fleet';
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
 * Waits for a backup or restore to end while showing its progress; returns its result or throws
 * its failure. With `quiet` (e.g. --json) nothing is drawn.
 */
export async function watchJob<T>(handle: WorkflowHandle, opts: { title: string; quiet?: boolean }): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (opts.quiet) return result;
  const tty = process.stderr.isTTY === true;
  const bar = tty
    ? new SingleBar({ format: `${opts.title} |{bar}| {percentage}% {done}/{size} {rate} {phase}: {activity}`, hideCursor: true, stream: process.stderr, clearOnComplete: false }, Presets.shades_classic)
    : undefined;
  let started = false;
  let lastLine = '';
  const t0 = Date.now();
  let finished = false;
  result.then(
    () => (finished = true),
    () => (finished = true),
  );
  while (!finished) {
    try {
      const p = await handle.query(progressQuery);
      const inFlight = p.phase === 'launch' ? await heartbeatBytes(handle) : 0;
      const done = Math.min(p.bytesDone + inFlight, p.bytesTotal);
      const seconds = (Date.now() - t0) / 1000;
      const fields = { done: formatBytes(done), size: formatBytes(p.bytesTotal), rate: seconds > 0 ? `${formatBytes(done / seconds)}/s` : '', phase: p.phase, activity: p.activity };
      if (bar) {
        if (!started) bar.start(Math.max(p.bytesTotal, 1), done, fields);
        else bar.setTotal(Math.max(p.bytesTotal, 1));
        bar.update(done, fields);
        started = true;
      } else {
        const pct = p.bytesTotal ? Math.floor((done / p.bytesTotal) * 10) * 10 : 0;
        const line = `${opts.title}: ${p.phase} ${pct}% — ${p.activity}`;
        if (line !== lastLine) process.stderr.write(`${line}\n`);
        lastLine = line;
      }
    } catch {
      // The workflow may not have run its first task yet; ask again.
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, POLL_MS))]);
  }
  if (bar && started) {
    bar.update(bar.getTotal());
    bar.stop();
  } else if (!bar) {
    // A short job may end between two polls: always show where it ended.
    const p = await handle.query(progressQuery).catch(() => undefined);
    const line = p ? `${opts.title}: ${p.phase} ${p.phase === 'done' ? 100 : Math.floor((p.bytesDone / Math.max(p.bytesTotal, 1)) * 100)}% — ${p.activity}` : '';
    if (line && line !== lastLine) process.stderr.write(`${line}\n`);
  }
  return result;
}

/** Waits for a fleet run while showing how many targets are done, failed and running. */
export async function watchFleet<T>(handle: WorkflowHandle, opts: { title: string; quiet?: boolean }): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (opts.quiet) return result;
  const tty = process.stderr.isTTY === true;
  const bar = tty
    ? new SingleBar({ format: `${opts.title} |{bar}| {value}/{total} targets, {failed} failed, {running} running, {bytes} ({rate})`, hideCursor: true, stream: process.stderr }, Presets.shades_classic)
    : undefined;
  let started = false;
  let finished = false;
  let lastReported = -1;
  const t0 = Date.now();
  result.then(
    () => (finished = true),
    () => (finished = true),
  );
  while (!finished) {
    try {
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
    } catch {
      // Not queryable yet.
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, POLL_MS))]);
  }
  if (bar && started) bar.stop();
  return result;
}
