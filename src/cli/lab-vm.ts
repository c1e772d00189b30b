/**
 * `kura lab vm-fault …`: give a lab VM a software fault of a given depth — cured by an APL
 * restart, an MW restart, an OS reboot, the latest data image, only the startup-guarantee image,
 * or nothing — or clear it, and optionally report it to the VM's guardian at once.
 */
import type { Command } from 'commander';
import { InvalidInputError } from '../domain/errors';
import { CURE_DEPTHS, CureDepthSchema } from '../domain/ladder';
import { LabState } from '../lab/state';
import { siteOfVm } from '../client';
import { print, type CliContext } from './context';

/** Adds `vm-fault` to the `lab` command group (registered before this). */
export function registerLabVmCommands(program: Command, ctx: CliContext): void {
  const lab = program.commands.find((c) => c.name() === 'lab') ?? program.command('lab');
  lab
    .command('vm-fault <vm>')
    .description('give a lab VM a fault that only a rung of this depth (or wider) cures, or clear it')
    .option('--cured-by <depth>', CURE_DEPTHS.join(' | '))
    .option('--clear', 'remove the fault instead')
    .option('--report', "also report the failure to the VM's guardian now (otherwise its health polling finds it)")
    .option('--site <name>', 'the site (default: the one that has the VM)')
    .action(async (vm: string, o: { curedBy?: string; clear?: boolean; report?: boolean; site?: string }) => {
      if (o.clear === true && o.curedBy !== undefined)
        throw new InvalidInputError('give either --cured-by or --clear, not both');
      if (o.clear !== true && o.curedBy === undefined)
        throw new InvalidInputError(`--cured-by is required: one of ${CURE_DEPTHS.join(', ')} (or --clear)`);
      const loaded = ctx.config();
      const site = siteOfVm(loaded, vm, o.site);
      let depth: (typeof CURE_DEPTHS)[number] | undefined;
      if (o.curedBy !== undefined) {
        const parsed = CureDepthSchema.safeParse(o.curedBy);
        if (!parsed.success)
          throw new InvalidInputError(
            `--cured-by "${o.curedBy}" is not a cure depth; choose one of ${CURE_DEPTHS.join(', ')}`,
          );
        depth = parsed.data;
      }
      const state = new LabState(ctx.paths().labState);
      try {
        if (depth === undefined) state.clearVmFault(site.name, vm);
        else state.setVmFault(site.name, vm, depth);
        state.recordEvent(vm, depth === undefined ? 'vm-fault-clear' : 'vm-fault', {
          site: site.name,
          ...(depth === undefined ? {} : { curedBy: depth }),
        });
      } finally {
        state.close();
      }
      if (o.report === true && depth !== undefined) {
        await (
          await ctx.connect()
        ).kura.vms.reportFailure(vm, `lab fault cured by ${depth}`, {
          site: site.name,
        });
      }
      print(
        ctx,
        { ok: true, vm, site: site.name, curedBy: depth ?? null, reported: o.report === true && depth !== undefined },
        () =>
          depth === undefined
            ? `cleared the fault of ${vm}`
            : `${vm} now has a fault cured by ${depth}${o.report ? '; reported to its guardian' : ''}`,
      );
    });
}
