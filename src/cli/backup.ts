/** `kura backup <target>`: back up a VM's data volume (or array/volume) to tape, showing progress. */
import type { Command } from 'commander';
import { BackupMethodSchema, CopyModeSchema, StreamKindSchema, type BackupReport } from '../domain/jobs';
import { InvalidInputError } from '../domain/errors';
import { formatBytes, parseDuration, parseSize } from '../domain/units';
import { watchJob } from './progress';
import { print, printStarted, uiLink, type CliContext } from './context';
import { runOnlineBackup } from './online';

export function registerBackupCommands(program: Command, ctx: CliContext): void {
  program
    .command('backup <target>')
    .description('back up a VM (its data volume) or a volume named array/volume to tape')
    .option(
      '--method <method>',
      "direct: copy the volume itself; split: split the volume's pair and copy the replica; snapshot: copy a snapshot taken at once (default: direct)",
    )
    .option(
      '--pair-wait <duration>',
      'split: how long to wait for the pair to be in sync before taking a snapshot instead, e.g. 10m',
    )
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option('--streams <n>', 'independent copy streams to reserve, all or nothing (default: tuning.streams, 2)')
    .option(
      '--mode <mode>',
      'failover: chunks move to the next stream on a fault; parallel: a whole copy on every stream (default: tuning.mode)',
    )
    .option('--chunks <n>', 'cut the copy into this many chunks (default: tuning.chunks, 10)')
    .option(
      '--stream-kind <kind>',
      'lan-free: a backup server moves the bytes; direct: a copy device moves them volume → drive where one can (default: tuning.streamKind)',
    )
    .option('--chunk-size <size>', 'cut the copy into chunks of this size instead, e.g. 64MiB')
    .option(
      '--wait <duration>',
      "wait in the pool's first-come queue this long for free devices, e.g. 10m (default: fail at once)",
    )
    .option('--policy <name>', 'take streams, mode and chunks from this policy of kura.yaml')
    .option(
      '--server <name>',
      "the backup server asking for the copy (on a SAN shared by companies, one of the owner's); the copy runs on it alone",
    )
    .option('--detach', 'start the backup and return at once, printing its workflow id')
    .option(
      '--online',
      'back up while the host keeps writing, through the datapath (see `kura datapath`); shows phase and ETA',
    )
    .action(async (target: string, o: BackupFlags & { online?: boolean }) => {
      if (o.online) return runOnlineBackup(ctx, target, o);
      const opts = backupOptions(o);
      const { kura } = await ctx.connect();
      const handle = await kura.startBackup(target, {
        site: o.site,
        ...opts,
        ...(o.server === undefined ? {} : { server: o.server }),
      });
      if (o.detach) {
        printStarted(ctx, handle.workflowId);
        return;
      }
      const t0 = Date.now();
      const report = await watchJob<BackupReport>(handle, { title: `backup ${target}`, quiet: ctx.json() });
      const seconds = (Date.now() - t0) / 1000;
      print(ctx, { ok: true, ...report }, () =>
        [
          `backed up ${target} (${report.array}/${report.volume}) as ${report.backupId}${report.kind && report.kind !== 'backup' ? ` by ${report.kind}${report.source?.at ? ` (image of ${report.source.at})` : ''}` : ''}`,
          ...(report.changes ?? []).map((c) => `  plan changed after ${c.step}: ${c.what} — ${c.why}`),
          `  ${formatBytes(report.sizeBytes)} in ${report.pieces.length} piece(s) on ${[...new Set(report.pieces.map((p) => `${p.library}/${p.tape}`))].join(', ')} (${report.mode})`,
          ...report.streams.map(
            (st) =>
              `  stream ${st.stream}: ${[st.server, ...st.switches, `${st.library}/${st.drive}`].join(' → ')} with ${st.tape}: ${st.outcome}${st.pieces ? `, ${st.pieces} piece(s)` : ''}${st.error ? ` — ${st.error}` : ''}`,
          ),
          `  ${seconds.toFixed(1)} s, ${formatBytes(report.sizeBytes / Math.max(seconds, 0.001))}/s`,
          `  restore with: kura restore ${report.backupId} --to <path>`,
          `  in the Temporal UI: ${uiLink(report.workflowId)}`,
        ].join('\n'),
      );
    });
}

interface BackupFlags {
  site?: string;
  streams?: string;
  mode?: string;
  chunks?: string;
  chunkSize?: string;
  wait?: string;
  policy?: string;
  detach?: boolean;
  method?: string;
  pairWait?: string;
  streamKind?: string;
  server?: string;
}

/** Checks the flags; a bad one is refused (exit 2) before anything starts. */
function backupOptions(o: BackupFlags) {
  const int = (text: string | undefined, flag: string, min: number, max: number): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidInputError(`${flag} must be a whole number from ${min} to ${max}, not "${text}"`);
    return n;
  };
  const mode = o.mode === undefined ? undefined : CopyModeSchema.safeParse(o.mode).data;
  if (o.mode !== undefined && mode === undefined)
    throw new InvalidInputError(`--mode must be failover or parallel, not "${o.mode}"`);
  let chunkSize: number | undefined;
  if (o.chunkSize !== undefined) {
    chunkSize = parseSize(o.chunkSize);
    if (chunkSize === undefined || chunkSize < 4096)
      throw new InvalidInputError(`--chunk-size must be a size of at least 4KiB such as 64MiB, not "${o.chunkSize}"`);
  }
  let waitMs = 0;
  if (o.wait !== undefined) {
    const ms = parseDuration(o.wait);
    if (ms === undefined)
      throw new InvalidInputError(`--wait must be a duration such as 30s, 10m or 2h, not "${o.wait}"`);
    waitMs = ms;
  }
  const method = o.method === undefined ? undefined : BackupMethodSchema.safeParse(o.method).data;
  if (o.method !== undefined && method === undefined)
    throw new InvalidInputError(`--method must be direct, split or snapshot, not "${o.method}"`);
  const pairWaitMs = o.pairWait === undefined ? undefined : parseDuration(o.pairWait);
  if (o.pairWait !== undefined && pairWaitMs === undefined)
    throw new InvalidInputError(`--pair-wait must be a duration such as 30s or 10m, not "${o.pairWait}"`);
  const streamKind = o.streamKind === undefined ? undefined : StreamKindSchema.safeParse(o.streamKind).data;
  if (o.streamKind !== undefined && streamKind === undefined)
    throw new InvalidInputError(`--stream-kind must be lan-free or direct, not "${o.streamKind}"`);
  const streams = int(o.streams, '--streams', 1, 8);
  const chunks = int(o.chunks, '--chunks', 1, 1000);
  return {
    policy: o.policy,
    tuning: { reserveWaitMs: waitMs },
    ...(streams === undefined ? {} : { streams }),
    ...(chunks === undefined ? {} : { chunks }),
    ...(chunkSize === undefined ? {} : { chunkSize }),
    ...(mode === undefined ? {} : { mode }),
    ...(method === undefined ? {} : { method }),
    ...(pairWaitMs === undefined ? {} : { pairWaitMs }),
    ...(streamKind === undefined ? {} : { streamKind }),
  };
}
