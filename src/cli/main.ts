/**
 * The `kura` command line: every command group registers itself; failures are printed with their
 * type and an actionable message (or as JSON with --json) and set the exit code.
 */
import { Command } from 'commander';
import { cliContext, type CliContext } from './context';
import { reportError } from './errors';
import { registerBackupCommands } from './backup';
import { registerRestoreCommands } from './restore';
import { registerCatalogCommands } from './catalog';
import { registerScheduleCommands } from './schedule';
import { registerConfigCommands } from './config';
import { registerStartCommand } from './start';
import { registerWorkerCommand } from './worker';
import { registerLabCommands } from './lab';
import { registerPoolCommands } from './pool';
import { registerDatapathCommand } from './datapath';
import { registerLadderCommands } from './ladder';
import { registerLabVmCommands } from './lab-vm';
import { registerStatusCommand } from './status';
import { registerSanCommands } from './san';
import { registerPlanCommands } from './plan';
import { registerKeysCommands } from './keys';
import { registerCodecServerCommand } from './codec-server';
import { registerRemoteCommands } from './remote';
import { registerLabWanCommands } from './lab-wan';
import { registerStoreCommands } from './store';
import { registerEventsCommand } from './events';
import { registerDrillCommands } from './drill';

/** Builds the program and the context its commands share (exported so tests can walk every command and option). */
export function buildProgram(): { program: Command; ctx: CliContext } {
  const program = new Command('kura')
    .description('Kura: durable backup and recovery for virtualized and SAN estates, on Temporal')
    .option('-c, --config <file>', 'configuration file (default: $KURA_CONFIG or ./kura.yaml)')
    .option('--json', 'print machine-readable JSON only')
    .showHelpAfterError()
    .configureOutput({ outputError: (s, write) => write(s) });
  const ctx = cliContext(program);
  registerStartCommand(program, ctx);
  registerBackupCommands(program, ctx);
  registerRestoreCommands(program, ctx);
  registerCatalogCommands(program, ctx);
  registerPoolCommands(program, { connect: () => ctx.connect(), loadConfig: () => ctx.config() });
  registerScheduleCommands(program, ctx);
  registerLabCommands(program);
  registerConfigCommands(program, ctx);
  registerWorkerCommand(program, ctx);
  registerDatapathCommand(program, ctx);
  registerLadderCommands(program, ctx);
  registerLabVmCommands(program, ctx);
  registerStatusCommand(program, ctx);
  registerSanCommands(program, ctx);
  registerPlanCommands(program, ctx);
  registerKeysCommands(program, ctx);
  registerCodecServerCommand(program, ctx);
  registerRemoteCommands(program, ctx);
  registerLabWanCommands(program);
  registerStoreCommands(program, ctx);
  registerEventsCommand(program, ctx);
  registerDrillCommands(program, ctx);
  return { program, ctx };
}

/** Runs the CLI with these arguments and sets the process's exit code. */
export async function run(argv: string[]): Promise<void> {
  process.exitCode = await main(argv);
}

async function main(argv: string[]): Promise<number> {
  const { program, ctx } = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return reportError(err, argv.includes('--json'));
  } finally {
    await ctx.close();
  }
}

if (require.main === module) void run(process.argv);
