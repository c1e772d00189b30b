/**
 * Every task queue Kura's workers poll: the control queue (workflows, control, pool, online and VM
 * activities) and one queue per backup server beside it (copies), each of one installation. Pure
 * (no Node built-ins, no Temporal client), so workflow code imports it too; reading $KURA_TASK_QUEUE
 * is the caller's job.
 */
/** Task queue of the control plane: workflows and control activities ($KURA_TASK_QUEUE overrides). */
export const CONTROL_TASK_QUEUE = 'kura-control';

/**
 * The default installation's id, as src/domain/installation.ts declares it: spelled out here so this
 * module loads nothing (a unit test holds the two equal).
 */
const DEFAULT_INSTALLATION = 'default';

/**
 * Separates a queue's name from its installation: `kura-control@3f9c2a71`. Neither installation ids
 * nor server names hold it, so the installation of any queue can be read back from its name, which
 * is how workflow code (which cannot read kura.yaml) knows its own.
 */
const INSTALLATION_SEPARATOR = '@';

/**
 * A queue of an installation: `<queue>@<installation>`, or the queue itself for the default
 * installation (whose queues keep the names of before installations existed). Idempotent.
 */
export function installationTaskQueue(queue: string, installation: string): string {
  if (queue.includes(INSTALLATION_SEPARATOR)) return queue;
  return installation === DEFAULT_INSTALLATION ? queue : `${queue}${INSTALLATION_SEPARATOR}${installation}`;
}

/** The installation a task queue belongs to: what follows its last `@`, else the default one. */
export function installationOfTaskQueue(queue: string): string {
  const at = queue.lastIndexOf(INSTALLATION_SEPARATOR);
  return at < 0 ? DEFAULT_INSTALLATION : queue.slice(at + 1);
}

/**
 * Task queue of one backup server, where the copy activities that run on that server wait:
 * `kura-server-<name>` beside `kura-control` (a control queue `x-kura-control` gives `x-kura-server-<name>`),
 * of the control queue's installation (`kura-control@a1` gives `kura-server-<name>@a1`).
 */
export function serverTaskQueue(server: string, controlQueue: string = CONTROL_TASK_QUEUE): string {
  const at = controlQueue.lastIndexOf(INSTALLATION_SEPARATOR);
  const name = at < 0 ? controlQueue : controlQueue.slice(0, at);
  const base = name.endsWith('control') ? name.slice(0, -'control'.length) : `${name}-`;
  return installationTaskQueue(`${base}server-${server}`, installationOfTaskQueue(controlQueue));
}

/**
 * Task queue of one site, where the activities that must run at that site wait (the remote-copy
 * shipper at the main site, the applier at the remote site): `kura-site-<name>` beside `kura-control`,
 * of the control queue's installation, as {@link serverTaskQueue} builds a server's.
 */
export function siteTaskQueue(site: string, controlQueue: string = CONTROL_TASK_QUEUE): string {
  return serverTaskQueue(site, controlQueue).replace(/server-([^@]*)(@|$)/, 'site-$1$2');
}

/**
 * Task queue of one copy device, where the direct copies it executes wait: `kura-copy-<name>` beside
 * `kura-control`, of the control queue's installation, as {@link serverTaskQueue} names a server's.
 * Server and copy device names share a site's namespace, and the prefixes differ, so no two clash.
 */
export function copyDeviceTaskQueue(device: string, controlQueue: string = CONTROL_TASK_QUEUE): string {
  const at = controlQueue.lastIndexOf(INSTALLATION_SEPARATOR);
  const name = at < 0 ? controlQueue : controlQueue.slice(0, at);
  const base = name.endsWith('control') ? name.slice(0, -'control'.length) : `${name}-`;
  return installationTaskQueue(`${base}copy-${device}`, installationOfTaskQueue(controlQueue));
}
