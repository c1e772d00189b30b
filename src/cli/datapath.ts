/** `kura datapath`: run the online-backup datapath (NBD server, journal, control API) until Ctrl-C. */
import type { Command } from 'commander';
import { InvalidInputError } from '../domain/errors';
import { startDatapath } from '../datapath/service';
import type { CliContext } from './context';

function port(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidInputError(`${flag} must be a port number from 0 to 65535, not "${text}"`);
  return n;
}

export function registerDatapathCommand(program: Command, ctx: CliContext): void {
  program
    .command('datapath')
    .description('serve the protected volumes over NBD on 127.0.0.1 with the online-backup journal, until Ctrl-C')
    .option('--nbd-port <n>', 'NBD port (default: datapath.nbdPort of kura.yaml)')
    .option('--control-port <n>', 'control API port (default: datapath.controlPort of kura.yaml)')
    .action(async (o: { nbdPort?: string; controlPort?: string }) => {
      const say = (s: string) => process.stderr.write(`${s}\n`);
      const dp = await startDatapath(ctx.config(), ctx.paths(), {
        nbdPort: port(o.nbdPort, '--nbd-port'),
        controlPort: port(o.controlPort, '--control-port'),
        log: say,
      });
      say(
        `kura: datapath serving ${[...dp.volumes.keys()].join(', ')} on nbd://127.0.0.1:${dp.nbdPort}/<array>/<volume>${dp.nbdTls === 'off' ? '' : ` (TLS ${dp.nbdTls})`}; control API ${dp.controlUrl} (token in ${dp.tokenFile})${dp.metricsUrl ? `; metrics ${dp.metricsUrl}` : ''}; Ctrl-C stops it`,
      );
      // A line a supervisor (or a test) can wait for.
      process.stdout.write(
        `${JSON.stringify({ ready: true, nbdPort: dp.nbdPort, controlPort: dp.controlPort, pid: process.pid })}\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await dp.close();
    });
}
