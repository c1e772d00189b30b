/**
 * `kura status`: the operator's one page — what runs now with its progress, ladders waiting for a
 * person, devices out of service, RPO breaches and the last night's results — once, refreshed with
 * `--watch`, or as JSON for scripts (one document per refresh with `--watch`).
 */
import type { Command } from 'commander';
import { InvalidInputError } from '../domain/errors';
import { describeHealthWait } from './ladder';
import {
  STATUS_SECTIONS,
  type JobProgress,
  type StatusPage,
  type StatusSection,
  type RunningJob,
} from '../domain/status';
import { formatBytes, formatDuration, parseDuration } from '../domain/units';
import type { CliContext } from './context';
import { table } from './table';

const DEFAULT_WATCH_MS = 2_000;

/** Adds `kura status` to the program. */
export function registerStatusCommand(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description(
      'one page: what runs now (with progress), ladders waiting for a person, devices out of service, RPO breaches, the last night',
    )
    .option('--since <duration>', 'the "last night" window: this long before now', '24h')
    .option('--watch [every]', `refresh until Ctrl-C, every this long (default ${DEFAULT_WATCH_MS / 1000}s)`)
    .action(async (o: { since: string; watch?: string | boolean }) => {
      const sinceMs = durationOption('--since', o.since);
      const everyMs = o.watch === undefined || o.watch === false ? undefined : watchEvery(o.watch);
      const { kura } = await ctx.connect();
      const read = () => kura.status.page({ since: new Date(Date.now() - sinceMs).toISOString() });
      if (everyMs === undefined) {
        const page = await read();
        write(ctx, page, false);
        // A page with a section missing is not the whole truth: scripts and monitors must see that.
        if (page.problems.length > 0) process.exitCode = 1;
        return;
      }
      await watch(ctx, read, everyMs);
    });
}

function durationOption(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0)
    throw new InvalidInputError(`${flag} must be a duration such as 12h or 30m, not "${text}"`);
  return ms;
}

function watchEvery(value: string | true): number {
  return value === true ? DEFAULT_WATCH_MS : durationOption('--watch', value);
}

/** Redraws the page every `everyMs` until SIGINT or SIGTERM; a failed read is shown and tried again. */
async function watch(ctx: CliContext, read: () => Promise<StatusPage>, everyMs: number): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    while (!stop.signal.aborted) {
      try {
        write(ctx, await read(), true);
      } catch (err) {
        process.stderr.write(`kura status: ${err instanceof Error ? err.message : String(err)}; trying again\n`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, everyMs);
        stop.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function write(ctx: CliContext, page: StatusPage, watching: boolean): void {
  if (ctx.json()) {
    // One document per line while watching, so a script can read the stream line by line.
    process.stdout.write(`${watching ? JSON.stringify(page) : JSON.stringify(page, null, 2)}\n`);
    return;
  }
  const clear = watching && process.stdout.isTTY ? '\x1b[H\x1b[2J' : watching ? '\n' : '';
  process.stdout.write(`${clear}${renderStatus(page)}\n`);
}

/** The page as text, its sections in the order of STATUS_SECTIONS; a section the page lacks is left out. */
export function renderStatus(page: StatusPage): string {
  const nowMs = Date.parse(page.at);
  const out = [
    `Kura status at ${clock(page.at)} — namespace ${page.namespace}, queue ${page.taskQueue}, sites ${page.sites.join(', ')}`,
  ];
  for (const section of STATUS_SECTIONS) {
    const text = RENDERERS[section](page, nowMs);
    if (text !== undefined) out.push('', text);
  }
  if (page.problems.length > 0) {
    out.push('', `Not shown (${page.problems.length})`);
    for (const p of page.problems) out.push(`  ${p.section}: ${p.message}`);
  }
  return out.join('\n');
}

/** One renderer per section: adding a section to the page is adding its key and its renderer. */
const RENDERERS: Record<StatusSection, (page: StatusPage, nowMs: number) => string | undefined> = {
  running: (page) => {
    const jobs = page.running;
    if (!jobs) return undefined;
    if (jobs.length === 0) return 'Running now: nothing';
    return [
      `Running now (${jobs.length})`,
      indent(
        table(
          ['kind', 'target', 'site', 'started', 'progress'],
          jobs.map((j) => [j.kind, j.target ?? '', j.site ?? '', clock(j.startedAt), progressText(j)]),
        ),
      ),
    ].join('\n');
  },
  waitingForPerson: (page) => {
    const ladders = page.waitingForPerson;
    if (!ladders) return undefined;
    if (ladders.length === 0) return 'Waiting for a person: none';
    return [
      `Waiting for a person (${ladders.length})`,
      ...ladders.flatMap((l) => [
        `  ${l.vm} (${l.site}) since ${clock(l.since)}: ${l.reason}; tried ${l.tried.join(', ') || 'nothing'}`,
        `    ${l.resolve}`,
        `    ${l.rebuild}`,
      ]),
    ].join('\n');
  },
  devicesOut: (page) => {
    const devices = page.devicesOut;
    if (!devices) return undefined;
    if (devices.length === 0) return 'Devices out of service: none';
    return [
      `Devices out of service (${devices.length}) — \`kura pool mark <device> available\` brings one back`,
      indent(
        table(
          ['site', 'kind', 'device', 'reason'],
          devices.map((d) => [d.site, d.kind, d.name, d.reason]),
        ),
      ),
    ].join('\n');
  },
  rpo: (page) => {
    const rpo = page.rpo;
    if (!rpo) return undefined;
    if (rpo.breaches.length === 0) return `RPO breaches: none (${rpo.checked} targets checked)`;
    return [
      `RPO breaches (${rpo.breaches.length} of ${rpo.checked} targets)`,
      indent(
        table(
          ['site', 'policy', 'target', 'last good backup', 'age', 'rpo'],
          rpo.breaches.map((b) => [
            b.site,
            b.policy,
            b.target,
            b.lastBackupId ?? 'none',
            b.ageMs === null ? 'never' : formatDuration(b.ageMs),
            formatDuration(b.rpoMs),
          ]),
        ),
      ),
    ].join('\n');
  },
  lastNight: (page) => {
    const n = page.lastNight;
    if (!n) return undefined;
    const lines = [`Last night (since ${clock(n.since)})`];
    lines.push(
      n.byClass.length === 0
        ? '  backups: none'
        : indent(
            table(
              ['backups', 'of', 'complete', 'failed', 'running', 'bytes'],
              n.byClass.map((c) => [
                c.method,
                c.targetClass === 'vm' ? 'VMs' : 'volumes',
                String(c.complete),
                String(c.failed),
                String(c.running),
                formatBytes(c.bytes),
              ]),
            ),
          ),
    );
    for (const c of n.byClass)
      for (const f of c.failures) lines.push(`  failed: ${f.backupId}: ${f.error ?? 'no reason recorded'}`);
    if (n.fleetRuns.length > 0) {
      lines.push(
        '',
        indent(
          table(
            ['fleet run', 'status', 'succeeded', 'failed', 'targets', 'started'],
            n.fleetRuns.map((f) => [
              f.workflowId,
              f.status,
              count(f.succeeded),
              count(f.failed),
              count(f.targets),
              clock(f.startedAt),
            ]),
          ),
        ),
      );
    }
    if (n.closedJobs.length > 0) {
      lines.push('', '  jobs ended:');
      for (const j of n.closedJobs)
        lines.push(
          `    ${j.kind}: ${Object.entries(j.byStatus)
            .map(([s, k]) => `${k} ${s}`)
            .join(', ')}`,
        );
    }
    return lines.join('\n');
  },
};

function progressText(j: RunningJob): string {
  if (j.healthWait) return `${j.progress?.phase ?? ''}: ${describeHealthWait(j.healthWait)}`;
  if (!j.progress) return j.problem ?? '…';
  return `${bar(j.progress)}${j.progress.phase}: ${j.progress.activity}`;
}

function bar(p: JobProgress): string {
  if (p.fraction === null) return '';
  const width = 10;
  const filled = Math.round(p.fraction * width);
  const amount =
    p.unit === 'bytes' && p.done !== undefined && p.total !== undefined
      ? ` ${formatBytes(p.done)}/${formatBytes(p.total)}`
      : p.done !== undefined && p.total !== undefined
        ? ` ${p.done}/${p.total}`
        : '';
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.floor(p.fraction * 100)}%${amount}  `;
}

function count(n: number | null): string {
  return n === null ? '?' : String(n);
}

/** `2026-11-29 18:40:12 UTC`. */
function clock(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}
