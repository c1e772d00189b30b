/**
 * The client's part for restore drills and the estate report (docs/adr/035): start a drill or a
 * report under a meaningful id, and keep their two Temporal Schedules — the nightly drill and the
 * nightly report — in line with what the operator asked.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { upsertSchedule } from './schedules';
import type { LoadedConfig } from '../config/load';
import { DEFAULT_INSTALLATION } from '../domain/installation';
import { compactTime } from '../domain/catalog';
import type { DrillRequest } from '../domain/drill';
import type { estateReport, restoreDrill } from '../workflows/drill';

/** The schedule of drills (`run`) or of the report (`report`), per installation. */
export function drillScheduleId(job: 'run' | 'report', installation: string = DEFAULT_INSTALLATION): string {
  return installation === DEFAULT_INSTALLATION ? `kura/drills/${job}` : `kura/${installation}/drills/${job}`;
}

/** A drill's or report's workflow id, `drill/<time>` or `report/<time>` (with the installation in front but for the default one). */
export function drillWorkflowId(
  kind: 'drill' | 'report',
  requestedAt: string,
  installation: string = DEFAULT_INSTALLATION,
): string {
  // To the millisecond, as every job's id: two drills started within one second are two drills,
  // each with its own rows in the catalog.
  const id = `${kind}/${compactTime(requestedAt)}`;
  return installation === DEFAULT_INSTALLATION ? id : `${installation}/${id}`;
}

/** When the two schedules fire: daily at HH:MM in the time zone. */
export interface DrillScheduleTimes {
  drillAt: string;
  reportAt: string;
  timezone: string;
}

export const DEFAULT_DRILL_TIMES: DrillScheduleTimes = { drillAt: '04:00', reportAt: '07:00', timezone: 'UTC' };

export class KuraDrills {
  constructor(
    private readonly client: Client,
    private readonly loaded: LoadedConfig,
    private readonly taskQueue: string,
  ) {}

  private get installation(): string {
    return this.loaded.config.installation;
  }

  /** Starts a restore drill: `drill/<time>`, its id also the drill's id in the catalog. */
  run(req: Partial<DrillRequest> = {}): Promise<WorkflowHandle<typeof restoreDrill>> {
    return this.client.workflow.start('restoreDrill', {
      taskQueue: this.taskQueue,
      workflowId: drillWorkflowId('drill', new Date().toISOString(), this.installation),
      args: [req],
    });
  }

  /** Writes the estate report through the worker (to `out`, or under Kura's home). */
  report(out?: string): Promise<WorkflowHandle<typeof estateReport>> {
    return this.client.workflow.start('estateReport', {
      taskQueue: this.taskQueue,
      workflowId: drillWorkflowId('report', new Date().toISOString(), this.installation),
      args: [out === undefined ? {} : { out }],
    });
  }

  /**
   * Makes the drill's and the report's schedules fire daily at the given times; overlapping runs
   * are skipped. Returns what it created and updated, by schedule id.
   */
  async applySchedules(
    times: Partial<DrillScheduleTimes> = {},
    drill: Partial<DrillRequest> = {},
  ): Promise<{ created: string[]; updated: string[] }> {
    const t = { ...DEFAULT_DRILL_TIMES, ...times };
    const out = { created: [] as string[], updated: [] as string[] };
    for (const [job, at, workflowType, args] of [
      ['run', t.drillAt, 'restoreDrill', [drill]],
      ['report', t.reportAt, 'estateReport', [{}]],
    ] as const) {
      const id = drillScheduleId(job, this.installation);
      const [hour, minute] = at.split(':').map(Number) as [number, number];
      const spec = { calendars: [{ hour, minute }], timezone: t.timezone };
      const action = {
        type: 'startWorkflow' as const,
        workflowType,
        workflowId: id.replace(/^kura\//, ''),
        taskQueue: this.taskQueue,
        args: [...args],
      };
      out[await upsertSchedule(this.client, id, spec, action)].push(id);
    }
    return out;
  }
}
