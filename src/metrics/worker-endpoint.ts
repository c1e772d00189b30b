/**
 * Puts a worker process's metrics together: the registry, its sources read at scrape time (the
 * catalog's recovery points, each site's pool), the activity interceptor that counts what the
 * activities finish, and the loopback endpoint that serves them.
 */
import type { Client } from '@temporalio/client';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { poolWorkflowId } from '../api/workflow-ids';
import type { Catalog } from '../catalog/store';
import { tablesQuery } from '../messages';
import { metricsInterceptor } from './activity-interceptor';
import { serveMetrics } from './http';
import { WorkerMetrics } from './worker-metrics';

export interface WorkerMetricsEndpoint {
  /** `http://127.0.0.1:<port>/metrics`. */
  url: string;
  /** For every Worker of the process, in `interceptors.activity`. */
  interceptor: ActivityInterceptorsFactory;
  metrics: WorkerMetrics;
  close(): Promise<void>;
}

export interface WorkerMetricsOptions {
  /** Loopback port; 0 turns the metrics off (undefined is returned). */
  port: number;
  /** Given on the control host: the recovery point of every target is read from it. */
  catalog?: Catalog;
  /** Given on the control host, with the sites: each site's pool is asked for its devices. */
  client?: Client;
  sites?: string[];
  /** The installation whose pools those are (default: the default installation). */
  installation?: string;
}

/** How long a scrape waits for a pool's answer before leaving that site out. */
const POOL_QUERY_TIMEOUT_MS = 2000;

/** Starts the metrics of a worker process, or returns undefined when `port` is 0. Rejects when the port is taken. */
export async function startWorkerMetrics(o: WorkerMetricsOptions): Promise<WorkerMetricsEndpoint | undefined> {
  if (!o.port) return undefined;
  const { catalog, client, sites = [], installation } = o;
  const metrics = new WorkerMetrics({
    ...(catalog ? { lastGoodBackups: () => catalog.lastGoodBackups() } : {}),
    ...(client && sites.length > 0 ? { poolDevices: () => poolDevices(client, sites, installation) } : {}),
  });
  const endpoint = await serveMetrics(metrics.registry, o.port);
  return { url: endpoint.url, interceptor: metricsInterceptor(metrics), metrics, close: endpoint.close };
}

/** Every device of every site's pool with its kind and state; a pool that does not answer in time is left out. */
async function poolDevices(
  client: Client,
  sites: string[],
  installation: string | undefined,
): Promise<{ site: string; kind: string; state: string }[]> {
  const answers = await Promise.all(
    sites.map((site) =>
      client
        .withAbortSignal(AbortSignal.timeout(POOL_QUERY_TIMEOUT_MS), () =>
          client.workflow.getHandle(poolWorkflowId(site, installation)).query(tablesQuery),
        )
        .catch(() => undefined),
    ),
  );
  return answers.flatMap((t) =>
    t
      ? [...t.servers, ...t.libraries, ...t.drives, ...t.tapes, ...t.switches, ...t.copyDevices].map((d) => ({
          site: t.site,
          kind: d.kind,
          state: d.state,
        }))
      : [],
  );
}
