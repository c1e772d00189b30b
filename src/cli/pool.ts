/**
 * `kura pool …`: show a site's resource pool tables (seed 004 Figs. 3–6) and mark devices
 * available or unavailable.
 */
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import type { Command } from 'commander';
import type { LoadedConfig } from '../config/load';
import { ErrorType, InvalidInputError, KuraError, NotFoundError, formatPath } from '../domain/errors';
import { MarkRequestSchema, type DeviceRow, type PoolTables } from '../domain/pool';
import { formatBytes } from '../domain/units';
import { markDeviceSignal, tablesQuery } from '../messages';
// eslint-disable-next-line @typescript-eslint/no-restricted-imports -- moves to src/api
import { poolWorkflowId } from '../activities/pool';
import { TABLE_KEYS, findDevice, type TableKey } from '../domain/pool-tables';

/** What the pool commands need from the entry point. */
export interface PoolCommandDeps {
  /** The CLI's connection; the CLI closes it after the command. */
  connect: () => Promise<{ client: Client }>;
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

/** How long `pool mark` waits to read back the changed row. */
const READ_BACK_MS = 5000;

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
      const site = siteName(deps.loadConfig(), opts.site);
      const tables = await withClient(deps, (client) => readTables(client, site));
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
        const site = siteName(deps.loadConfig(), opts.site);
        const row = await withClient(deps, async (client) => {
          const before = await readTables(client, site);
          if (!findDevice(before, req.device)) {
            throw new NotFoundError(
              `no device ${req.device} in the pool of site ${site}; valid names are ${validNames(before)}`,
              { device: req.device, site },
            );
          }
          const handle = client.workflow.getHandle(poolWorkflowId(site));
          await handle.signal(markDeviceSignal, req);
          return readBack(client, site, req.device, req.state);
        });
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

function siteName(loaded: LoadedConfig, wanted: string | undefined): string {
  const sites = loaded.config.sites.map((s) => s.name);
  if (wanted === undefined) {
    const first = sites[0];
    if (first === undefined) throw new NotFoundError(`${loaded.file} defines no site`);
    return first;
  }
  if (!sites.includes(wanted))
    throw new NotFoundError(`no site ${wanted} in ${loaded.file}; known sites: ${sites.join(', ')}`, { site: wanted });
  return wanted;
}

async function withClient<T>(deps: PoolCommandDeps, use: (client: Client) => Promise<T>): Promise<T> {
  return use((await deps.connect()).client);
}

/** The running pool's tables; a missing pool or a silent worker becomes an error that says what to start. */
async function readTables(client: Client, site: string): Promise<PoolTables> {
  try {
    return await client.workflow.getHandle(poolWorkflowId(site)).query(tablesQuery);
  } catch (err) {
    if (err instanceof KuraError) throw err;
    if (err instanceof WorkflowNotFoundError) {
      throw new NotFoundError(
        `no resource pool is running for site ${site}; start the worker (\`npm run worker\`), which starts one pool per site`,
        { site },
      );
    }
    throw new KuraError(
      ErrorType.Unavailable,
      `the resource pool of site ${site} did not answer (${err instanceof Error ? err.message : String(err)}); is a worker running on the control task queue?`,
      { cause: err },
    );
  }
}

/**
 * A signal is applied when the pool's next workflow task runs, so the row is read until it shows
 * the new state (or the time is up, and the last reading is shown).
 */
async function readBack(
  client: Client,
  site: string,
  device: string,
  state: 'available' | 'unavailable',
): Promise<DeviceRow> {
  const deadline = Date.now() + READ_BACK_MS;
  for (;;) {
    const row = findDevice(await readTables(client, site), device);
    if (!row)
      throw new NotFoundError(`device ${device} left the pool of site ${site} while it was being marked`, {
        device,
        site,
      });
    const applied = state === 'unavailable' ? row.state === 'unavailable' : row.state !== 'unavailable';
    if (applied || Date.now() > deadline) return row;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function validNames(tables: PoolTables): string {
  const kinds: [string, DeviceRow[]][] = [
    ['servers', tables.servers],
    ['libraries', tables.libraries],
    ['drives', tables.drives],
    ['tapes', tables.tapes],
    ['switches', tables.switches],
    ['copy devices', tables.copyDevices],
  ];
  return kinds
    .filter(([, rows]) => rows.length > 0)
    .map(([kind, rows]) => `${kind}: ${rows.map((r) => r.name).join(', ')}`)
    .join('; ');
}
