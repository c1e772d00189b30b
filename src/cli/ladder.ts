/**
 * `kura vm …` and `kura ladder …`: ask a VM's guardian for a data backup, report a failure, show
 * a VM's recovery ladder rung by rung, and give a ladder waiting for a person their decision —
 * resolved by hand, or rebuilt on a substitute host from the VM's two images.
 */
import type { Command } from 'commander';
import { healthWaitOf, type HealthWait, type LadderView } from '../domain/ladder';
import { formatBytes, formatDuration } from '../domain/units';
import { print, uiLink, type CliContext } from './context';
import { table } from './table';

/** Adds the `vm` and `ladder` command groups to the `kura` program. */
export function registerLadderCommands(program: Command, ctx: CliContext): void {
  const vms = async () => (await ctx.connect()).kura.vms;

  const vm = program.command('vm').description("a VM's guardian: data-volume images and failure reports");
  vm.command('backup-data <vm>')
    .description('image the data volume (only) now, verify it by checksum, and keep it among the last K')
    .option('--site <name>', 'the site (default: the one that has the VM)')
    .action(async (name: string, o: { site?: string }) => {
      const image = await (await vms()).backupData(name, { site: o.site });
      print(
        ctx,
        { ok: true, image },
        () =>
          `kept ${image.imageId}: ${formatBytes(image.sizeBytes)} of ${name}'s data volume, sha256 ${image.sha256}\n  ${image.file}`,
      );
    });
  vm.command('report-failure <vm>')
    .description("report a failure of the VM's software: its guardian runs the recovery ladder")
    .requiredOption('--reason <text>', 'what failed')
    .option('--site <name>', 'the site (default: the one that has the VM)')
    .action(async (name: string, o: { reason: string; site?: string }) => {
      await (await vms()).reportFailure(name, o.reason, { site: o.site });
      print(
        ctx,
        { ok: true, vm: name },
        () => `reported to the guardian of ${name}; follow it with \`kura ladder show ${name}\``,
      );
    });

  const ladder = program
    .command('ladder')
    .description("a VM's escalating restart ladder: APL → MW → OS → data swap → startup image → a person");
  ladder
    .command('show <vm>')
    .description("the VM's current (or last) ladder: each rung with its attempts, times and outcomes")
    .option('--site <name>', 'the site (default: the one that has the VM)')
    .action(async (name: string, o: { site?: string }) => {
      const view = await (await vms()).ladder(name, { site: o.site });
      const now = Date.now();
      const healthWait = healthWaitOf(view, now);
      print(ctx, healthWait ? { ...view, healthWait } : view, () => renderLadder(view, now));
    });
  ladder
    .command('resolve <vm>')
    .description('tell a ladder waiting for a person that the VM was fixed by hand')
    .requiredOption('--note <text>', 'what was done')
    .option('--site <name>', 'the site (default: the one that has the VM)')
    .action(async (name: string, o: { note: string; site?: string }) => {
      const view = await (await vms()).resolve(name, o.note, { site: o.site });
      print(ctx, view, () => `${view.workflowId}: ${view.status} — ${view.note ?? ''}`);
    });
  ladder
    .command('rebuild <vm>')
    .description(
      'recreate the VM on a substitute host from its software image and latest data image, then check its health',
    )
    .requiredOption('--host <name>', 'the substitute host')
    .option('--site <name>', 'the site (default: the one that has the VM)')
    .action(async (name: string, o: { host: string; site?: string }) => {
      const view = await (await vms()).rebuild(name, o.host, { site: o.site });
      print(
        ctx,
        view,
        () => `${view.workflowId}: ${view.status}${view.note ? ` — ${view.note}` : ''}\n${renderLadder(view)}`,
      );
      if (view.status !== 'rebuilt') process.exitCode = 1;
    });
}

/** The ladder as a table: one line per attempt, rungs in order; a health wait in progress says how long it has left. */
export function renderLadder(v: LadderView, now = Date.now()): string {
  const rows: string[][] = [];
  for (const r of v.rungs) {
    if (r.attempts.length === 0) {
      rows.push([r.rung, r.status, '', '', '', '', r.detail ?? '']);
      continue;
    }
    for (const a of r.attempts) {
      rows.push([
        a.attempt === 1 ? r.rung : '',
        a.attempt === 1 ? r.status : '',
        String(a.attempt),
        a.startedAt.slice(11, 23),
        a.endedAt ? `${((Date.parse(a.endedAt) - Date.parse(a.startedAt)) / 1000).toFixed(1)} s` : '…',
        a.outcome,
        a.detail ?? '',
      ]);
    }
  }
  return [
    `${v.workflowId} — ${v.vm} (${v.site}): ${v.status}${v.currentRung ? ` at ${v.currentRung}` : ''}`,
    `  reason: ${v.reason}; started ${v.startedAt}${v.endedAt ? `, ended ${v.endedAt}` : ''}${v.note ? `; ${v.note}` : ''}`,
    '',
    table(['rung', 'status', '#', 'started', 'took', 'outcome', 'detail'], rows),
    ...waitLine(healthWaitOf(v, now)),
    '',
    `in the Temporal UI: ${uiLink(v.workflowId)}`,
  ].join('\n');
}

/** What a rung in progress waits for: how long it has waited for health and the most it will wait still. */
export function describeHealthWait(w: HealthWait): string {
  const early =
    w.escalateAfter > 0
      ? ` (less once ${w.escalateAfter} health checks in a row find it failing)`
      : ' (no early escalation)';
  return `${w.rung} (attempt ${w.attempt}) has waited ${formatDuration(w.waitedMs)} for health; it waits at most ${formatDuration(w.remainingMs)} more${early}`;
}

function waitLine(w: HealthWait | undefined): string[] {
  return w ? ['', describeHealthWait(w)] : [];
}
