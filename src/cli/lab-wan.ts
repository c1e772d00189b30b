/**
 * `kura lab wan …`: the lab WAN between a main site and its remote-copy site (docs/adr/028) — show
 * its link and faults, set delay, reorder and drop, partition it for a while, clear the faults.
 * The faults file is re-read by running shippers, so a change takes effect under a running copy.
 */
import type { Command } from 'commander';
import { configPath, loadConfig } from '../config/load';
import { kuraPaths } from '../config/paths';
import { InvalidInputError } from '../domain/errors';
import type { WanFaults } from '../domain/remote';
import { formatBytes, formatDuration, parseDuration } from '../domain/units';
import { readWanFaults, wanFaultsFile, writeWanFaults } from '../lab/wan';

interface GlobalOptions {
  config?: string;
  json?: boolean;
}

/** Adds `wan` to the `lab` command group (registered before it). */
export function registerLabWanCommands(program: Command): void {
  const lab = program.commands.find((c) => c.name() === 'lab') ?? program.command('lab');
  const wan = lab.command('wan').description('the lab WAN of remote copy: its link, and faults injected into it');

  wan
    .command('show')
    .description('the link (bandwidth, latency from kura.yaml) and the faults in force')
    .action((_o: unknown, cmd: Command) => {
      const { g, file, settings } = context(cmd);
      output(g, { settings, faults: readWanFaults(file) }, file);
    });

  wan
    .command('set')
    .description('set faults (kept: those not named); a running partition stays')
    .option('--delay <duration>', 'extra delay of every message, e.g. 200ms')
    .option('--reorder <p>', 'chance (0..1) a message is held back so later ones overtake it')
    .option('--reorder-window <duration>', 'how long a reordered message is held back at most (default 50ms)')
    .option('--drop <p>', 'chance (0..1) a message is lost')
    .option('--seed <n>', 'seed of the fault dice, to repeat a run')
    .action(
      (o: { delay?: string; reorder?: string; reorderWindow?: string; drop?: string; seed?: string }, cmd: Command) => {
        const { g, file } = context(cmd);
        const next: Partial<WanFaults> = { ...readWanFaults(file) };
        if (o.delay !== undefined) next.delayMs = duration(o.delay, '--delay');
        if (o.reorder !== undefined) next.reorder = chance(o.reorder, '--reorder');
        if (o.reorderWindow !== undefined) next.reorderMs = duration(o.reorderWindow, '--reorder-window');
        if (o.drop !== undefined) next.drop = chance(o.drop, '--drop');
        if (o.seed !== undefined) next.seed = Number(o.seed);
        output(g, { faults: writeWanFaults(file, next) }, file);
      },
    );

  wan
    .command('partition <duration>')
    .description('nothing gets through, either way, for this long (e.g. 10s)')
    .action((d: string, _o: unknown, cmd: Command) => {
      const { g, file } = context(cmd);
      const faults = writeWanFaults(file, {
        ...readWanFaults(file),
        partitionUntil: Date.now() + duration(d, 'the duration'),
      });
      output(g, { faults }, file);
    });

  wan
    .command('clear')
    .description('no faults: the link as kura.yaml describes it')
    .action((_o: unknown, cmd: Command) => {
      const { g, file } = context(cmd);
      output(g, { faults: writeWanFaults(file, {}) }, file);
    });
}

function context(cmd: Command) {
  const g = cmd.optsWithGlobals<GlobalOptions>();
  const loaded = loadConfig(configPath(g.config));
  return { g, file: wanFaultsFile(kuraPaths(loaded).lab), settings: loaded.config.remoteCopy.wan };
}

function output(
  g: GlobalOptions,
  value: { settings?: { bandwidth: number; latency: number }; faults: WanFaults },
  file: string,
): void {
  if (g.json) {
    process.stdout.write(`${JSON.stringify({ ok: true, file, ...value }, null, 2)}\n`);
    return;
  }
  const f = value.faults;
  const lines: string[] = [];
  if (value.settings)
    lines.push(
      `link: ${value.settings.bandwidth ? `${formatBytes(value.settings.bandwidth)}/s` : 'unlimited bandwidth'}, latency ${formatDuration(value.settings.latency)}`,
    );
  const left = f.partitionUntil - Date.now();
  lines.push(
    `faults: delay ${formatDuration(f.delayMs)}, reorder ${f.reorder} (within ${formatDuration(f.reorderMs)}), drop ${f.drop}, seed ${f.seed}`,
    left > 0 ? `partitioned for another ${formatDuration(left)}` : 'not partitioned',
  );
  process.stdout.write(`${lines.join('\n')}\n`);
}

function duration(text: string, what: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new InvalidInputError(`${what} must be a duration such as 200ms or 10s, not "${text}"`);
  return ms;
}

function chance(text: string, what: string): number {
  const p = Number(text);
  if (!Number.isFinite(p) || p < 0 || p > 1)
    throw new InvalidInputError(`${what} must be a chance between 0 and 1, such as 0.2, not "${text}"`);
  return p;
}
