/**
 * Publishing to the events feed (docs/adr/031): an event is recorded in the catalog first — the
 * durable feed `kura events` reads — then posted to the notify webhook when one is configured.
 */
import { log } from '@temporalio/activity';
import type { LoadedConfig } from '../config/load';
import type { Catalog } from '../catalog/store';
import type { FeedEvent, NewEvent } from '../domain/events';

/** The events feed of one installation: its catalog and its webhook. */
export class EventFeed {
  constructor(private readonly deps: { loaded: LoadedConfig; catalog: Catalog }) {}

  /**
   * Records the event (once per key) and posts it to the webhook. A webhook that fails loses
   * nothing: the event is in the feed, and the failure is logged. A retry posts again (at least once).
   */
  async publish(e: NewEvent): Promise<{ event: FeedEvent; delivered: boolean }> {
    const { event } = this.deps.catalog.recordEvent(e);
    log.warn(`kura: ${event.kind}: ${event.subject}`, { seq: event.seq, ...event.detail });
    return { event, delivered: await this.post(event) };
  }

  private async post(event: FeedEvent): Promise<boolean> {
    const url = this.deps.loaded.config.notify.webhook;
    if (!url) return false;
    const { detail, subject, ...head } = event;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        // The detail stays at the top level, as before the feed; the feed's own fields beside it.
        body: JSON.stringify({ subject, ...detail, event: head }),
        signal: AbortSignal.timeout(10_000),
      });
      return res.ok;
    } catch (err) {
      log.warn(`kura: webhook ${url} did not take event ${event.seq}`, { error: String(err) });
      return false;
    }
  }
}

/**
 * The key of an event published by the running activity: the same for each of its attempts, so a
 * retry does not record the event twice.
 */
export function activityEventKey(info: {
  workflowExecution?: { workflowId: string; runId: string };
  activityId: string;
}): string {
  const wf = info.workflowExecution;
  return wf ? `${wf.workflowId}/${wf.runId}/${info.activityId}` : `activity/${info.activityId}/${Date.now()}`;
}
