/**
 * A worker process that kills itself (SIGKILL) right after one of its activities completes, before
 * the completion can reach the server: for a local activity, inside the workflow task that ran it,
 * so the task is lost and the next worker runs the task's local activities again from its start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { inject } from 'vitest';
import { labEnv, untilPrinted, type TestLab } from './harness';

import type { DeathPoint } from './dying-worker-main';

/**
 * Starts a worker for the lab as its own process that SIGKILLs itself at `death`, and waits until it
 * runs. `procs` collects it for the test's cleanup.
 */
export async function startDyingWorkerProcess(
  lab: TestLab,
  procs: ChildProcess[],
  death: DeathPoint,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'dying-worker-main.ts')], {
    cwd: path.resolve(__dirname, '..', '..'),
    env: {
      ...labEnv(lab),
      KURA_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
      DYING_WORKER_AFTER: `${death.activity}:${death.count}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(child);
  await untilPrinted(child, 'dying worker', 'workers running', true);
  return child;
}
