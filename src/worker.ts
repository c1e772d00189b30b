/**
 * Starts Kura's Temporal Workers: the control worker (every workflow, the control and pool
 * activities, and the handler of Kura's Nexus service) on `kura-control`, and one worker per backup server of the inventory on
 * `kura-server-<name>` for the copies and cartridge reads that server performs, and one per copy
 * device on `kura-copy-<name>` for its direct copies (docs/adr/029). In production each backup server
 * host runs its own worker; the embedded stack runs them all in this one process.
 */
import { setFlagsFromString } from 'node:v8';
import { Client, Connection } from '@temporalio/client';
import { IllegalStateError } from '@temporalio/common';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  type LogLevel,
  type WorkerOptions,
  type ActivityInterceptorsFactory,
} from '@temporalio/worker';
import { loadConfig, configPath, type LoadedConfig } from './config/load';
import { kuraPaths, type KuraPaths } from './config/paths';
import { Catalog } from './catalog/store';
import { LabState } from './lab/state';
import { labDrivers } from './drivers';
import { EventFeed } from './activities/events';
import { createControlActivities } from './activities/control';
import { createCopyActivities } from './activities/copy';
import { createDirectCopyActivities } from './activities/direct-copy';
import { copyDeviceTaskQueue } from './api/task-queues';
import { createCatalogReadActivities, createCatalogRebuildActivities } from './activities/catalog-rebuild';
import { createPoolActivities } from './activities/pool';
import { createOnlineActivities } from './activities/online';
import { createVmActivities } from './activities/vm';
import { createGuardianRequestActivities } from './activities/guardian-requests';
import { createStoreActivities } from './activities/store';
import { createDrillActivities } from './activities/drill';
import { createStoreTapeActivities } from './activities/store-tape';
import { createReportActivities } from './activities/report';
import { createKuraNexusHandler } from './nexus-handler';
import { ImageStore } from './images/store';
import { Kura, controlTaskQueue, ensureGuardians, ensurePool, serverTaskQueue } from './client';
import { temporalConnectionOptions } from './stack/connection';
import { startWorkerMetrics, type WorkerMetricsEndpoint } from './metrics/worker-endpoint';
import { kuraDataConverter } from './codec/data-converter';
import { searchAttributeLabels } from './codec/labels';
import { installationClientInterceptors } from './api/installation-interceptors';
import { installationCheck } from './activities/installation-check';
import { createRemoteActivities } from './activities/remote';
import { siteTaskQueue } from './api/task-queues';

export interface KuraWorkersOptions {
  loaded: LoadedConfig;
  /** Temporal frontend and namespace; from $TEMPORAL_ADDRESS / kura.yaml when omitted. */
  address?: string;
  namespace?: string;
  /**
   * The control queue ($KURA_TASK_QUEUE, else `kura-control`, either with kura.yaml's installation
   * in its name); server queues sit beside it.
   */
  taskQueue?: string;
  /** A prebuilt workflow bundle (tests); otherwise the workflows are bundled at start-up. */
  workflowBundle?: { codePath: string };
  /** Only these backup servers' workers (default: every server of every site). */
  servers?: string[];
  /** Only these copy devices' workers (default: every copy device able to, unless `servers` is given). */
  copyDevices?: string[];
  /** Skip the control worker (a backup-server-only host). */
  serversOnly?: boolean;
  /**
   * Only these sites' workers, which run the activities that must act at a site (remote copy's
   * shipper and applier); default every site that has a remote-copy group.
   */
  sites?: string[];
  /**
   * The host stops the workers itself on SIGINT and SIGTERM, in its own order (`kura start`: the
   * progress display first, the server last). Otherwise the Temporal runtime starts shutting the
   * workers down by itself at the first signal, while the host still waits on them. Takes effect for
   * the first workers of the process, which install the runtime.
   */
  hostHandlesSignals?: boolean;
  /** More activity interceptors, after the installation check (tests inject faults with them). */
  activityInterceptors?: ActivityInterceptorsFactory[];
}

export interface KuraWorkers {
  taskQueue: string;
  paths: KuraPaths;
  client: Client;
  /** Resolves when every worker has stopped. */
  running: Promise<void>;
  /** Where Kura's Prometheus metrics of this process are served (kura.yaml `metrics.workerPort`). */
  metricsUrl?: string;
  /** Stops every worker (letting running activities finish or be cancelled) and closes resources. */
  shutdown(): Promise<void>;
}

/**
 * The workflow interceptor modules every bundle of Kura's workflows needs: whoever bundles the
 * workflows ahead of time (`bundleWorkflowCode`) passes them as `workflowInterceptorModules`.
 * Resolved when asked, not at load: under vitest a resolve without the extension fails.
 */
export function workflowInterceptorModules(): string[] {
  return [require.resolve('./workflows/installation')];
}

/**
 * The module every bundle of Kura's workflows starts from (`workflowsPath`): it evaluates each
 * workflow's modules only when a workflow of that type is created (docs/adr/049).
 */
export function workflowsEntry(): string {
  return require.resolve('./workflows/bundle-entry');
}

/** At shutdown, how long running activities get to finish before they are cancelled. */
export const SHUTDOWN_GRACE_SECONDS = 5;

let runtimeReady = false;

/**
 * Worker logs at $KURA_LOG_LEVEL (default WARN): state changes of every worker are noise to an operator.
 * The SDK serves its own Prometheus metrics on `temporalPort` when one is configured (docs/adr/019).
 */
function installRuntime(hostHandlesSignals: boolean, temporalPort: number): void {
  if (runtimeReady) return;
  runtimeReady = true;
  const level = (process.env.KURA_LOG_LEVEL ?? 'WARN').toUpperCase() as LogLevel;
  const plain = new DefaultLogger(level);
  try {
    Runtime.install({
      ...(hostHandlesSignals ? { shutdownSignals: [] } : {}),
      ...(temporalPort
        ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${temporalPort}` } } } }
        : {}),
      logger: new DefaultLogger(level, (entry) => {
        // Backup-server workers run activities only; that they poll no workflow tasks is by design.
        if (entry.message.startsWith('No workflows registered')) return;
        plain.log(entry.level, entry.message, entry.meta);
      }),
    });
  } catch (err) {
    // Already installed by the host process: keep its logger (and its metrics). Anything else, such as
    // the metrics port being taken, stops the start with the reason.
    if (!(err instanceof IllegalStateError)) {
      runtimeReady = false;
      throw err;
    }
  }
}

let heapGrowthSet: number | undefined;

/**
 * Bounds how far every V8 heap of this process grows past its live size before its next full
 * collection (V8's `--heap-growing-percent`, read at every collection, so it holds for the heaps
 * already running as for the SDK's workflow thread started after it). V8's own choice lets a heap
 * with a steady live size grow to about 4× it: the workflow thread held about 260 MB for 60 MB live
 * (docs/adr/048). The first worker start of a process sets it; 0 leaves V8's own choice.
 */
export function applyHeapGrowth(percent: number): void {
  if (heapGrowthSet !== undefined || percent <= 0) return;
  heapGrowthSet = percent;
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}

/** Creates and runs the workers for one configuration until `shutdown()`. */
export async function startKuraWorkers(opts: KuraWorkersOptions): Promise<KuraWorkers> {
  const { loaded } = opts;
  installRuntime(opts.hostHandlesSignals === true, loaded.config.metrics.temporalPort);
  applyHeapGrowth(loaded.config.worker.heapGrowthPercent);
  const conn = temporalConnectionOptions(loaded, { address: opts.address, namespace: opts.namespace });
  const { installation } = loaded.config;
  const taskQueue = controlTaskQueue(opts.taskQueue, installation);
  const paths = kuraPaths(loaded);
  const catalog = new Catalog(paths.catalog);
  const lab = new LabState(paths.labState);
  const drivers = labDrivers(loaded, paths, lab);
  const images = new ImageStore(paths.home);

  let clientConnection: Connection | undefined;
  let connection: NativeConnection | undefined;
  let metrics: WorkerMetricsEndpoint | undefined;
  const workers: Worker[] = [];
  const runs: Promise<void>[] = [];
  let closing: Promise<void> | undefined;
  /**
   * Stops what has been started, in order: the control worker first — with its workflows stopped,
   * nothing schedules a new copy, so no copy task can reach a backup server's worker just as it
   * stops (a task lost that way would time out at the next start and cost the drive its
   * availability) — then the backup servers' workers (running copies finish or are cancelled), then
   * the connections (no activity is left calling Temporal on them), then the stores. Also the way
   * out of a start that failed half-way, so a failed start leaves nothing open.
   */
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const [first, rest] = opts.serversOnly ? [[], workers] : [workers.slice(0, 1), workers.slice(1)];
      for (const group of [first, rest]) {
        for (const w of group) if (w.getState() === 'RUNNING') w.shutdown();
        // Every worker of the group, even when one of them fails its shutdown.
        await Promise.allSettled(group.map((w) => runs[workers.indexOf(w)]));
      }
      await metrics?.close();
      await connection?.close().catch(() => undefined);
      await clientConnection?.close().catch(() => undefined);
      catalog.close();
      lab.close();
      images.close();
    })());

  try {
    // Client and workers encrypt with the same keys; a missing or open key file stops the start here.
    const dataConverter = kuraDataConverter(loaded);
    const labels = searchAttributeLabels(loaded);
    clientConnection = await Connection.connect({ address: conn.address, tls: conn.tls, apiKey: conn.apiKey });
    const client = new Client({
      connection: clientConnection,
      namespace: conn.namespace,
      dataConverter,
      interceptors: installationClientInterceptors(installation),
    });
    connection = await NativeConnection.connect({ address: conn.address, tls: conn.tls, apiKey: conn.apiKey });
    metrics = await startWorkerMetrics({
      port: loaded.config.metrics.workerPort,
      // The recovery points and the pools are the control host's to report, once per installation.
      ...(opts.serversOnly ? {} : { catalog, client, sites: loaded.config.sites.map((s) => s.name), installation }),
    });

    const common: Partial<WorkerOptions> = {
      // Progress of long copies reaches the server (and the CLI's bars) every second.
      defaultHeartbeatThrottleInterval: '1 second',
      maxHeartbeatThrottleInterval: '1 second',
      // At shutdown, running activities get this long to finish before they are cancelled (a copy
      // then stops at its last heartbeat and resumes from it on the next attempt) …
      shutdownGraceTime: `${SHUTDOWN_GRACE_SECONDS} seconds`,
      // … and an activity that ignores its cancellation is abandoned this much later, so a stop
      // never hangs on one.
      shutdownForceTime: '10 seconds',
      dataConverter,
      // Work of another installation is refused before any activity code runs (docs/adr/027).
      interceptors: {
        activity: [
          installationCheck(installation),
          ...(metrics ? [metrics.interceptor] : []),
          ...(opts.activityInterceptors ?? []),
        ],
        // The client the worker gives its Nexus handler starts workflows with this installation's header.
        client: installationClientInterceptors(installation),
      },
    };
    if (!opts.serversOnly) {
      workers.push(
        await Worker.create({
          ...common,
          connection,
          namespace: conn.namespace,
          taskQueue,
          // Unset: the SDK's default, from the heap limit (docs/adr/048).
          ...(loaded.config.worker.maxCachedWorkflows !== undefined
            ? { maxCachedWorkflows: loaded.config.worker.maxCachedWorkflows }
            : {}),
          ...(opts.workflowBundle
            ? { workflowBundle: opts.workflowBundle }
            : {
                workflowsPath: workflowsEntry(),
                // A prebuilt bundle has these built in (bundleWorkflowCode's workflowInterceptorModules).
                interceptors: { ...common.interceptors, workflowModules: workflowInterceptorModules() },
              }),
          activities: {
            ...createControlActivities({ loaded, paths, drivers, catalog }),
            ...createPoolActivities({
              client,
              sites: () => loaded.config.sites,
              memo: labels.memo,
              feed: new EventFeed({ loaded, catalog }),
            }),
            ...createOnlineActivities({ loaded, paths, catalog }),
            ...createVmActivities({ loaded, drivers, images }),
            ...createCatalogRebuildActivities({ catalog }),
            ...createGuardianRequestActivities({ vms: new Kura(client, loaded, taskQueue).vms }),
            ...createStoreActivities({
              loaded,
              paths,
              catalog,
              images: drivers.images,
              hypervisor: drivers.hypervisor,
              arrays: drivers.arrays,
            }),
            ...createDrillActivities({ loaded, paths, catalog }),
            ...createStoreTapeActivities({ loaded, paths, catalog }),
            ...createReportActivities({ loaded, paths, catalog }),
          },
          // Kura's Nexus service `kura`, for callers in other namespaces (docs/adr/018).
          nexusServices: [createKuraNexusHandler({ client, loaded, taskQueue })],
        }),
      );
    }
    const servers = loaded.config.sites
      .flatMap((s) => s.servers.map((srv) => srv.name))
      .filter((n) => !opts.servers || opts.servers.includes(n));
    for (const server of new Set(servers)) {
      workers.push(
        await Worker.create({
          ...common,
          connection,
          namespace: conn.namespace,
          taskQueue: serverTaskQueue(server, taskQueue),
          activities: { ...createCopyActivities({ drivers }), ...createCatalogReadActivities({ drivers }) },
        }),
      );
    }

    const groups = loaded.config.remoteCopy.groups;
    const sites = [...new Set(groups.flatMap((g) => [g.main, g.remote]))].filter(
      (n) => !opts.sites || opts.sites.includes(n),
    );
    for (const site of sites) {
      workers.push(
        await Worker.create({
          ...common,
          connection,
          namespace: conn.namespace,
          taskQueue: siteTaskQueue(site, taskQueue),
          activities: createRemoteActivities({ loaded, paths }),
        }),
      );
    }

    // A copy device's own worker executes its direct copies (docs/adr/029); a host running only some
    // backup servers' workers runs no copy device's unless asked.
    const copyDevices = loaded.config.sites
      .flatMap((s) => s.copyDevices.filter((c) => c.segmentCopy).map((c) => c.name))
      .filter((n) => (opts.copyDevices ? opts.copyDevices.includes(n) : !opts.servers));
    for (const device of new Set(copyDevices)) {
      workers.push(
        await Worker.create({
          ...common,
          connection,
          namespace: conn.namespace,
          taskQueue: copyDeviceTaskQueue(device, taskQueue),
          activities: createDirectCopyActivities({ drivers }),
        }),
      );
    }

    runs.push(...workers.map((w) => w.run()));
    const running = Promise.all(runs).then(() => undefined);
    // Whoever awaits `running` sees a failed worker; shutdown() waits for all of them regardless.
    running.catch(() => undefined);
    if (!opts.serversOnly) {
      for (const site of loaded.config.sites) await ensurePool(client, site, taskQueue, labels.memo);
      if (loaded.config.ladder.guardVms) await ensureGuardians(client, loaded, taskQueue);
    }

    return {
      taskQueue,
      paths,
      client,
      running,
      ...(metrics ? { metricsUrl: metrics.url } : {}),
      shutdown: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** `, 2 copy device queue(s)` when the inventory has copy devices able to carry direct streams. */
function copyDeviceQueues(loaded: LoadedConfig): string {
  const n = loaded.config.sites.flatMap((s) => s.copyDevices.filter((c) => c.segmentCopy)).length;
  return n === 0 ? '' : `, ${n} copy device queue(s)`;
}

/** `kura worker` / `npm run worker`: run the workers of kura.yaml until SIGINT or SIGTERM. */
async function main(): Promise<void> {
  const loaded = loadConfig(configPath());
  // A prebuilt workflow bundle (bundleWorkflowCode) saves the bundling time at every start.
  const bundle = process.env.KURA_WORKFLOW_BUNDLE;
  // The handlers below stop the workers in their order (control first); the runtime's own would
  // stop them all at once.
  // $KURA_SITES: a site's host, running only that site's queues (remote copy's shipper or applier).
  const sites = process.env.KURA_SITES?.split(',').map((s) => s.trim());
  const workers = await startKuraWorkers({
    loaded,
    workflowBundle: bundle ? { codePath: bundle } : undefined,
    hostHandlesSignals: true,
    ...(sites ? { sites, serversOnly: true, servers: [] } : {}),
  });
  console.log(
    `kura: workers running on ${workers.taskQueue} and ${loaded.config.sites.flatMap((s) => s.servers).length} backup server queue(s)${copyDeviceQueues(loaded)}; Ctrl-C stops them`,
  );
  const stop = () => void workers.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await workers.running;
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
