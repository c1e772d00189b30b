/**
 * The resource pool of one site (seed 004, tables 420–470): an entity workflow that grants
 * disjoint backup streams all or nothing, queues waiting requests first come first served, and
 * keeps its tables across continue-as-new.
 */
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  patched,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { z } from 'zod';
import { ErrorType } from '../domain/errors';
import { acceptInput } from './failures';
import {
  MarkRequestSchema,
  PoolTablesSchema,
  ReleaseRequestSchema,
  ReserveRequestSchema,
  type Grant,
  type PoolTables,
  type ReserveRequestParsed,
} from '../domain/pool';
import { markDeviceSignal, releaseUpdate, reserveStreamsUpdate, syncInventorySignal, tablesQuery } from '../messages';
import { JobKind, KuraKind, KuraSite } from '../search-attributes';
import {
  allocate,
  blockedByUnavailable,
  couldEverAllocate,
  grantFor,
  mark,
  mergeInventory,
  release,
  summarize,
  unavailableMessage,
} from '../domain/pool-tables';
import { label } from './labels';

/**
 * Marks the runs in which a request that does not wait for unavailable devices fails as soon as only
 * they stand in its way; earlier runs waited for them, and replay must see them wait.
 */
const FAIL_ON_UNAVAILABLE_PATCH = 'fail-on-unavailable';

/** Default history length after which the pool continues as new (well below Temporal's 51,200). */
export const DEFAULT_MAX_HISTORY_EVENTS = 2000;

/**
 * A place in the first-come queue. While an update waits, its entry is live; an entry handed over
 * through continue-as-new has no update behind it and only keeps its job's place until `until`
 * (the same job asking again takes it over).
 */
export const QueuedRequestSchema = z.object({
  job: z.string().min(1),
  /** When the job joined the queue (ISO 8601, workflow time). */
  since: z.string(),
  /** When its wait ends (ISO 8601, workflow time). */
  until: z.string(),
});
export type QueuedRequest = z.infer<typeof QueuedRequestSchema>;

export const ResourcePoolInputSchema = z.object({
  site: z.string().min(1),
  tables: PoolTablesSchema,
  queue: z.array(QueuedRequestSchema).optional(),
  maxHistoryEvents: z.number().int().min(10).optional(),
});
export type ResourcePoolInput = z.infer<typeof ResourcePoolInputSchema>;

/** The pool of one site; runs forever, continuing as new with its tables when history grows. */
export async function resourcePool(input: ResourcePoolInput): Promise<never> {
  const req = acceptInput(ResourcePoolInputSchema, input, 'resource pool input');
  const { site } = req;
  const maxHistoryEvents = req.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  let tables: PoolTables = req.tables;
  const queue: QueuedRequest[] = [...(req.queue ?? [])];
  /** Live reserve updates per queued job (a retried activity may send a second one for the same job). */
  const waiters: Record<string, number> = {};
  /** Jobs that released while still queued: their waiting updates give up. */
  const withdrawn: Record<string, true> = {};

  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Pool },
    { key: KuraSite, value: label(site) },
  ]);

  /**
   * Every change of the tables goes through here. Handlers run one at a time and each change is
   * made without an await between reading and writing the tables, so changes never interleave.
   */
  const commit = (next: PoolTables) => {
    tables = next;
    publish();
  };
  const publish = () => setCurrentDetails(`${summarize(tables)}, ${queue.length} waiting`);

  /** How many queue entries are ahead of the job (its own index, or the queue length if absent). */
  const ahead = (job: string) => {
    const i = queue.findIndex((e) => e.job === job);
    return i < 0 ? queue.length : i;
  };
  const leaveQueue = (job: string) => {
    const i = queue.findIndex((e) => e.job === job);
    if (i >= 0) queue.splice(i, 1);
  };

  setHandler(tablesQuery, () => tables);

  setHandler(markDeviceSignal, (raw) => {
    const req = MarkRequestSchema.safeParse(raw);
    if (!req.success) {
      log.warn('mark-device ignored: invalid request', { error: z.prettifyError(req.error) });
      return;
    }
    const result = mark(tables, req.data);
    if (!result.ok) {
      log.warn(`mark-device ignored: ${result.error}`);
      return;
    }
    commit(result.tables);
  });

  setHandler(syncInventorySignal, (raw) => {
    const fresh = PoolTablesSchema.safeParse(raw);
    if (!fresh.success) {
      log.warn('sync-inventory ignored: invalid tables', { error: z.prettifyError(fresh.error) });
      return;
    }
    commit(mergeInventory(tables, fresh.data));
  });

  setHandler(
    releaseUpdate,
    (raw) => {
      const req = ReleaseRequestSchema.parse(raw);
      const out = release(tables, req.job, req.tapeUsage);
      if (waiters[req.job]) withdrawn[req.job] = true;
      commit(out.tables);
      return { released: out.released };
    },
    { validator: (raw) => void acceptInput(ReleaseRequestSchema, raw, 'release request') },
  );

  setHandler(reserveStreamsUpdate, (raw) => reserve(ReserveRequestSchema.parse(raw)), {
    validator: (raw) => void acceptInput(ReserveRequestSchema, raw, 'reservation request'),
  });

  /**
   * Takes the devices for the request if its streams can be formed now; else says what is lacking.
   * A declaration, not a const: buffered Updates run as soon as their handler is set, above.
   */
  function tryGrant(req: ReserveRequestParsed): { grant: Grant } | { missing: string } {
    const now = allocate(tables, req);
    if (!now.ok) return { missing: now.missing };
    leaveQueue(req.job);
    commit(now.tables);
    return { grant: now.grant };
  }

  /**
   * Steps 1020–1070: grant now if nobody waits ahead and the devices are there; otherwise wait in
   * line (strictly first come, first served, so a large request is not starved by small ones) until
   * this job is at the head and its streams can be formed, or fail with what is lacking (1180).
   */
  async function reserve(req: ReserveRequestParsed): Promise<Grant> {
    const held = grantFor(tables, req.job);
    if (held) return held;

    // A restore names its cartridge and, unless asked to wait, must not sit in the queue for a
    // device only an operator can bring back: it fails at once so it can try another copy.
    const waitsForUnavailable = req.waitForUnavailable ?? req.tape === undefined;
    const failsOnUnavailable = !waitsForUnavailable && patched(FAIL_ON_UNAVAILABLE_PATCH);
    const failIfOnlyUnavailableBlock = () => {
      const block = failsOnUnavailable ? blockedByUnavailable(tables, req) : undefined;
      if (block)
        throw ApplicationFailure.create({
          message: unavailableMessage(req, block),
          type: ErrorType.NoResources,
          nonRetryable: true,
          details: [block],
        });
    };

    if (ahead(req.job) === 0) {
      const now = tryGrant(req);
      if ('grant' in now) return now.grant;
      failIfOnlyUnavailableBlock();
      if (req.waitMs === 0) throw noResources(now.missing);
    } else {
      failIfOnlyUnavailableBlock();
      if (req.waitMs === 0)
        throw noResources(
          `${queue.length} earlier request${queue.length === 1 ? ' is' : 's are'} waiting for resources (first: job ${queue[0]?.job}); ask with waitMs > 0 to queue behind them`,
        );
    }

    const ever = couldEverAllocate(tables, req);
    if (!ever.ok)
      throw noResources(
        `waiting cannot help, even with every device of site ${site} free and available: ${ever.missing}`,
      );

    const startedAt = Date.now();
    const deadline = startedAt + req.waitMs;
    const mine = queue.find((e) => e.job === req.job);
    if (mine) mine.until = new Date(Math.max(Date.parse(mine.until), deadline)).toISOString();
    else
      queue.push({ job: req.job, since: new Date(startedAt).toISOString(), until: new Date(deadline).toISOString() });
    waiters[req.job] = (waiters[req.job] ?? 0) + 1;
    publish();
    try {
      for (;;) {
        const remaining = deadline - Date.now();
        const woke =
          remaining > 0 &&
          (await condition(
            () =>
              withdrawn[req.job] === true ||
              grantFor(tables, req.job) !== undefined ||
              (ahead(req.job) === 0 && allocate(tables, req).ok) ||
              // A device marked unavailable while this request waits for busy ones.
              (failsOnUnavailable && blockedByUnavailable(tables, req) !== undefined),
            remaining,
          ));
        if (withdrawn[req.job])
          throw noResources(`job ${req.job} released its request while it was waiting; nothing was granted`);
        const already = grantFor(tables, req.job);
        if (already) return already;
        // Re-check after the await: another handler may have taken the devices in between. At the
        // deadline a last attempt is made too, so devices freed at that very moment are not wasted.
        if (ahead(req.job) === 0) {
          const now = tryGrant(req);
          if ('grant' in now) return now.grant;
          failIfOnlyUnavailableBlock();
          if (!woke)
            throw noResources(
              `waited ${seconds(Date.now() - startedAt)} for resources without success: ${now.missing}`,
            );
        }
        failIfOnlyUnavailableBlock();
        if (!woke) {
          const position = ahead(req.job);
          throw noResources(
            `waited ${seconds(Date.now() - startedAt)} for resources without success (still ${position} request${position === 1 ? '' : 's'} ahead in the queue)`,
          );
        }
      }
    } finally {
      const left = (waiters[req.job] ?? 1) - 1;
      if (left > 0) waiters[req.job] = left;
      else {
        delete waiters[req.job];
        delete withdrawn[req.job];
        leaveQueue(req.job);
      }
      publish();
    }
  }

  publish();

  // Continue as new only with an empty queue: a waiting update belongs to this run and cannot be
  // handed over, so the pool lets the line drain first.
  const shouldRoll = () => {
    const info = workflowInfo();
    return queue.length === 0 && (info.continueAsNewSuggested || info.historyLength > maxHistoryEvents);
  };
  for (;;) {
    const expiry = nextExpiry(queue, waiters);
    if (expiry === undefined) await condition(shouldRoll);
    else await condition(shouldRoll, Math.max(1, expiry - Date.now()));
    dropExpiredPlaces(queue, waiters);
    if (shouldRoll()) break;
  }
  await condition(allHandlersFinished);
  return continueAsNew<typeof resourcePool>({ site, tables, queue, maxHistoryEvents });
}

function noResources(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorType.NoResources);
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** Earliest end of a handed-over place that has no update waiting behind it. */
function nextExpiry(queue: QueuedRequest[], waiters: Record<string, number>): number | undefined {
  const ends = queue.filter((e) => !waiters[e.job]).map((e) => Date.parse(e.until));
  return ends.length === 0 ? undefined : Math.min(...ends);
}

function dropExpiredPlaces(queue: QueuedRequest[], waiters: Record<string, number>): void {
  for (let i = queue.length - 1; i >= 0; i--) {
    const e = queue[i] as QueuedRequest;
    if (!waiters[e.job] && Date.parse(e.until) <= Date.now()) queue.splice(i, 1);
  }
}
