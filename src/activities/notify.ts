/** Telling people, from the `kura-control` queue: a log line, and a webhook post when configured. */
import { log } from '@temporalio/activity';
import type { LoadedConfig } from '../config/load';

/** Creates the notify activity bound to one configuration's webhook. */
export function createNotifyActivities(deps: { loaded: LoadedConfig }) {
  const { loaded } = deps;

  return {
    /** Tells people a job failed or needs them: a log line, and a webhook post when configured. */
    async notify(input: { subject: string; detail: Record<string, unknown> }): Promise<{ delivered: boolean }> {
      log.warn(`kura: ${input.subject}`, input.detail);
      const url = loaded.config.notify.webhook;
      if (!url) return { delivered: false };
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ subject: input.subject, ...input.detail }),
          signal: AbortSignal.timeout(10_000),
        });
        return { delivered: res.ok };
      } catch (err) {
        log.warn(`kura: webhook ${url} did not take the notification`, { error: String(err) });
        return { delivered: false };
      }
    },
  };
}
