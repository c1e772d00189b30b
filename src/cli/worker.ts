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
    .option('--sites <names>', "only these sites' queues of remote copy (comma-separated)")
    .action(async (o: { servers?: string; serversOnly?: boolean; sites?: string }) => {
      // A prebuilt workflow bundle (KURA_WORKFLOW_BUNDLE, as for `npm run worker`) saves the bundling time.
      const bundle = process.env.KURA_WORKFLOW_BUNDLE;
      const workers = await startKuraWorkers({
        loaded: ctx.config(),
        workflowBundle: bundle ? { codePath: bundle } : undefined,
        servers: o.servers?.split(',').map((s) => s.trim()),
        serversOnly: o.serversOnly,
        sites: o.sites?.split(',').map((s) => s.trim()),
        // This command takes the signals itself, so the workers stop in order and it says so.
        hostHandlesSignals: true,
      });
      const stop = (signal: NodeJS.Signals) => {
        process.stderr.write(
          `kura: ${signal} received: stopping the workers (running activities finish or are cancelled)\n`,
        );
        void workers.shutdown();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // Said only once the handlers are in place, so a signal sent on seeing it is taken.
      if (workers.metricsUrl) process.stderr.write(`kura: metrics on ${workers.metricsUrl}\n`);
      process.stderr.write(
        `kura: workers running on ${workers.taskQueue} and the backup-server queues; Ctrl-C stops them\n`,
      );
      await workers.running;
    });
}
