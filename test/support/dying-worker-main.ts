/**
 * The entry of the dying worker (dying-worker.ts): Kura's workers, with an activity interceptor that
 * SIGKILLs the process right after the `count`-th completion of one activity type ($DYING_WORKER_AFTER,
 * `type:count`), before that completion is reported. Kept apart from the helper so that the child
 * process does not load vitest.
 */
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { configPath, loadConfig } from '../../src/config/load';
import { startKuraWorkers } from '../../src/worker';

/** Which completion kills the worker: the `count`-th of activity type `activity` (local or not). */
export interface DeathPoint {
  activity: string;
  count: number;
}

/** Kills the process once the `count`-th completion of `activity` has returned, before it is reported. */
function dieAfter(death: DeathPoint): ActivityInterceptorsFactory {
  let seen = 0;
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const result = await next(input);
        if (ctx.info.activityType === death.activity && ++seen === death.count) {
          console.log(`dying after ${death.activity} #${seen} of ${ctx.info.workflowExecution?.workflowId}`);
          process.kill(process.pid, 'SIGKILL');
        }
        return result;
      },
    },
  });
}

async function main(): Promise<void> {
  const [activity = '', count = '1'] = (process.env.DYING_WORKER_AFTER ?? '').split(':');
  const workers = await startKuraWorkers({
    loaded: loadConfig(configPath()),
    workflowBundle: { codePath: process.env.KURA_WORKFLOW_BUNDLE ?? '' },
    activityInterceptors: [dieAfter({ activity, count: Number(count) })],
  });
  console.log(`kura: workers running on ${workers.taskQueue}; dying after ${activity} #${count}`);
  await workers.running;
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  });
}
