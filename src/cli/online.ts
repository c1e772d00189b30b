/**
 * `kura backup <target> --online`: an online backup through the datapath (seed 002), showing its
 * phase, the bytes of the base copy, the drain ETA and the convergence path while it runs, and the
 * measured quiesce window at the end.
 */
import type { OnlineBackupReport, OnlineProgress } from '../domain/datapath';
import { formatBytes } from '../domain/units';
import { onlineProgressQuery } from '../client';
import { print, printStarted, uiLink, type CliContext } from './context';
import { heartbeatBytes, pollUntilSettled } from './progress';

/** One line of an online backup's progress. */
export function onlineProgressLine(target: string, p: OnlineProgress, baseCopied: number): string {
  const parts = [`online ${target}: ${p.phase}`];
  if (p.phase === 'base-copy') parts.push(`${formatBytes(baseCopied)} of ${formatBytes(p.bytesTotal)}`);
  if (p.phase === 'catch-up' || p.phase === 'quiesce') {
    parts.push(
      `round ${p.rounds}`,
      `unreflected ${formatBytes(p.unreflectedBytes)}`,
      `ETA ${p.etaMs === null ? 'unknown' : `${p.etaMs} ms`}`,
      `path ${p.path}`,
    );
  }
  if (p.quiesceMs !== null) parts.push(`quiesce ${p.quiesceMs.toFixed(1)} ms`);
  return `${parts.join(' · ')} — ${p.activity}`;
}

/** Runs an online backup from the CLI and prints its report. */
export async function runOnlineBackup(
  ctx: CliContext,
  target: string,
  o: { site?: string; detach?: boolean },
): Promise<void> {
  const { kura } = await ctx.connect();
  const handle = await kura.startOnlineBackup(target, { site: o.site });
  if (o.detach) {
    printStarted(ctx, handle.workflowId);
    return;
  }
  const result = handle.result();
  if (!ctx.json()) {
    let last = '';
    await pollUntilSettled(result, async () => {
      const p = await handle.query(onlineProgressQuery);
      const line = onlineProgressLine(target, p, p.phase === 'base-copy' ? await heartbeatBytes(handle) : p.bytesDone);
      if (line !== last) process.stderr.write(`${line}\n`);
      last = line;
    });
  }
  const report: OnlineBackupReport = await result;
  print(ctx, { ok: true, ...report }, () =>
    [
      `backed up ${target} (${report.array}/${report.volume}) online as ${report.backupId}`,
      `  image of ${report.switchedAt}: ${formatBytes(report.sizeBytes)} at ${report.image}`,
      `  ${report.rounds} catch-up round(s), path ${report.path}; host commands held ${report.quiesceMs.toFixed(1)} ms (I/O timeout ${report.ioTimeoutMs} ms, ${((report.quiesceMs / report.ioTimeoutMs) * 100).toFixed(2)}%)`,
      `  in the Temporal UI: ${uiLink(report.workflowId)}`,
    ].join('\n'),
  );
}
