/**
 * Every task queue Kura's workers poll: the control queue (workflows, control, pool, online and VM
 * activities) and one queue per backup server beside it (copies). Pure (no Node built-ins, no
 * Temporal client), so workflow code imports it too; reading $KURA_TASK_QUEUE is the caller's job.
 */

/** Task queue of the control plane: workflows and control activities ($KURA_TASK_QUEUE overrides). */
export const CONTROL_TASK_QUEUE = 'kura-control';

/**
 * Task queue of one backup server, where the copy activities that run on that server wait:
 * `kura-server-<name>` beside `kura-control` (a control queue `x-kura-control` gives `x-kura-server-<name>`).
 */
export function serverTaskQueue(server: string, controlQueue: string = CONTROL_TASK_QUEUE): string {
  const base = controlQueue.endsWith('control') ? controlQueue.slice(0, -'control'.length) : `${controlQueue}-`;
  return `${base}server-${server}`;
}
