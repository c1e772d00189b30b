/**
 * What the client takes from the process environment: who is asking when a person runs the CLI,
 * and the control task queue of this installation.
 */
import { DEFAULT_INSTALLATION } from '../domain/installation';
import { InvalidInputError } from '../domain/errors';
import { CONTROL_TASK_QUEUE, installationOfTaskQueue, installationTaskQueue } from './task-queues';

/** Who asks when a person runs the CLI: `cli:<user>`. */
export function cliUser(): string {
  return `cli:${process.env.USER ?? process.env.LOGNAME ?? 'unknown'}`;
}

/**
 * The control task queue of an installation: the one given, else $KURA_TASK_QUEUE, else
 * `kura-control`, with the installation in its name (`kura-control@<installation>`; unchanged for
 * the default installation). A queue that already names another installation is refused.
 */
export function controlTaskQueue(given?: string, installation: string = DEFAULT_INSTALLATION): string {
  const queue = given ?? process.env.KURA_TASK_QUEUE ?? CONTROL_TASK_QUEUE;
  const named = queue.includes('@') ? installationOfTaskQueue(queue) : installation;
  if (named !== installation) {
    throw new InvalidInputError(
      `task queue ${queue} belongs to installation ${named}, but kura.yaml's installation is ${installation}; ` +
        `set KURA_TASK_QUEUE (or the queue given) without an installation, or to one of ${installation}`,
    );
  }
  return installationTaskQueue(queue, installation);
}
