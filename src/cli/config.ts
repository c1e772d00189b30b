/** `kura config check`: validate kura.yaml and summarise what it describes. */
import type { Command } from 'commander';
import { print, type CliContext } from './context';

export function registerConfigCommands(program: Command, ctx: CliContext): void {
  program
    .command('config')
    .description('the configuration file')
    .command('check')
    .description('validate the configuration, reporting every problem with its path')
    .action(() => {
      const loaded = ctx.config();
      const sites = loaded.config.sites.map((s) => ({
        site: s.name,
        vms: s.vms.length,
        volumes: s.arrays.reduce((n, a) => n + a.volumes.length, 0),
        servers: s.servers.length,
        libraries: s.libraries.length,
        drives: s.libraries.reduce((n, l) => n + l.drives.length, 0),
        cartridges: s.libraries.reduce((n, l) => n + l.cartridges.length, 0),
        switches: s.switches.length,
        policies: s.policies.map((p) => p.name),
      }));
      print(ctx, { ok: true, file: loaded.file, sites }, () =>
        [
          `${loaded.file} is valid`,
          ...sites.map(
            (s) =>
              `  site ${s.site}: ${s.vms} VMs, ${s.volumes} volumes, ${s.servers} backup servers, ${s.libraries} libraries (${s.drives} drives, ${s.cartridges} cartridges), ${s.switches} FC switches, policies: ${s.policies.join(', ') || '(none)'}`,
          ),
        ].join('\n'),
      );
    });
}
