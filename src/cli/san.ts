/**
 * `kura san …`: the arrays' function software as an operator sees it — the pairs with their state
 * and copy progress, the snapshots, a replica-refresh that keeps a point-in-time copy — and the
 * SAN's layout per host (LDEV → port + LUN, zones, masks) with per-volume performance.
 */
import type { Command } from 'commander';
import type { Kura } from '../client';
import type { ReplicaReport } from '../domain/jobs';
import { formatBytes, parseDuration } from '../domain/units';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorType, InvalidInputError, KuraError } from '../domain/errors';
import type { LoadedConfig } from '../config/load';
import { findSite } from '../config/targets';
import { sanView, type SanView } from '../domain/tenancy';
import { parseDatapathCounters, volumePerf, type VolumePerf } from '../domain/volume-perf';
import { print, printStarted, type CliContext } from './context';
import { watchJob } from './progress';
import { table } from './table';

export function registerSanCommands(program: Command, ctx: CliContext): void {
  const san = program
    .command('san')
    .description("the SAN: the arrays' pairs and snapshots (seed 003's function software), its LUNs, zones and masks");

  san
    .command('pairs')
    .description('list the volume pairs of every array of a site: state, copy progress, split time')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .action(async (o: { site?: string }) => {
      const { kura } = await ctx.connect();
      const { pairs } = await kura.sanListing({ site: o.site });
      print(ctx, { ok: true, pairs }, () => renderPairs(pairs));
    });

  san
    .command('snapshots')
    .description('list the snapshots of every array of a site')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .action(async (o: { site?: string }) => {
      const { kura } = await ctx.connect();
      const { snapshots } = await kura.sanListing({ site: o.site });
      print(ctx, { ok: true, snapshots }, () => renderSnapshots(snapshots));
    });

  san
    .command('show')
    .description(
      'list, per host and backup server, each LDEV it sees at its port + LUN, the zones and the LUN masks; --perf adds per-volume IOPS, read/write ratio and bytes from the datapath',
    )
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option('--perf', "add per-volume IOPS, read/write ratio and bytes, from the datapath's counters")
    .option('--interval <duration>', '--perf: the IOPS are measured over this long, e.g. 2s (default 1s)')
    .action(async (o: { site?: string; perf?: boolean; interval?: string }) => {
      const loaded = ctx.config();
      const view = sanView(findSite(loaded.config, o.site));
      const intervalMs = o.interval === undefined ? 1000 : parseDuration(o.interval);
      if (intervalMs === undefined || intervalMs <= 0 || intervalMs > 60_000)
        throw new InvalidInputError(
          `--interval must be a duration from 1ms to 60s, such as 1s or 500ms, not "${o.interval}"`,
        );
      const perf = o.perf ? await datapathPerf(loaded, intervalMs) : undefined;
      print(ctx, { ok: true, ...view, ...(perf ? { perf } : {}) }, () => renderSan(view, perf));
    });

  san
    .command('refresh <target>')
    .description(
      "bring a target's replica up to date (pairing it from the free pool if needed) and split it, keeping it as a point-in-time copy",
    )
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option('--pair-wait <duration>', 'how long to wait for the pair to be in sync, e.g. 10m (default 10m)')
    .option('--detach', 'start the refresh and return at once, printing its workflow id')
    .action(async (target: string, o: { site?: string; pairWait?: string; detach?: boolean }) => {
      const pairWaitMs = o.pairWait === undefined ? undefined : parseDuration(o.pairWait);
      if (o.pairWait !== undefined && pairWaitMs === undefined)
        throw new InvalidInputError(`--pair-wait must be a duration such as 30s or 10m, not "${o.pairWait}"`);
      const { kura } = await ctx.connect();
      const handle = await kura.startReplicaRefresh(target, {
        site: o.site,
        ...(pairWaitMs === undefined ? {} : { pairWaitMs }),
      });
      if (o.detach) return printStarted(ctx, handle.workflowId);
      const report = await watchJob<ReplicaReport>(handle, { title: `refresh ${target}`, quiet: ctx.json() });
      print(ctx, { ok: true, ...report }, () =>
        [
          `replica ${report.replica} of ${report.array}/${report.volume} split at ${report.splitAt}`,
          `  ${formatBytes(report.copiedBytes)} copied to bring it up to date; read it at ${report.readPath}`,
        ].join('\n'),
      );
    });
}

type Listing = Awaited<ReturnType<Kura['sanListing']>>;

/** Two readings of the datapath's counters `intervalMs` apart, as per-volume performance. */
async function datapathPerf(loaded: LoadedConfig, intervalMs: number): Promise<VolumePerf[]> {
  const port = loaded.config.metrics.datapathPort;
  if (port === 0)
    throw new InvalidInputError(
      `--perf reads the datapath's counters, which it serves only when metrics.datapathPort is set in ${loaded.file}; set it and run the datapath (kura datapath, or kura start)`,
    );
  const url = `http://127.0.0.1:${port}/metrics`;
  const read = async () => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return parseDatapathCounters(await res.text());
    } catch (err) {
      throw new KuraError(
        ErrorType.Unavailable,
        `the datapath's metrics at ${url} do not answer (${err instanceof Error ? err.message : String(err)}); start the datapath (kura datapath, or kura start) and try again`,
        { cause: err },
      );
    }
  };
  const before = await read();
  const t0 = performance.now();
  await sleep(intervalMs);
  const after = await read();
  return volumePerf(before, after, performance.now() - t0);
}

function renderSan(view: SanView, perf: VolumePerf[] | undefined): string {
  const out: string[] = [];
  out.push(
    table(
      ['HOST', 'KIND', 'COMPANY', 'WWN', 'LDEV', 'PORT', 'LUN', 'OWNER', 'ZONES'],
      view.hosts.flatMap((h) => {
        const head = [h.name, h.kind, h.company ?? '-', h.wwn ?? '-'];
        const zones = h.zones.join(', ') || '-';
        if (h.luns.length === 0) return [[...head, '-', '-', '-', '-', zones]];
        return h.luns.map((l) => [
          ...head,
          `${l.array}/${l.ldev}`,
          l.port === null ? '-' : `${l.port} (${l.portWwn ?? '?'})`,
          String(l.lun),
          l.owner ?? '-',
          zones,
        ]);
      }),
    ),
  );
  out.push(
    '',
    view.zones.length === 0
      ? 'no company zones in the configuration'
      : table(
          ['COMPANY', 'ZONE', 'MEMBERS'],
          view.zones.map((z) => [z.company, z.name, z.members.join(' ')]),
        ),
  );
  out.push(
    '',
    view.masks.length === 0
      ? 'no LUN masks: every volume is open to every server'
      : table(
          ['ARRAY', 'LDEV', 'PORT', 'LUN', 'OWNER', 'VISIBLE TO'],
          view.masks.map((m) => [m.array, m.ldev, m.port ?? '-', String(m.lun), m.owner ?? '-', m.wwns.join(' ')]),
        ),
  );
  if (perf)
    out.push(
      '',
      perf.length === 0
        ? 'the datapath has served no I/O yet'
        : table(
            ['VOLUME', 'IOPS', 'READ/WRITE', 'READS', 'WRITES', 'READ', 'WRITTEN'],
            perf.map((p) => [
              p.volume,
              p.iops.toFixed(1),
              p.readRatio === null ? '-' : `${Math.round(p.readRatio * 100)}/${100 - Math.round(p.readRatio * 100)}`,
              String(p.reads),
              String(p.writes),
              formatBytes(p.bytesRead),
              formatBytes(p.bytesWritten),
            ]),
          ),
    );
  return out.join('\n');
}

function renderPairs(pairs: Listing['pairs']): string {
  if (pairs.length === 0) return 'no pairs (a replica-refresh creates one: kura san refresh <target>)';
  return table(
    ['ARRAY', 'VOLUME', 'REPLICA', 'STATE', 'COPIED', 'SPLIT AT'],
    pairs.map((p) => [
      p.array,
      p.volume,
      p.replica,
      p.state,
      `${formatBytes(p.copiedBytes)} / ${formatBytes(p.totalBytes)}`,
      p.splitAt ?? '',
    ]),
  );
}

function renderSnapshots(snaps: Listing['snapshots']): string {
  if (snaps.length === 0) return 'no snapshots';
  return table(
    ['ARRAY', 'VOLUME', 'NAME', 'TAKEN AT', 'SIZE'],
    snaps.map((s) => [s.array, s.volume, s.name, s.createdAt, formatBytes(s.sizeBytes)]),
  );
}
