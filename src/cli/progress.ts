/**
 * Shows a running job while the CLI waits for it: a progress bar fed by the workflow's `progress`
 * query and the running copy's heartbeat (bytes so far), or plain lines when not on a terminal.
 */
import { MultiBar, SingleBar, Presets, type SingleBar as Bar } from 'cli-progress';
import type { WorkflowHandle } from '@temporalio/client';
import type { CatalogRebuildProgress } from '../domain/catalog-rebuild';
import type { FleetProgress } from '../domain/fleet';
import type { Progress, StreamProgress } from '../domain/jobs';
import { formatBytes } from '../domain/units';
import { catalogRebuildProgressQuery, fleetProgressQuery, progressQuery } from '../messages';
import { heartbeatBytes } from '../api/heartbeat';

export { heartbeatBytes };

const POLL_MS = 500;

/**
 * Calls `tick` every POLL_MS until `result` settles, or `signal` aborts. A failing tick is tried
 * again at the next one: the workflow may not have run its first task yet, and a progress display
 * must never fail the command it decorates. Resolves only after the last tick has finished, so no
 * query is left in flight when the caller closes the connection.
 */
export async function pollUntilSettled(
  result: Promise<unknown>,
  tick: () => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  let settled = false;
  const done = result.then(
    () => (settled = true),
    () => (settled = true),
  );
  const aborted = new Promise<void>((resolve) => {
    if (signal?.aborted) resolve();
    signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  while (!settled && !signal?.aborted) {
    await tick().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, aborted, new Promise((r) => (timer = setTimeout(r, POLL_MS)))]);
    clearTimeout(timer);
  }
}

/** One line of a job's progress for a log (not a terminal): phase, percentage, what it does. */
function progressLine(title: string, p: Progress, done: number, step: number): string {
  const pct = p.phase === 'done' ? 100 : p.bytesTotal ? Math.floor((done / p.bytesTotal) * (100 / step)) * step : 0;
  return `${title}: ${p.phase} ${pct}% — ${p.activity}`;
}

/**
 * Waits for a backup or restore to end while showing its progress; returns its result or throws
 * its failure. A job with several streams gets one bar per stream under the job's own bar. With
 * `quiet` (e.g. --json) nothing is drawn.
 */
export async function watchJob<T>(handle: WorkflowHandle, opts: { title: string; quiet?: boolean }): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (opts.quiet) return result;
  const tty = process.stderr.isTTY;
  const multi = tty
    ? new MultiBar(
        {
          hideCursor: true,
          stream: process.stderr,
          clearOnComplete: false,
          format: '{label} |{bar}| {percentage}% {done}/{size} {info}',
        },
        Presets.shades_classic,
      )
    : undefined;
  let jobBar: Bar | undefined;
  const streamBars = new Map<number, Bar>();
  const streamStates = new Map<number, string>();
  let lastLine = '';
  const say = (line: string) => {
    if (line !== lastLine) process.stderr.write(`${line}\n`);
    lastLine = line;
  };
  const t0 = Date.now();
  const draw = (p: Progress, inFlight: number) => {
    const done = Math.min(p.bytesDone + inFlight, p.bytesTotal);
    const seconds = (Date.now() - t0) / 1000;
    const rate = seconds > 0 ? `${formatBytes(done / seconds)}/s` : '';
    if (!multi) {
      say(progressLine(opts.title, p, done, 10));
      for (const st of p.streams ?? []) {
        const line = streamLine(st);
        if (streamStates.get(st.stream) !== st.state) process.stderr.write(`  ${line}\n`);
        streamStates.set(st.stream, st.state);
      }
      return;
    }
    const fields = {
      label: opts.title,
      done: formatBytes(done),
      size: formatBytes(p.bytesTotal),
      info: `${rate} ${p.phase}: ${p.activity}`,
    };
    if (!jobBar) jobBar = multi.create(Math.max(p.bytesTotal, 1), done, fields);
    jobBar.setTotal(Math.max(p.bytesTotal, 1));
    jobBar.update(done, fields);
    for (const st of p.streams ?? []) {
      const extra =
        st.state === 'copying' && p.streams?.filter((x) => x.state === 'copying').length === 1 ? inFlight : 0;
      const sDone = Math.min(st.bytesDone + extra, st.bytesTotal);
      const f = {
        label: `  stream ${st.stream} ${st.tape}`,
        done: formatBytes(sDone),
        size: formatBytes(st.bytesTotal),
        info: `${st.state}${st.error ? `: ${st.error}` : ''} (${st.path})`,
      };
      const bar = streamBars.get(st.stream) ?? multi.create(Math.max(st.bytesTotal, 1), sDone, f);
      streamBars.set(st.stream, bar);
      bar.setTotal(Math.max(st.bytesTotal, 1));
      bar.update(sDone, f);
    }
  };
  await pollUntilSettled(result, async () => {
    const p = await handle.query(progressQuery);
    draw(p, p.phase === 'launch' ? await heartbeatBytes(handle) : 0);
  });
  // A short job may end between two polls: always show where it ended.
  const last = await handle.query(progressQuery).catch(() => undefined);
  if (last) draw(last, 0);
  multi?.stop();
  return result;
}

/** `stream 1 L2T001 failed: DeviceFault: … (bks-02 → fcsw-02 → lib-02/lib-02-drv-1)` */
function streamLine(st: StreamProgress): string {
  return `stream ${st.stream} ${st.tape} ${st.state}${st.error ? `: ${st.error}` : ''} (${st.path})`;
}

/**
 * Waits for a fleet run while showing how many targets are done, failed and running. When `signal`
 * aborts, the display stops (no query or wait for the result is left in flight) and the abort's
 * reason is thrown; the run itself goes on in Temporal.
 */
export async function watchFleet<T>(
  handle: WorkflowHandle,
  opts: { title: string; quiet?: boolean; signal?: AbortSignal },
): Promise<T> {
  const { signal } = opts;
  // The long poll for the result is cancelled with the display, not left to the connection's close.
  const result = (
    signal ? handle.client.withAbortSignal(signal, () => handle.result()) : handle.result()
  ) as Promise<T>;
  let finished = false;
  void result.then(
    () => (finished = true),
    () => undefined,
  );
  // A run that finished just as the stop came is reported as finished, not as stopped.
  const stopped = () => {
    if (signal?.aborted && !finished) throw signal.reason;
  };
  if (opts.quiet) {
    await pollUntilSettled(result, async () => undefined, signal);
    stopped();
    return result;
  }
  const bar = terminalBar(
    `${opts.title} |{bar}| {value}/{total} targets, {failed} failed, {running} running, {bytes} ({rate})`,
  );
  let started = false;
  let lastReported = -1;
  const t0 = Date.now();
  try {
    await pollUntilSettled(
      result,
      async () => {
        const p: FleetProgress = await handle.query(fleetProgressQuery);
        if (signal?.aborted) return; // stopped while the query was on its way: draw nothing more
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
        } else if (
          done !== lastReported &&
          (done === p.targets.length || done - lastReported >= Math.max(1, Math.floor(p.targets.length / 10)))
        ) {
          process.stderr.write(
            `${opts.title}: ${done}/${p.targets.length} targets, ${fields.failed} failed, ${fields.running} running, ${fields.bytes}\n`,
          );
          lastReported = done;
        }
      },
      signal,
    );
  } finally {
    if (bar && started) bar.stop();
  }
  stopped();
  return result;
}

/**
 * Waits for a catalog rebuild while showing how many cartridges are done and what each library is
 * reading: a bar on a terminal, else a line every tenth of the cartridges and one per cartridge
 * given up.
 */
export async function watchRebuild<T>(handle: WorkflowHandle, opts: { title: string; quiet?: boolean }): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (opts.quiet) return result;
  const bar = terminalBar(
    `${opts.title} |{bar}| {value}/{total} cartridges, {entries} catalog entries, {unread} not read {reading}`,
  );
  let started = false;
  let lastReported = -1;
  let unreadShown = 0;
  const draw = (p: CatalogRebuildProgress) => {
    const done = p.cartridges + p.unread.length;
    const fields = {
      entries: p.entries,
      unread: p.unread.length,
      reading: p.libraries.flatMap((l) => (l.current ? [l.current] : [])).join('; '),
    };
    if (bar) {
      if (!started) bar.start(Math.max(p.cartridgesTotal, 1), done, fields);
      bar.setTotal(Math.max(p.cartridgesTotal, 1));
      bar.update(done, fields);
      started = true;
      return;
    }
    for (const u of p.unread.slice(unreadShown)) {
      process.stderr.write(`${opts.title}: cartridge ${u.tape} of ${u.library} not read: ${u.type}: ${u.message}\n`);
    }
    unreadShown = Math.max(unreadShown, p.unread.length);
    const step = Math.max(1, Math.floor(p.cartridgesTotal / 10));
    if (p.cartridgesTotal > 0 && done !== lastReported && (done === p.cartridgesTotal || done - lastReported >= step)) {
      process.stderr.write(
        `${opts.title}: ${done}/${p.cartridgesTotal} cartridges, ${p.entries} catalog entries — ${p.activity}\n`,
      );
      lastReported = done;
    }
  };
  await pollUntilSettled(result, async () => draw(await handle.query(catalogRebuildProgressQuery)));
  // A short rebuild may end between two polls: always show where it ended.
  const last = await handle.query(catalogRebuildProgressQuery).catch(() => undefined);
  if (last) draw(last);
  if (bar && started) bar.stop();
  return result;
}

/** A one-line progress bar on a terminal; none when stderr is not one (lines are printed instead). */
function terminalBar(format: string): SingleBar | undefined {
  return process.stderr.isTTY
    ? new SingleBar({ format, hideCursor: true, stream: process.stderr }, Presets.shades_classic)
    : undefined;
}
