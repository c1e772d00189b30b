/**
 * `kura pool …`: show a site's resource pool tables (seed 004 Figs. 3–6) and mark devices
 * available or unavailable.
 */
import type { Command } from 'commander';
import type { LoadedConfig } from '../config/load';
import { InvalidInputError, formatPath } from '../domain/errors';
import { MarkRequestSchema, type DeviceRow, type PoolTables } from '../domain/pool';
import { formatBytes } from '../domain/units';
import { TABLE_KEYS, type TableKey } from '../domain/pool-tables';
import type { Kura } from '../client';
import { findSite } from '../config/targets';

/** What the pool commands need from the entry point. */
export interface PoolCommandDeps {
  /** The CLI's connection; the CLI closes it after the command. */
  connect: () => Promise<{ kura: Kura }>;
  loadConfig: () => LoadedConfig;
}

/** Section titles, with the seed's table numbers where it has one. */
const TITLES: Record<TableKey, string> = {
  servers: 'Backup servers (table 420)',
  libraries: 'Tape libraries (table 430)',
  drives: 'Tape drives',
  tapes: 'Tapes (table 440)',
  switches: 'FC switches (table 450)',
  copyDevices: 'Copy devices (table 470)',
};

/** Adds the `pool` command group to the `kura` program. */
export function registerPoolCommands(program: Command, deps: PoolCommandDeps): void {
  const pool = program
    .command('pool')
    .description("a site's resource pool: backup servers, libraries, drives, tapes, switches, copy devices");

  pool
    .command('show')
    .description('print the pool tables: each device with its state and the job and stream holding it')
    .option('--site <name>', 'site of the configuration (default: the first)')
    .option('--json', 'print the tables as JSON')
    .action(async (opts: { site?: string; json?: boolean }, cmd: Command) => {
      const json = opts.json === true || cmd.optsWithGlobals<{ json?: boolean }>().json === true;
      const site = findSite(deps.loadConfig().config, opts.site).name;
      const { kura } = await deps.connect();
      const tables = await kura.pool.tables(site);
      console.log(json ? JSON.stringify(tables, null, 2) : renderTables(tables));
    });

  pool
    .command('mark')
    .description(
      'mark a device available or unavailable; unavailable devices are never granted, their holders keep them',
    )
    .argument('<device>', 'device name, e.g. lib-01-drv-2')
    .argument('<state>', 'available or unavailable')
    .option('--reason <text>', 'why the device is unavailable (shown in `kura pool show`)')
    .option('--site <name>', 'site of the configuration (default: the first)')
    .option('--json', 'print the changed row as JSON')
    .action(
      async (device: string, state: string, opts: { reason?: string; site?: string; json?: boolean }, cmd: Command) => {
        const json = opts.json === true || cmd.optsWithGlobals<{ json?: boolean }>().json === true;
        const parsed = MarkRequestSchema.safeParse({
          device,
          state,
          ...(opts.reason === undefined ? {} : { reason: opts.reason }),
        });
        if (!parsed.success) {
          const issues = parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
          throw new InvalidInputError(
            `cannot mark ${device}: ${issues.map((i) => `${i.path || 'request'}: ${i.message}`).join('; ')}`,
            issues,
          );
        }
        const req = parsed.data;
        const site = findSite(deps.loadConfig().config, opts.site).name;
        const { kura } = await deps.connect();
        const row = await kura.pool.mark(site, req);
        if (json) console.log(JSON.stringify(row, null, 2));
        else
          console.log(
            renderTable(titleOf(row), row.kind === 'tape', row.kind === 'drive' || row.kind === 'tape', [row]),
          );
      },
    );
}

/** Renders every table as seed 004 Figs. 3–6 do: one section per table. */
export function renderTables(tables: PoolTables): string {
  const sections = TABLE_KEYS.map((key) =>
    renderTable(TITLES[key], key === 'tapes', key === 'drives' || key === 'tapes', tables[key]),
  );
  return [`Resource pool of site ${tables.site}`, '', sections.join('\n\n')].join('\n');
}

function renderTable(title: string, withUsage: boolean, withLibrary: boolean, rows: DeviceRow[]): string {
  if (rows.length === 0) return `${title}\n  (none)`;
  const header = [
    'No.',
    'Name',
    'State',
    'Job',
    'Stream',
    ...(withLibrary ? ['Library'] : []),
    ...(withUsage ? ['Used'] : []),
    'Reason',
  ];
  const lines: string[][] = [];
  for (const row of rows) {
    // One line per holder: a server or switch may carry several jobs' streams at once.
    const holders = row.holders.length > 0 ? row.holders : [undefined];
    holders.forEach((h, i) => {
      const first = i === 0;
      lines.push([
        first ? String(row.number) : '',
        first ? row.name : '',
        first ? row.state : '',
        h?.job ?? '-',
        h === undefined ? '-' : String(h.stream),
        ...(withLibrary ? [first ? (row.library ?? '-') : ''] : []),
        ...(withUsage
          ? [first ? `${formatBytes(row.usedBytes ?? 0)} of ${formatBytes(row.capacityBytes ?? 0)}` : '']
          : []),
        first ? (row.reason ?? '') : '',
      ]);
    });
  }
  const widths = header.map((h, c) => Math.max(h.length, ...lines.map((l) => (l[c] ?? '').length)));
  const fmt = (cells: string[]) =>
    '  ' +
    cells
      .map((cell, c) => cell.padEnd(widths[c] ?? 0))
      .join('  ')
      .trimEnd();
  return [title, fmt(header), ...lines.map(fmt)].join('\n');
}

function titleOf(row: DeviceRow): string {
  const key: TableKey = (
    {
      server: 'servers',
      library: 'libraries',
      drive: 'drives',
      tape: 'tapes',
      switch: 'switches',
      'copy-device': 'copyDevices',
    } as const
  )[row.kind];
  return TITLES[key];
}
