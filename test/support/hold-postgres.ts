/**
 * A process that holds a PostgreSQL session in backup mode through the `postgres` hook and never
 * releases it, so a test can kill it mid-hold: argv[2] is the hook's spec as JSON; it prints
 * `entered <backend pid>` once PostgreSQL is in backup mode.
 */
import { PostgresHookSchema } from '../../src/domain/inventory';
import { PostgresHook } from '../../src/drivers/postgres-hook';

const hook = new PostgresHook(PostgresHookSchema.parse(JSON.parse(process.argv[2] ?? '{}')));
hook
  .holdBackupMode('held by a process to be killed', {
    entered: (info) => {
      process.stdout.write(`entered ${info.pid}\n`);
      return Promise.resolve();
    },
    released: () => Promise.resolve(false),
    heartbeat: () => undefined,
  })
  .catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
