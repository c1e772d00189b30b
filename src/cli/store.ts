/**
 * `kura store …`: the deduplicated store of seed 000 and its copy in another building — backups of
 * volumes and of whole target classes, verify, prune, garbage collection, sync, their schedules,
 * and what each store holds with the copy's lag.
 */
import type { Command } from 'commander';
import { Catalog } from '../catalog/store';
import { ClassNameSchema } from '../domain/classes';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import { RetentionSchema, type StoreBackupRecord } from '../domain/store';
import { formatBytes, formatDuration, parseDuration } from '../domain/units';
import { parseWith } from '../domain/validate';
import { findSite } from '../config/targets';
import { KuraStore } from '../api/store';
import { ChunkStore } from '../store/chunk-store';
import { storeLag, storeRoots } from '../store/lag';
import { print, printStarted, type CliContext } from './context';
import { table } from './table';

export function registerStoreCommands(program: Command, ctx: CliContext): void {
  const store = program.command('store').description('the deduplicated store and its copy in another building');
  const connectStore = async () => {
    const { client, kura } = await ctx.connect();
    return new KuraStore(client, ctx.config(), kura.taskQueue);
  };

  store
    .command('status')
    .description("what each store holds, and the copy's lag against store.maxLag")
    .action(async () => {
      const loaded = ctx.config();
      const roots = storeRoots(ctx.paths().home, loaded.config.store);
      const primary = new ChunkStore(roots.primary);
      const copy = new ChunkStore(roots.copy);
      const rows: { name: string; root: string; chunks: number; bytes: number; indexes: number }[] = [];
      for (const [name, s] of [
        ['primary', primary],
        ['copy', copy],
      ] as const)
        rows.push({ name, root: s.root, ...(await s.usage()), indexes: (await s.listIndexes()).length });
      const lag = await storeLag(primary, copy, loaded.config.store.maxLag);
      print(ctx, { stores: rows, lag }, () =>
        [
          table(
            ['Store', 'Backups', 'Chunks', 'On disk', 'Directory'],
            rows.map((r) => [r.name, String(r.indexes), String(r.chunks), formatBytes(r.bytes), r.root]),
          ),
          `copy lag: ${formatDuration(lag.lagMs)} (${lag.behind.length} backup(s) behind; policy ${formatDuration(lag.maxLagMs)})${lag.alert ? ' — ALERT: past the policy, run `kura store sync`' : ''}; last sync ${lag.lastSyncAt ?? 'never'}`,
        ].join('\n'),
      );
    });

  store
    .command('list')
    .description('backups kept in the store, newest first, with the verdict of their last verify')
    .option('--target <name>', 'only this target')
    .action((o: { target?: string }) => {
      const catalog = new Catalog(ctx.paths().catalog);
      try {
        const rows = catalog.listStoreBackups(o.target === undefined ? {} : { target: o.target });
        print(ctx, rows, () =>
          rows.length === 0
            ? 'no backups in the store; `kura store class vm` takes some'
            : table(
                ['Backup', 'Size', 'Chunks', 'New', 'Added', 'Verify', 'Changed from'],
                rows.map((r) => [
                  r.backupId,
                  formatBytes(r.sizeBytes),
                  String(r.store.chunks),
                  String(r.store.newChunks),
                  formatBytes(r.store.storedBytes),
                  r.store.verifyStatus,
                  changedFromText(r.store),
                ]),
              ),
        );
      } finally {
        catalog.close();
      }
    });

  store
    .command('show <backupId>')
    .description("one backup kept in the store: the catalog's row, how it found its changed chunks and why")
    .action((backupId: string) => {
      const catalog = new Catalog(ctx.paths().catalog);
      try {
        const b = catalog.backup(backupId);
        const s = catalog.storeBackup(backupId);
        if (s === undefined)
          throw new NotFoundError(
            `${backupId} is not kept in the store (it is a tape or disk backup); \`kura store list\` shows what is`,
            { backupId },
          );
        const row = { ...b, store: s };
        print(ctx, row, () =>
          [
            `${b.backupId}: ${b.target} (${b.site}, ${b.array}/${b.volume}) of ${b.dataTime}, ${b.status}`,
            `  ${formatBytes(b.sizeBytes)} in ${s.chunks} chunk(s) of ${formatBytes(s.chunkSize)}, ${s.newChunks} new (${formatBytes(s.storedBytes)} added), ${formatBytes(s.readBytes)} read`,
            `  changed chunks from: ${changedFromText(s)}${s.changeNote === null ? '' : ` — ${s.changeNote}`}`,
            `  verify: ${s.verifyStatus}${s.verifiedAt ? ` at ${s.verifiedAt}` : ''}${s.verifyError ? ` (${s.verifyError})` : ''}`,
          ].join('\n'),
        );
      } finally {
        catalog.close();
      }
    });

  store
    .command('backup <volume>')
    .description('back one volume (array/volume) up into the store')
    .requiredOption('--target <name>', 'the name the catalog gives the backup')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .action(async (volume: string, o: { target: string; site?: string }) => {
      const [array, vol, ...rest] = volume.split('/');
      if (!array || !vol || rest.length > 0)
        throw new InvalidInputError(`a volume is named array/volume, e.g. array-01/vm-001-data, not "${volume}"`);
      const site = findSite(ctx.config().config, o.site).name;
      const r = await (await (await connectStore()).backup({ site, target: o.target, array, volume: vol })).result();
      print(
        ctx,
        r,
        () =>
          `${r.backupId}: ${formatBytes(r.sizeBytes)} in ${r.chunks} chunks, ${r.newChunks} new (${formatBytes(r.storedBytes)} added), ${r.changedChunks} changed since ${r.previousBackupId ?? 'no earlier backup'}; ${r.readChunks} chunk(s) read (changed blocks from ${r.changedFrom}: ${r.changeNote})`,
      );
    });

  store
    .command('class <class>')
    .description('back up every volume of a target class (vm, server, client) into the store')
    .action(async (name: string) => {
      const className = parseWith(ClassNameSchema, name, 'class');
      const r = await (await (await connectStore()).backupClass(className)).result();
      print(ctx, r, () =>
        [
          ...r.backups.map(
            (b) =>
              `${b.backupId}: ${b.newChunks} new chunk(s) (${formatBytes(b.storedBytes)}), ${b.changedChunks} changed, ${b.readChunks} read (${b.changedFrom})`,
          ),
          ...r.skipped.map((s) => `${s.target}: skipped — ${s.reason}`),
          `${r.backups.length} backed up, ${r.skipped.length} skipped`,
        ].join('\n'),
      );
    });

  store
    .command('to-tape <ref>')
    .description(
      "copy a store backup to tape through the streams, for long-term keeping: a backup id, or a target's newest store backup (a VM: its whole image)",
    )
    .option('--at <time>', "a target's newest store backup at or before this ISO time (default: now)")
    .option('--site <name>', 'the site (default: the one the backup or target is in)')
    .option('--streams <n>', 'independent copy streams to reserve, all or nothing (default: tuning.streams, 2)')
    .option(
      '--mode <mode>',
      'failover: chunks move to the next stream on a fault; parallel: a whole copy on every stream (default: tuning.mode)',
    )
    .option('--chunks <n>', 'cut each copy into this many chunks (default: tuning.chunks, 10)')
    .option('--policy <name>', 'take streams, mode and chunks from this policy of kura.yaml')
    .option('--detach', 'start the copy and return at once, printing its workflow id')
    .action(
      async (
        ref: string,
        o: {
          at?: string;
          site?: string;
          streams?: string;
          mode?: string;
          chunks?: string;
          policy?: string;
          detach?: boolean;
        },
      ) => {
        const int = (text: string | undefined, flag: string, min: number, max: number): number | undefined => {
          if (text === undefined) return undefined;
          const n = Number(text);
          if (!Number.isInteger(n) || n < min || n > max)
            throw new InvalidInputError(`${flag} must be a whole number from ${min} to ${max}, not "${text}"`);
          return n;
        };
        if (o.mode !== undefined && o.mode !== 'failover' && o.mode !== 'parallel')
          throw new InvalidInputError(`--mode must be failover or parallel, not "${o.mode}"`);
        if (o.at !== undefined && Number.isNaN(Date.parse(o.at)))
          throw new InvalidInputError(`--at must be an ISO time such as 2026-11-28T02:00:00Z, not "${o.at}"`);
        const streams = int(o.streams, '--streams', 1, 8);
        const chunks = int(o.chunks, '--chunks', 1, 1000);
        const handle = await (
          await connectStore()
        ).toTape(ref, {
          ...(o.site === undefined ? {} : { site: o.site }),
          ...(o.at === undefined ? {} : { at: new Date(o.at).toISOString() }),
          ...(streams === undefined ? {} : { streams }),
          ...(chunks === undefined ? {} : { chunks }),
          ...(o.mode === undefined ? {} : { mode: o.mode }),
          ...(o.policy === undefined ? {} : { policy: o.policy }),
        });
        if (o.detach) {
          printStarted(ctx, handle.workflowId);
          return;
        }
        const r = await handle.result();
        print(ctx, { ok: true, ...r }, () =>
          [
            ...r.copies.map((c) =>
              [
                `${c.storeBackupId} → ${c.backupId}: ${formatBytes(c.sizeBytes)} in ${c.pieces.length} piece(s) on ${[...new Set(c.pieces.map((p) => `${p.library}/${p.tape}`))].join(', ')}, sha256 ${c.sha256}`,
                ...c.streams.map(
                  (st) =>
                    `  stream ${st.stream}: ${st.server} → ${st.library}/${st.drive} with ${st.tape}: ${st.outcome}${st.pieces ? `, ${st.pieces} piece(s)` : ''}${st.error ? ` — ${st.error}` : ''}`,
                ),
                `  restore with: kura restore ${c.backupId} --to <path>`,
              ].join('\n'),
            ),
            `${r.copies.length} store backup(s) copied to tape`,
          ].join('\n'),
        );
      },
    );

  store
    .command('restore-vm <vm>')
    .description('recreate a VM from its whole image on a chosen host, start it and wait until it reports healthy')
    .requiredOption('--host <name>', 'the host the VM is recreated on')
    .option('--as <name>', "the name it is recreated under (needs an image that holds the VM's definition)")
    .option('--at <time>', 'the instant of the image (its data time, ISO); the newest whole image when omitted')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .action(async (vm: string, o: { host: string; as?: string; at?: string; site?: string }) => {
      const site = findSite(ctx.config().config, o.site).name;
      const r = await (
        await (
          await connectStore()
        ).restoreVm({
          site,
          vm,
          host: o.host,
          ...(o.as === undefined ? {} : { name: o.as }),
          ...(o.at === undefined ? {} : { dataTime: o.at }),
        })
      ).result();
      print(ctx, r, () =>
        [
          `${r.name} recreated on ${r.host} from the image of ${r.dataTime} (definition from ${r.definitionFrom}) and healthy in ${formatDuration(r.tookMs)}: ${r.health}`,
          ...(r.note === null ? [] : [`note: ${r.note}`]),
          ...r.fallbacks.map((f) => `chunk ${f.chunk} read from the ${f.from} store: ${f.reason}`),
        ].join('\n'),
      );
    });

  store
    .command('verify <backup...>')
    .description('re-hash every chunk the backups reference; a mismatch marks the backup bad')
    .option('--copy', 'verify in the copy in another building')
    .action(async (ids: string[], o: { copy?: boolean }) => {
      const r = await (await (await connectStore()).verify(ids, o.copy === true ? 'copy' : 'primary')).result();
      print(ctx, r, () => r.map((v) => `${v.backupId}: ${v.chunks} chunk(s) good`).join('\n'));
    });

  store
    .command('prune <target...>')
    .description("remove a target's store backups that the retention does not keep (their chunks go at the next gc)")
    .option('--keep-last <n>', 'the newest n')
    .option('--keep-daily <n>', 'the newest of each of the last n days')
    .option('--keep-weekly <n>', 'the newest of each of the last n weeks')
    .option('--keep-monthly <n>', 'the newest of each of the last n months')
    .option('--site <name>', 'the site (default: the first in the configuration)')
    .option('--dry-run', 'only say what would be removed')
    .action(
      async (
        targets: string[],
        o: {
          keepLast?: string;
          keepDaily?: string;
          keepWeekly?: string;
          keepMonthly?: string;
          site?: string;
          dryRun?: boolean;
        },
      ) => {
        const n = (v: string | undefined) => (v === undefined ? undefined : Number(v));
        const retention = parseWith(
          RetentionSchema,
          {
            keepLast: n(o.keepLast),
            keepDaily: n(o.keepDaily),
            keepWeekly: n(o.keepWeekly),
            keepMonthly: n(o.keepMonthly),
          },
          'retention',
        );
        const site = findSite(ctx.config().config, o.site).name;
        const r = await (
          await (await connectStore()).prune({ site, targets, retention, dryRun: o.dryRun === true })
        ).result();
        print(ctx, r, () =>
          Object.entries(r)
            .map(
              ([t, v]) =>
                `${t}: kept ${v.kept.length}, ${o.dryRun ? 'would remove' : 'removed'} ${v.removed.length}${v.removed.length ? ` (${v.removed.join(', ')})` : ''}`,
            )
            .join('\n'),
        );
      },
    );

  store
    .command('gc')
    .description(
      'garbage collection: mark every chunk a backup references, then sweep the rest older than the grace period',
    )
    .option('--copy', 'collect in the copy in another building')
    .option('--grace <duration>', 'keep unreferenced chunks younger than this (default: store.gcGrace)')
    .action(async (o: { copy?: boolean; grace?: string }) => {
      const graceMs = o.grace === undefined ? undefined : parseDuration(o.grace);
      if (o.grace !== undefined && graceMs === undefined)
        throw new InvalidInputError(`--grace must be a duration such as 24h or 30m, not "${o.grace}"`);
      const r = await (
        await (
          await connectStore()
        ).gc({ store: o.copy === true ? 'copy' : 'primary', ...(graceMs === undefined ? {} : { graceMs }) })
      ).result();
      print(
        ctx,
        r,
        () =>
          `${r.store}: ${r.marked} chunk(s) in use, ${r.removed} removed (${formatBytes(r.removedBytes)}), ${r.pending} unreferenced kept until past the grace period (cutoff ${r.cutoff})`,
      );
    });

  store
    .command('sync')
    .description('sync the copy in another building: only the chunks it lacks, each verified')
    .action(async () => {
      const r = await (await (await connectStore()).sync()).result();
      print(
        ctx,
        r,
        () =>
          `copy: ${r.indexes} backup(s) and ${r.chunks} chunk(s) (${formatBytes(r.bytes)}) copied, ${r.removedIndexes} pruned; lag ${formatDuration(r.lag.lagMs)}${r.lag.alert ? ' — ALERT: past the policy' : ''}`,
      );
    });

  store
    .command('schedules')
    .description(
      "create or update the store's Temporal Schedules: each class at its time, the copy's sync every store.syncEvery",
    )
    .action(async () => {
      const r = await (await connectStore()).applySchedules();
      print(ctx, r, () =>
        [
          `store schedules: ${r.created.length} created, ${r.updated.length} updated, ${r.deleted.length} deleted`,
          ...r.created.map((s) => `  + ${s}`),
          ...r.updated.map((s) => `  ~ ${s}`),
          ...r.deleted.map((s) => `  - ${s}`),
        ].join('\n'),
      );
    });
}

/** How a store backup found its changed chunks, and how many it read; `—` for rows recorded before it was kept. */
function changedFromText(s: StoreBackupRecord): string {
  return s.changedFrom === null ? '—' : `${s.changedFrom} (${s.readChunks ?? 0} read)`;
}
