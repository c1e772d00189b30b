/**
 * Runs the EHR team's upgrade of one VM against a running Kura (`npm start` in another terminal):
 * registers the team's namespace when it is missing, runs the team's worker in it, upgrades the VM
 * and prints what came of it.
 *
 *   npx tsx examples/ehr-upgrade/main.ts vm-001 [version] [--break mw]
 */
import { Client, Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { configPath, loadConfig } from '../../src/config/load';
import { CURE_DEPTHS, type CureDepth } from '../../src/domain/ladder';
import { temporalConnectionOptions } from '../../src/stack/connection';
import { kuraDataConverter } from '../../src/codec/data-converter';
import { createUpgradeActivities } from './activities';
import type { ehrUpgrade } from './workflows';

/** The EHR team's namespace and task queue. */
const NAMESPACE = process.env.EHR_NAMESPACE ?? 'ehr';
const TASK_QUEUE = 'ehr-upgrades';

async function main(argv: string[]): Promise<void> {
  const [vm, version = '2.0'] = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--break');
  const broken = argv.includes('--break') ? argv[argv.indexOf('--break') + 1] : undefined;
  if (!vm) throw new Error('usage: main.ts <vm> [version] [--break apl|mw|os|data|guarantee|none]');
  if (broken !== undefined && !CURE_DEPTHS.includes(broken as CureDepth))
    throw new Error(`--break takes one of ${CURE_DEPTHS.join(', ')}`);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const loaded = loadConfig(configPath());
  const { address } = temporalConnectionOptions(loaded);

  // Kura's key file encrypts the team's calls to Kura as it encrypts Kura's own payloads.
  const dataConverter = kuraDataConverter(loaded);
  const connection = await Connection.connect({ address });
  await ensureNamespace(connection, NAMESPACE);
  const client = new Client({ connection, namespace: NAMESPACE, dataConverter });
  const native = await NativeConnection.connect({ address });
  const worker = await Worker.create({
    connection: native,
    dataConverter,
    namespace: NAMESPACE,
    taskQueue: TASK_QUEUE,
    workflowsPath: require.resolve('./workflows'),
    activities: createUpgradeActivities({
      loaded,
      breaks: broken ? { [version]: broken as CureDepth } : {},
    }),
  });
  const result = await worker.runUntil(
    client.workflow.execute<typeof ehrUpgrade>('ehrUpgrade', {
      taskQueue: TASK_QUEUE,
      workflowId: `ehr-upgrade/${vm}/${Date.now()}`,
      args: [{ vm, version }],
    }),
  );
  console.log(JSON.stringify(result, null, 2));
  await native.close();
  await connection.close();
}

/** Registers the namespace unless it exists, and waits until the server serves it. */
async function ensureNamespace(connection: Connection, namespace: string): Promise<void> {
  const exists = () =>
    connection.workflowService.describeNamespace({ namespace }).then(
      () => true,
      () => false,
    );
  if (await exists()) return;
  await connection.workflowService
    .registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') })
    .catch(() => undefined); // registered meanwhile by another run
  while (!(await exists())) await new Promise((r) => setTimeout(r, 500));
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
