/**
 * `kura drill run|schedule|show` and `kura report` (docs/adr/035): restore drills of a sample of
 * every class into an isolated lab host, their nightly Schedule with the estate report's, what a
 * drill found; and the estate report as one HTML page.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { KuraDrills } from '../api/drills';
import { DrillLog } from '../catalog/drills';
import { Catalog } from '../catalog/store';
import { buildEstateReport } from '../report/build';
import { ClassNameSchema } from '../domain/classes';
import { NotFoundError } from '../domain/errors';
import { HHMM } from '../domain/ladder-config';
import { formatDuration } from '../domain/units';
import { parseWith } from '../domain/validate';
import type { DrillRecord } from '../domain/drill';
import { print, type CliContext } from './context';
import { table } from './table';

const RunOptions = z.object({
  perClass: z.coerce.number().int().min(1).max(16).optional(),
  classes: z.array(ClassNameSchema).min(1).optional(),
});
const ReportOptions = z.object({
  out: z
    .string()
    .max(4096)
    .regex(/\.html?$/i, 'the report is an HTML page: name a file ending in .html'),
});
const ScheduleOptions = z.object({
  at: HHMM.optional(),
  reportAt: HHMM.optional(),
  timezone: z.string().min(1).optional(),
});

function drillTable(rows: DrillRecord[]): string {
  return table(
    ['Class', 'Target', 'Outcome', 'Recovery time', 'Store', 'Reason'],
    rows.map((r) => [
      r.className,
      r.target,
      r.outcome,
      r.rtoMs === null ? '—' : formatDuration(r.rtoMs),
      r.store ?? '—',
      r.errorType === null ? '' : `${r.errorType}: ${r.error ?? ''}`,
    ]),
  );
}

export function registerDrillCommands(program: Command, ctx: CliContext): void {
  const drill = program
    .command('drill')
    .description('restore drills: a sample of every class into an isolated lab host');
  const connectDrills = async () => {
    const { client, kura } = await ctx.connect();
    return new KuraDrills(client, ctx.config(), kura.taskQueue);
  };
  const showDrill = (drillId: string) => {
    const log = new DrillLog(ctx.paths().catalog);
    try {
      return log.list({ drillId });
    } finally {
      log.close();
    }
  };

  drill
    .command('run')
    .description('run a drill now and wait for it; fails when any target did not come back healthy')
    .option('--per-class <n>', 'targets per class (default 1)')
    .option('--class <class...>', 'only these classes (vm, server, client)')
    .action(async (o: { perClass?: string; class?: string[] }) => {
      const opts = parseWith(RunOptions, { perClass: o.perClass, classes: o.class }, 'drill options');
      const handle = await (
        await connectDrills()
      ).run({
        ...(opts.perClass === undefined ? {} : { perClass: opts.perClass }),
        ...(opts.classes === undefined ? {} : { classes: opts.classes }),
      });
      try {
        const r = await handle.result();
        print(ctx, r, () => `${drillTable(r.targets)}\ndrill ${r.drillId}: every target came back healthy`);
      } catch (err) {
        // The failure names the targets; the table beside it shows the whole drill.
        const rows = showDrill(handle.workflowId);
        if (rows.length > 0 && !ctx.json()) process.stderr.write(`${drillTable(rows)}\n`);
        throw err;
      }
    });

  drill
    .command('schedule')
    .description('run drills and write the estate report nightly on Temporal Schedules')
    .option('--at <HH:MM>', 'when the drill runs (default 04:00)')
    .option('--report-at <HH:MM>', 'when the report is written (default 07:00)')
    .option('--timezone <zone>', 'the time zone of both (default UTC)')
    .action(async (o: { at?: string; reportAt?: string; timezone?: string }) => {
      const t = parseWith(ScheduleOptions, o, 'drill schedule options');
      const r = await (
        await connectDrills()
      ).applySchedules({
        ...(t.at === undefined ? {} : { drillAt: t.at }),
        ...(t.reportAt === undefined ? {} : { reportAt: t.reportAt }),
        ...(t.timezone === undefined ? {} : { timezone: t.timezone }),
      });
      print(ctx, r, () =>
        [...r.created.map((id) => `created ${id}`), ...r.updated.map((id) => `updated ${id}`)].join('\n'),
      );
    });

  drill
    .command('show [drill]')
    .description('what a drill found, per target (the newest drill when none is named)')
    .action((id?: string) => {
      const log = new DrillLog(ctx.paths().catalog);
      let rows: DrillRecord[];
      try {
        const drillId = id ?? log.list({ limit: 1 })[0]?.drillId;
        if (drillId === undefined) throw new NotFoundError('no drill in the catalog yet; `kura drill run` runs one');
        rows = log.list({ drillId });
        if (rows.length === 0) throw new NotFoundError(`no drill "${drillId}" in the catalog`);
      } finally {
        log.close();
      }
      print(ctx, rows, () => `drill ${rows[0]!.drillId} at ${rows[0]!.startedAt}\n${drillTable(rows)}`);
    });

  program
    .command('report')
    .description('write the estate report: one self-contained HTML page with SVG plots')
    .option('--out <file>', 'where to write it', 'report.html')
    .action(async (options: { out: string }) => {
      const o = parseWith(ReportOptions, options, 'report options');
      const catalog = new Catalog(ctx.paths().catalog);
      let html: string;
      try {
        html = await buildEstateReport({
          loaded: ctx.config(),
          paths: ctx.paths(),
          catalog,
          at: new Date().toISOString(),
          record: false,
        });
      } finally {
        catalog.close();
      }
      const file = path.resolve(o.out);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, html);
      print(ctx, { file, bytes: Buffer.byteLength(html) }, () => `wrote ${file}`);
    });
}
