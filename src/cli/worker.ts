/** `kura worker`: run Kura's workers for this configuration until Ctrl-C (a production host runs this). */
import type { Command } from 'commander';
import { startKuraWorkers } from '../worker';
import type { CliContext } from './context';

export function registerWorkerCommand(program: Command, ctx: CliContext): void {
  program
    .command('worker')
    .description('run the control worker and the backup-server workers until Ctrl-C')
    .option('--servers <names>', 'only these backup servers (comma-separated); with --servers-only, no control worker')
    .option('--servers-only', 'run only backup-server workers (on a backup server host)')
    .action(async (o: { servers?: string; serversOnly?: boolean }) => {
      const workers = await startKuraWorkers({
        loaded: ctx.config(),
        servers: o.servers?.split(',').map((s) => s.trim()),
        serversOnly: o.serversOnly,
      });
      process.stderr.write(
        `kura: workers running on ${workers.taskQueue} and the backup-server queues; Ctrl-C stops them\n`,
      );
      const stop = () => void workers.shutdown();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await workers.running;
    });
}
