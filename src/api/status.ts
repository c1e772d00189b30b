/**
 * The operator's page (`kura.status`): gathers what runs now (Temporal's visibility, narrowed by
 * Kura's search attributes to this installation's sites and control queue, and each job's own
 * progress query), the last night's results (the catalog by class, the fleet runs and the jobs that
 * ended), RPO breaches (the catalog against each policy's `rpo`), devices out of service (each
 * site's pool) and ladders waiting for a person. A section that cannot be read is named in
 * `problems`; the others are shown all the same.
 */
import type { Client, WorkflowExecutionInfo, WorkflowHandle } from '@temporalio/client';
import { Catalog } from '../catalog/store';
import type { LoadedConfig } from '../config/load';
import { kuraPaths } from '../config/paths';
import { policyTargets } from '../config/tuning';
import type { CatalogRebuildProgress } from '../domain/catalog-rebuild';
import type { FleetProgress, FleetReport } from '../domain/fleet';
import type { Progress } from '../domain/jobs';
import { healthWaitOf, type LadderView } from '../domain/ladder';
import { TABLE_KEYS } from '../domain/pool-tables';
import {
  StatusPageSchema,
  rpoBreach,
  targetClassOf,
  type BackupClass,
  type ClosedJobs,
  type DeviceOut,
  type FleetRun,
  type JobProgress,
  type LastNight,
  type Rpo,
  type RunningJob,
  type StatusPage,
  type StatusProblem,
  type WaitingLadder,
} from '../domain/status';
import { parseWith } from '../domain/validate';
import {
  catalogRebuildProgressQuery,
  fleetProgressQuery,
  ladderQuery,
  onlineProgressQuery,
  progressQuery,
} from '../messages';
import { JobKind, KuraKind, KuraSite, KuraTarget } from '../search-attributes';
import { searchAttributeLabels, type Labels } from '../codec/labels';
import { heartbeatBytes } from './heartbeat';
import type { KuraPool } from './pool';

/** The kinds of work the page lists as running (the pools and guardians always run; they are not work). */
export const RUNNING_KINDS: JobKind[] = [
  JobKind.Backup,
  JobKind.Restore,
  JobKind.OnlineBackup,
  JobKind.Fleet,
  JobKind.Ladder,
  JobKind.CatalogRebuild,
];

/** How long one job may take to answer its progress query before the page shows it without. */
const QUERY_MS = 5_000;
/** Progress queries in flight at once, so a big night does not flood the server. */
const QUERY_CONCURRENCY = 8;
/** The most executions one section reads from visibility. */
const LIST_LIMIT = 5_000;
/** Failed backups named per class. */
const FAILURES_PER_CLASS = 5;

export interface StatusOptions {
  /** Start of the "last night" window (ISO); 24 hours before the page's time by default. */
  since?: string;
}

/** The status page of one installation, as `kura status` and other services read it. */
export class KuraStatus {
  constructor(
    readonly client: Client,
    readonly loaded: LoadedConfig,
    readonly taskQueue: string,
    private readonly pool: KuraPool,
  ) {
    this.labels = searchAttributeLabels(loaded);
  }

  /** Search attribute values as this installation writes them: names, or their keyed hashes. */
  private readonly labels: Labels;

  /** The name behind a naming search attribute's value, or null when the run has none. */
  private nameOf(value: string | undefined): string | null {
    return value === undefined ? null : this.labels.name(value);
  }

  /** Reads every section now; a section that cannot be read is left out and named in `problems`. */
  async page(opts: StatusOptions = {}): Promise<StatusPage> {
    const nowMs = Date.now();
    const at = new Date(nowMs).toISOString();
    const since = opts.since ?? new Date(nowMs - 24 * 3_600_000).toISOString();
    const problems: StatusProblem[] = [];
    const attempt = async <T>(section: string, read: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await read();
      } catch (err) {
        problems.push({ section, message: err instanceof Error ? err.message : String(err) });
        return undefined;
      }
    };
    const [running, lastNight, rpo, devicesOut] = await Promise.all([
      attempt('running', () => this.running(nowMs)),
      attempt('lastNight', () => this.lastNight(since)),
      attempt('rpo', () => this.rpo(nowMs)),
      this.devicesOut(problems),
    ]);
    const page: StatusPage = {
      at,
      namespace: this.client.options.namespace,
      taskQueue: this.taskQueue,
      sites: this.sites(),
      ...(running ? { running: running.jobs, waitingForPerson: running.waiting } : {}),
      ...(lastNight ? { lastNight } : {}),
      ...(rpo ? { rpo } : {}),
      devicesOut,
      problems,
    };
    return parseWith(StatusPageSchema, page, 'status page');
  }

  private sites(): string[] {
    return this.loaded.config.sites.map((s) => s.name);
  }

  /** This installation's executions in visibility: its sites, on its control queue, and `more`. */
  private async list(more: string): Promise<WorkflowExecutionInfo[]> {
    const query = [
      `KuraSite IN (${this.sites()
        .map((s) => quote(this.labels.value(s)))
        .join(', ')})`,
      `TaskQueue = ${quote(this.taskQueue)}`,
      more,
    ].join(' AND ');
    const out: WorkflowExecutionInfo[] = [];
    for await (const wf of this.client.workflow.list({ query })) {
      out.push(wf);
      if (out.length >= LIST_LIMIT) break;
    }
    return out;
  }

  /** The jobs running now with their progress, and the ladders among them that wait for a person. */
  private async running(nowMs: number): Promise<{ jobs: RunningJob[]; waiting: WaitingLadder[] }> {
    const rows = await this.list(
      `ExecutionStatus = "Running" AND KuraKind IN (${RUNNING_KINDS.map(quote).join(', ')})`,
    );
    rows.sort((a, b) => a.startTime.getTime() - b.startTime.getTime() || a.workflowId.localeCompare(b.workflowId));
    const waiting: WaitingLadder[] = [];
    const jobs = await mapLimit(rows, QUERY_CONCURRENCY, async (wf): Promise<RunningJob> => {
      const kind = wf.typedSearchAttributes.get(KuraKind) ?? 'unknown';
      const job: RunningJob = {
        workflowId: wf.workflowId,
        kind,
        site: this.nameOf(wf.typedSearchAttributes.get(KuraSite)),
        target: this.nameOf(wf.typedSearchAttributes.get(KuraTarget)),
        startedAt: wf.startTime.toISOString(),
        progress: null,
      };
      const handle = this.client.workflow.getHandle(wf.workflowId, wf.runId);
      try {
        if (kind === JobKind.Ladder) {
          const view = await this.ask(() => handle.query(ladderQuery));
          job.progress = ladderProgress(view);
          job.rung = view.currentRung;
          const wait = healthWaitOf(view, nowMs);
          if (wait) job.healthWait = wait;
          if (view.status === 'waiting-for-human') waiting.push(waitingLadder(view));
        } else {
          job.progress = await this.progressOf(kind, handle);
        }
      } catch (err) {
        // A job that has not run its first workflow task yet has no handler; it is shown without.
        job.problem = `no progress: ${err instanceof Error ? err.message : String(err)}`;
      }
      return job;
    });
    return { jobs, waiting };
  }

  private async progressOf(kind: string, handle: WorkflowHandle): Promise<JobProgress> {
    switch (kind) {
      case JobKind.Fleet: {
        const f = await this.ask(() => handle.query(fleetProgressQuery));
        return fleetProgress(f);
      }
      case JobKind.CatalogRebuild: {
        const p = await this.ask(() => handle.query(catalogRebuildProgressQuery));
        return rebuildProgress(p);
      }
      case JobKind.OnlineBackup: {
        const p = await this.ask(() => handle.query(onlineProgressQuery));
        const done = p.phase === 'base-copy' ? await this.ask(() => heartbeatBytes(handle)) : p.bytesDone;
        return bytesProgress(p.phase, p.activity, done, p.bytesTotal);
      }
      default: {
        // Backups and restores: the workflow counts finished pieces; the copy's heartbeat the one in flight.
        const p: Progress = await this.ask(() => handle.query(progressQuery));
        const inFlight = p.phase === 'launch' ? await this.ask(() => heartbeatBytes(handle)) : 0;
        return bytesProgress(p.phase, p.activity, p.bytesDone + inFlight, p.bytesTotal);
      }
    }
  }

  private ask<T>(fn: () => Promise<T>): Promise<T> {
    return this.client.withDeadline(Date.now() + QUERY_MS, fn);
  }

  /** Backups in the window by class, the fleet runs that started in it, and the jobs that ended in it. */
  private async lastNight(since: string): Promise<LastNight> {
    const sites = new Set(this.sites());
    const catalog = new Catalog(kuraPaths(this.loaded).catalog);
    const classes = new Map<string, BackupClass>();
    try {
      for (const b of catalog.listBackups({ since })) {
        if (!sites.has(b.site)) continue;
        const method = b.job.startsWith('online/') ? 'online' : 'tape';
        const targetClass = targetClassOf(b.target);
        const key = `${method}/${targetClass}`;
        const c = classes.get(key) ?? {
          method,
          targetClass,
          complete: 0,
          failed: 0,
          running: 0,
          bytes: 0,
          failures: [],
        };
        classes.set(key, c);
        if (b.status === 'complete') {
          c.complete++;
          c.bytes += b.sizeBytes;
        } else if (b.status === 'failed') {
          c.failed++;
          if (c.failures.length < FAILURES_PER_CLASS)
            c.failures.push({ backupId: b.backupId, target: b.target, error: b.error });
        } else c.running++;
      }
    } finally {
      catalog.close();
    }
    const byClass = [...classes.values()].sort(
      (a, b) => a.method.localeCompare(b.method) || a.targetClass.localeCompare(b.targetClass),
    );
    const stamp = quote(since);
    const [fleets, closed] = await Promise.all([
      this.list(`KuraKind = ${quote(JobKind.Fleet)} AND StartTime >= ${stamp}`),
      this.list(
        `KuraKind IN (${RUNNING_KINDS.map(quote).join(', ')}) AND ExecutionStatus != "Running" AND CloseTime >= ${stamp}`,
      ),
    ]);
    const fleetRuns = await mapLimit(
      // A run that continued as new is one night with its successor, which reports the whole of it.
      fleets.filter((f) => f.status.name !== 'CONTINUED_AS_NEW'),
      QUERY_CONCURRENCY,
      (f) => this.fleetRun(f),
    );
    fleetRuns.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
    const counts = new Map<string, Record<string, number>>();
    for (const wf of closed) {
      if (wf.status.name === 'CONTINUED_AS_NEW') continue;
      const kind = wf.typedSearchAttributes.get(KuraKind) ?? 'unknown';
      const byStatus = counts.get(kind) ?? {};
      const status = wf.status.name.toLowerCase().replaceAll('_', '-');
      byStatus[status] = (byStatus[status] ?? 0) + 1;
      counts.set(kind, byStatus);
    }
    const closedJobs: ClosedJobs[] = RUNNING_KINDS.filter((k) => counts.has(k)).map((kind) => ({
      kind,
      byStatus: counts.get(kind)!,
    }));
    return { since, byClass, fleetRuns, closedJobs };
  }

  private async fleetRun(f: WorkflowExecutionInfo): Promise<FleetRun> {
    const run: FleetRun = {
      workflowId: f.workflowId,
      policy: this.nameOf(f.typedSearchAttributes.get(KuraTarget)) ?? '?',
      site: this.nameOf(f.typedSearchAttributes.get(KuraSite)),
      status: f.status.name.toLowerCase().replaceAll('_', '-'),
      startedAt: f.startTime.toISOString(),
      closedAt: f.closeTime?.toISOString() ?? null,
      succeeded: null,
      failed: null,
      targets: null,
    };
    const handle = this.client.workflow.getHandle(f.workflowId, f.runId);
    try {
      if (f.status.name === 'COMPLETED') {
        const r = (await this.ask(() => handle.result())) as FleetReport;
        Object.assign(run, { succeeded: r.succeeded, failed: r.failed, targets: r.targets.length });
      } else if (f.status.name === 'RUNNING') {
        const p = await this.ask(() => handle.query(fleetProgressQuery));
        Object.assign(run, {
          succeeded: p.targets.filter((t) => t.state === 'done').length,
          failed: p.targets.filter((t) => t.state === 'failed').length,
          targets: p.targets.length,
        });
      }
    } catch {
      // Its counts are unknown; its status alone still says how the night went.
    }
    return run;
  }

  /** Every target of every policy whose last good backup is older than the policy's RPO, or missing. */
  private async rpo(nowMs: number): Promise<Rpo> {
    const catalog = new Catalog(kuraPaths(this.loaded).catalog);
    const breaches: Rpo['breaches'] = [];
    let checked = 0;
    try {
      for (const site of this.loaded.config.sites) {
        for (const policy of site.policies) {
          for (const target of policyTargets(this.loaded.config, site.name, policy.name)?.targets ?? []) {
            checked++;
            const [last] = catalog.listBackups({ site: site.name, target, status: 'complete', limit: 1 });
            const { breach, ageMs } = rpoBreach(last, policy.rpo, nowMs);
            if (!breach) continue;
            breaches.push({
              site: site.name,
              policy: policy.name,
              target,
              rpoMs: policy.rpo,
              lastBackupId: last?.backupId ?? null,
              lastDataTime: last?.dataTime ?? null,
              ageMs,
            });
          }
        }
      }
    } finally {
      catalog.close();
    }
    // Oldest (or never backed up) first: those are the ones to look at.
    breaches.sort((a, b) => (b.ageMs ?? Infinity) - (a.ageMs ?? Infinity));
    return { checked, breaches };
  }

  /** Every device each site's pool holds out of service; a pool that does not answer is a problem of its own. */
  private async devicesOut(problems: StatusProblem[]): Promise<DeviceOut[]> {
    const out: DeviceOut[] = [];
    for (const site of this.sites()) {
      try {
        const tables = await this.pool.tables(site);
        for (const key of TABLE_KEYS) {
          for (const r of tables[key]) {
            if (r.state === 'unavailable') out.push({ site, kind: r.kind, name: r.name, reason: r.reason ?? '' });
          }
        }
      } catch (err) {
        problems.push({ section: 'devicesOut', message: err instanceof Error ? err.message : String(err) });
      }
    }
    return out;
  }
}

function ladderProgress(v: LadderView): JobProgress {
  const rung = v.currentRung ?? 'starting';
  return {
    phase: v.status,
    activity: v.status === 'waiting-for-human' ? `waiting for a person (${v.reason})` : `${rung} (${v.reason})`,
    fraction: null,
  };
}

function waitingLadder(v: LadderView): WaitingLadder {
  const tried = v.rungs.filter((r) => r.attempts.length > 0 && r.rung !== 'human');
  const ends = tried.flatMap((r) => r.attempts.map((a) => a.endedAt ?? a.startedAt)).sort();
  return {
    workflowId: v.workflowId,
    site: v.site,
    vm: v.vm,
    reason: v.reason,
    since: ends.at(-1) ?? v.startedAt,
    tried: tried.map((r) => r.rung),
    resolve: `kura ladder resolve ${v.vm} --note "<what was done>"`,
    rebuild: `kura ladder rebuild ${v.vm} --host <substitute host>`,
  };
}

function fleetProgress(f: FleetProgress): JobProgress {
  const n = (s: string) => f.targets.filter((t) => t.state === s).length;
  const finished = n('done') + n('failed');
  return {
    phase: 'running',
    activity: `policy ${f.policy}: ${n('done')} done, ${n('failed')} failed, ${n('running')} running (window ${f.concurrency})`,
    fraction: f.targets.length ? finished / f.targets.length : null,
    done: finished,
    total: f.targets.length,
    unit: 'targets',
  };
}

function rebuildProgress(p: CatalogRebuildProgress): JobProgress {
  const done = p.cartridges + p.unread.length;
  return {
    phase: p.phase,
    activity: p.activity,
    fraction: p.cartridgesTotal ? Math.min(1, done / p.cartridgesTotal) : null,
    done,
    total: p.cartridgesTotal,
    unit: 'cartridges',
  };
}

function bytesProgress(phase: string, activity: string, done: number, total: number): JobProgress {
  const d = Math.min(Math.max(0, done), Math.max(0, total));
  return {
    phase,
    activity,
    fraction: total > 0 ? d / total : null,
    done: d,
    total: Math.max(0, total),
    unit: 'bytes',
  };
}

/** A value in a visibility query, double-quoted. */
function quote(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

/** Maps `items` through `fn` with at most `limit` calls in flight, keeping their order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
