/**
 * Each policy's nightly time as a Temporal Schedule (`kura/<site>/<policy>`, with the installation in
 * front for any but the default one) that starts a fleet run, kept in line with kura.yaml; overlapping
 * runs are skipped.
 */
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { LoadedConfig } from '../config/load';
import { findSite } from '../config/targets';
import { NotFoundError } from '../domain/errors';
import { JobKind, KuraKind, KuraSite, KuraTarget } from '../search-attributes';
import { searchAttributeLabels } from '../codec/labels';
import { isKuraScheduleId, parseScheduleId, scheduleIdFor, scheduledFleetWorkflowId } from './workflow-ids';

/** What `applySchedules` changed, by schedule id. */
export interface AppliedSchedules {
  created: string[];
  updated: string[];
  deleted: string[];
}

/** One of Kura's schedules: its next run, whether it is paused, and its last run (ISO times, or ''). */
export interface ScheduleRow {
  scheduleId: string;
  next: string;
  paused: boolean;
  recent: string;
}

/**
 * Makes the Temporal Schedules match the policies of kura.yaml: one schedule per policy firing a
 * fleet run at its nightly time on `taskQueue`, overlapping runs skipped; schedules of removed
 * policies of these sites are deleted.
 */
export async function applySchedules(
  client: Client,
  loaded: LoadedConfig,
  taskQueue: string,
): Promise<AppliedSchedules> {
  const out: AppliedSchedules = { created: [], updated: [], deleted: [] };
  const labels = searchAttributeLabels(loaded);
  const { installation } = loaded.config;
  const wanted = new Set<string>();
  for (const site of loaded.config.sites) {
    for (const policy of site.policies) {
      const scheduleId = scheduleIdFor(site.name, policy.name, installation);
      wanted.add(scheduleId);
      const [hour, minute] = policy.nightly.split(':').map(Number) as [number, number];
      const spec = { calendars: [{ hour, minute }], timezone: policy.timezone };
      const action = {
        type: 'startWorkflow' as const,
        workflowType: 'fleetProtection',
        workflowId: scheduledFleetWorkflowId(policy.name, installation),
        taskQueue,
        args: [{ site: site.name, policy: policy.name, requestedBy: `schedule:${scheduleId}`, done: [] }],
        typedSearchAttributes: new TypedSearchAttributes([
          { key: KuraKind, value: JobKind.Fleet },
          { key: KuraTarget, value: labels.value(policy.name) },
          { key: KuraSite, value: labels.value(site.name) },
        ]),
        memo: labels.memo,
      };
      out[await upsertSchedule(client, scheduleId, spec, action)].push(scheduleId);
    }
  }
  const sites = new Set(loaded.config.sites.map((s) => s.name));
  for await (const s of client.schedule.list()) {
    // Another installation's schedules of a site of the same name are not this one's to delete.
    const parsed = parseScheduleId(s.scheduleId);
    if (parsed?.installation === installation && sites.has(parsed.site) && !wanted.has(s.scheduleId)) {
      await client.schedule.getHandle(s.scheduleId).delete();
      out.deleted.push(s.scheduleId);
    }
  }
  return out;
}

type ScheduleCreate = Parameters<Client['schedule']['create']>[0];

/**
 * Creates the schedule, or updates it in place when it exists (its spec and action replaced, its
 * overlapping runs skipped): Kura's schedules are applied again and again from kura.yaml, so one
 * apply is the same as many. Says which it did.
 */
export async function upsertSchedule(
  client: Client,
  scheduleId: string,
  spec: ScheduleCreate['spec'],
  action: ScheduleCreate['action'],
): Promise<'created' | 'updated'> {
  const handle = client.schedule.getHandle(scheduleId);
  try {
    await handle.describe();
    await handle.update((prev) => ({
      ...prev,
      spec,
      action,
      policies: { ...prev.policies, overlap: ScheduleOverlapPolicy.SKIP },
    }));
    return 'updated';
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    await client.schedule.create({
      scheduleId,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
    });
    return 'created';
  }
}

/**
 * Kura's schedules on the namespace, with their next and last runs: those of one installation when
 * it is named, else those of every installation.
 */
export async function listSchedules(client: Client, installation?: string): Promise<ScheduleRow[]> {
  const rows: ScheduleRow[] = [];
  for await (const s of client.schedule.list()) {
    if (!isKuraScheduleId(s.scheduleId)) continue;
    if (installation !== undefined && parseScheduleId(s.scheduleId)?.installation !== installation) continue;
    rows.push({
      scheduleId: s.scheduleId,
      next: s.info.nextActionTimes[0]?.toISOString() ?? '',
      paused: s.state.paused,
      recent: s.info.recentActions.at(-1)?.takenAt.toISOString() ?? '',
    });
  }
  return rows;
}

/**
 * The schedule of a policy of kura.yaml (in the named site, default the first); NotFound for a
 * site or policy kura.yaml does not have. Needs no connection, so a caller can check before it
 * connects.
 */
export function policyScheduleId(loaded: LoadedConfig, policy: string, siteName?: string): string {
  const site = findSite(loaded.config, siteName);
  if (!site.policies.some((p) => p.name === policy))
    throw new NotFoundError(
      `no policy "${policy}" in site ${site.name}; policies: ${site.policies.map((p) => p.name).join(', ') || '(none)'}`,
    );
  return scheduleIdFor(site.name, policy, loaded.config.installation);
}
