/**
 * `kura events [--follow]`: the events feed (seed 003's central console) — every device fault and
 * job failure, read from the catalog, oldest first; `--follow` keeps printing new ones as they are
 * recorded, until Ctrl-C.
 */
import type { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import { Catalog } from '../catalog/store';
import type { FeedEvent } from '../domain/events';
import { InvalidInputError } from '../domain/errors';
import { print, type CliContext } from './context';

/** The most events one listing shows. */
const MAX_LIMIT = 100_000;

/** How often `--follow` looks for new events. */
const FOLLOW_POLL_MS = 500;

export function registerEventsCommand(program: Command, ctx: CliContext): void {
  program
    .command('events')
    .description('the feed of every device fault and job failure (also posted to notify.webhook), oldest first')
    .option(
      '--follow',
      'keep printing new events as they are recorded, until Ctrl-C (with --json: one JSON object a line)',
    )
    .option('--limit <n>', 'show the last n events before following', '50')
    .action(async (o: { follow?: boolean; limit: string }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
        throw new InvalidInputError(`--limit must be a whole number from 1 to ${MAX_LIMIT}, not "${o.limit}"`);
      const store = new Catalog(ctx.paths().catalog);
      try {
        const first = store.events({ limit });
        if (!o.follow) {
          print(ctx, first, () =>
            first.length === 0
              ? 'no events: no device fault and no job failure has been recorded'
              : first.map(renderEvent).join('\n'),
          );
          return;
        }
        let last = 0;
        const emit = (events: FeedEvent[]) => {
          for (const e of events) {
            process.stdout.write(`${ctx.json() ? JSON.stringify(e) : renderEvent(e)}\n`);
            last = e.seq;
          }
        };
        emit(first);
        for (;;) {
          await sleep(FOLLOW_POLL_MS);
          emit(store.events({ after: last, limit: 1000 }));
        }
      } finally {
        store.close();
      }
    });
}

/** One event on one line: number, time, kind, type, subject. */
function renderEvent(e: FeedEvent): string {
  return `#${e.seq} ${e.at} ${e.kind}${e.type ? ` ${e.type}` : ''}: ${e.subject}${e.job ? ` (${e.job})` : ''}`;
}
