/**
 * What the client takes from the process environment: who is asking when a person runs the CLI,
 * and the control task queue of this installation.
 */
import { CONTROL_TASK_QUEUE } from './task-queues';

/** Who asks when a person runs the CLI: `cli:<user>`. */
export function cliUser(): string {
  return `cli:${process.env.USER ?? process.env.LOGNAME ?? 'unknown'}`;
}

/** The control task queue: the one given, else $KURA_TASK_QUEUE, else `kura-control`. */
export function controlTaskQueue(given?: string): string {
  return given ?? process.env.KURA_TASK_QUEUE ?? CONTROL_TASK_QUEUE;
}
