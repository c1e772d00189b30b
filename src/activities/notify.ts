/**
 * Telling people, from the `kura-control` queue: every notification is an event of the feed
 * (`kura events`), recorded in the catalog and posted to the webhook when one is configured.
 */
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { Catalog } from '../catalog/store';
import { EventKind, EventKindSchema } from '../domain/events';
import { parseWith } from '../domain/validate';
import { activityEventKey, EventFeed } from './events';

const NotifyInput = z.object({
  subject: z.string().min(1),
  detail: z.record(z.string(), z.unknown()),
  /** What the notification is about (default: a job that failed or needs a person). */
  kind: EventKindSchema.default(EventKind.JobFailure),
});

/** Creates the notify activity bound to one configuration's events feed and webhook. */
export function createNotifyActivities(deps: { loaded: LoadedConfig; catalog: Catalog }) {
  const feed = new EventFeed(deps);

  return {
    /** Tells people a job failed or needs them: an event in the feed, and a webhook post when configured. */
    async notify(input: {
      subject: string;
      detail: Record<string, unknown>;
      kind?: EventKind;
    }): Promise<{ delivered: boolean; seq: number }> {
      const n = parseWith(NotifyInput, input, 'notification');
      const { info } = Context.current();
      const str = (k: string) => (typeof n.detail[k] === 'string' ? (n.detail[k] as string) : undefined);
      const { event, delivered } = await feed.publish({
        key: activityEventKey(info),
        at: new Date().toISOString(),
        kind: n.kind,
        subject: n.subject,
        site: str('site'),
        type: str('type'),
        device: str('device'),
        job: str('workflowId') ?? info.workflowExecution?.workflowId,
        detail: n.detail,
      });
      return { delivered, seq: event.seq };
    },
  };
}
