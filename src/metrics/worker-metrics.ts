/**
 * Kura's metrics of a worker process, in one prom-client registry: what the backups copied and how
 * long they took by class and method, failures by type, each target's recovery point (the age of
 * its newest good backup), the recovery ladder's cures by rung, and the resource pool's devices by
 * state. Each metric is defined here once; the activity interceptor (`activity-interceptor.ts`)
 * feeds the event counters, and the gauges are read from the catalog and the pools at scrape time,
 * so they are right even just after a restart. Workflow code never records a metric: it must stay
 * deterministic and replay without side effects.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What a target is: a VM (its data volume) or a volume named as array/volume. */
export const TargetClass = { Vm: 'vm', Volume: 'volume' } as const;
export type TargetClass = (typeof TargetClass)[keyof typeof TargetClass];

/**
 * How a backup was taken: a SAN operation by its kind (`backup` today; the split and snapshot
 * kinds as the engine gains them), an online backup through the datapath, or a VM's data-volume
 * image taken by its guardian.
 */
export const BackupMethod = { Online: 'online', Image: 'image' } as const;

/** One finished backup, as the metrics count it. */
export interface BackupDone {
  class: TargetClass;
  method: string;
  bytes: number;
  seconds: number;
}

/** A source of gauges read at scrape time (the catalog's recovery points, a site's pool). */
export interface WorkerMetricsSources {
  /** Per site and target, the data time of the newest complete backup. */
  lastGoodBackups?: () => { site: string; target: string; dataTime: string }[];
  /** Per site, its pool's devices with their kind and state; a site whose pool does not answer is left out. */
  poolDevices?: () => Promise<{ site: string; kind: string; state: string }[]>;
}

/** A backup's class from the target as the user named it. */
export function targetClass(target: string): TargetClass {
  return target.includes('/') ? TargetClass.Volume : TargetClass.Vm;
}

/** Buckets of a backup's duration, seconds: from a lab's small volume to a night's large one. */
const DURATION_BUCKETS = [0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14_400, 28_800];

/** The registry and metrics of one worker process. */
export class WorkerMetrics {
  readonly registry = new Registry();

  private readonly backupBytes = new Counter({
    name: 'kura_backup_bytes_total',
    help: 'Bytes of the images of completed backups (each backup counted once, whatever its streams copied)',
    labelNames: ['class', 'method'] as const,
    registers: [this.registry],
  });
  private readonly backups = new Counter({
    name: 'kura_backups_total',
    help: 'Backups that ended, by outcome (complete or failed)',
    labelNames: ['class', 'method', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly backupDuration = new Histogram({
    name: 'kura_backup_duration_seconds',
    help: 'Time from the start of a completed backup to its record in the catalog',
    labelNames: ['class', 'method'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly backupFailures = new Counter({
    name: 'kura_backup_failures_total',
    help: 'Failed backups by the type of their root failure (DeviceFault, NoResources, Cancelled …)',
    labelNames: ['class', 'method', 'type'] as const,
    registers: [this.registry],
  });
  private readonly activityFailures = new Counter({
    name: 'kura_activity_failures_total',
    help: 'Failed activity attempts by activity and failure type (a retried attempt counts again)',
    labelNames: ['activity', 'type'] as const,
    registers: [this.registry],
  });
  private readonly ladderCures = new Counter({
    name: 'kura_ladder_incidents_cured_total',
    help: 'Recovery-ladder incidents by the rung whose action brought the VM back to health',
    labelNames: ['rung'] as const,
    registers: [this.registry],
  });

  constructor(sources: WorkerMetricsSources = {}) {
    collectDefaultMetrics({ register: this.registry });
    const { lastGoodBackups, poolDevices } = sources;
    if (lastGoodBackups) {
      const rows = () => lastGoodBackups();
      new Gauge({
        name: 'kura_last_good_backup_age_seconds',
        help: "Age of the data of a target's newest complete backup (its recovery point, RPO)",
        labelNames: ['site', 'target'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          const now = Date.now();
          for (const r of rows()) this.set({ site: r.site, target: r.target }, (now - Date.parse(r.dataTime)) / 1000);
        },
      });
      new Gauge({
        name: 'kura_last_good_backup_timestamp_seconds',
        help: "Unix time of the data of a target's newest complete backup",
        labelNames: ['site', 'target'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const r of rows()) this.set({ site: r.site, target: r.target }, Date.parse(r.dataTime) / 1000);
        },
      });
    }
    if (poolDevices) {
      new Gauge({
        name: 'kura_pool_devices',
        help: "Devices of a site's resource pool by kind and state (available, in-use, unavailable)",
        labelNames: ['site', 'kind', 'state'] as const,
        registers: [this.registry],
        async collect() {
          const devices = await poolDevices();
          this.reset();
          for (const d of devices) this.inc({ site: d.site, kind: d.kind, state: d.state });
        },
      });
    }
  }

  /** A backup completed and is in the catalog. */
  backupCompleted(b: BackupDone): void {
    const labels = { class: b.class, method: b.method };
    this.backupBytes.inc(labels, b.bytes);
    // A duration that cannot be read (a record without its times) would turn the histogram's sum into NaN.
    if (Number.isFinite(b.seconds) && b.seconds >= 0) this.backupDuration.observe(labels, b.seconds);
    this.backups.inc({ ...labels, outcome: 'complete' });
  }

  /** A backup failed with a root failure of this type. */
  backupFailed(f: { class: TargetClass; method: string; type: string }): void {
    this.backups.inc({ class: f.class, method: f.method, outcome: 'failed' });
    this.backupFailures.inc({ class: f.class, method: f.method, type: f.type });
  }

  /** An attempt of an activity failed with this type. */
  activityFailed(activity: string, type: string): void {
    this.activityFailures.inc({ activity, type });
  }

  /** A ladder's rung brought its VM back to health. */
  ladderCured(rung: string): void {
    this.ladderCures.inc({ rung });
  }
}
