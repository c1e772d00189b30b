/**
 * The arrays' function software and the applications' hooks as activities (seed 003 step 4), run
 * on the `kura-control` queue: pairs created, waited on, split and resynchronised; snapshots taken
 * and deleted; backup mode entered and left. Each is idempotent — the array calls converge on the
 * same state when repeated — and the wait for a pair in sync heartbeats the copy's progress.
 */
import { Context, sleep } from '@temporalio/activity';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { Drivers, PairInfo, SnapshotInfo } from '../drivers/types';
import { hookOnHost } from '../drivers/hooks';
import type { HoldResult } from '../drivers/postgres-hook';
import { backupModeEnteredSignal, backupModeReleasedQuery } from '../messages';
import { ErrorType, KuraError } from '../domain/errors';
import { findSite } from '../config/targets';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';
import { volumeOfDevice } from './targets';

const VolumeRefInput = z.object({ site: z.string().min(1), array: z.string().min(1), volume: z.string().min(1) });
export type VolumeRefInput = z.infer<typeof VolumeRefInput>;

const WaitInput = z.object({
  ref: VolumeRefInput,
  /** Give up waiting (and answer `inSync: false`) after this long. */
  waitMs: z.number().int().min(0),
  pollMs: z.number().int().min(10).default(250),
});

const SnapshotInput = z.object({ ref: VolumeRefInput, name: z.string().min(1) });
const HookInput = z.object({ site: z.string().min(1), target: z.string().min(1) });
const HoldInput = HookInput.extend({
  /** Which hold of the operation this is: the engine enters backup mode anew after a lost session. */
  round: z.number().int().min(1),
  pollMs: z.number().int().min(10).max(5000).default(200),
});

/** What `applicationHook` answers: the kind, its begin timeout, and for a held session its heartbeat. */
export interface HookInfo {
  kind: string;
  timeoutMs: number;
  /** True when one activity holds the application's session from begin to end (`holdBackupMode`). */
  session?: boolean;
  heartbeatMs?: number;
}

/** Creates the array and hook activities bound to one worker's configuration and drivers. */
export function createArrayActivities(deps: { loaded: LoadedConfig; drivers: Pick<Drivers, 'arrays'> }) {
  const { loaded, drivers } = deps;
  const { arrays } = drivers;

  return {
    /** The volume's pair, or null when it has none (step 2 asks before it plans a split). */
    async pairOf(input: VolumeRefInput): Promise<PairInfo | null> {
      return mapFailures(async () => {
        const ref = parseWith(VolumeRefInput, input, 'volume');
        try {
          return await arrays.pairStatus(ref);
        } catch (err) {
          if (err instanceof KuraError && err.type === ErrorType.NotFound) {
            // An unknown array or volume is still NotFound; only a missing pair is an answer.
            const listed = await arrays.listPairs(ref.site, ref.array);
            if (!listed.some((p) => p.volume === ref.volume)) return null;
          }
          throw err;
        }
      });
    },

    async createPair(input: VolumeRefInput): Promise<PairInfo> {
      return mapFailures(async () => arrays.createPair(parseWith(VolumeRefInput, input, 'volume')));
    },

    /**
     * Waits until the pair is in sync, heartbeating the copy's progress; answers `inSync: false`
     * with the pair as it stands when `waitMs` passes first (the workflow re-plans then).
     */
    async waitPairInSync(input: z.input<typeof WaitInput>): Promise<{ inSync: boolean; pair: PairInfo }> {
      return mapFailures(async () => {
        const { ref, waitMs, pollMs } = parseWith(WaitInput, input, 'pair wait');
        const ctx = Context.current();
        const end = Date.now() + waitMs;
        for (;;) {
          const pair = await arrays.pairStatus(ref);
          ctx.heartbeat({ state: pair.state, bytes: pair.copiedBytes, total: pair.totalBytes });
          if (pair.state === 'in-sync') return { inSync: true, pair };
          if (pair.state === 'split')
            throw new KuraError(
              ErrorType.InvalidInput,
              `the pair of ${ref.array}/${ref.volume} is split; resynchronise it before waiting for it to be in sync`,
            );
          if (Date.now() >= end) return { inSync: false, pair };
          await sleep(Math.min(pollMs, Math.max(10, end - Date.now())));
        }
      });
    },

    async splitPair(input: VolumeRefInput): Promise<PairInfo> {
      return mapFailures(async () => arrays.splitPair(parseWith(VolumeRefInput, input, 'volume')));
    },

    async resyncPair(input: VolumeRefInput): Promise<PairInfo> {
      return mapFailures(async () => arrays.resyncPair(parseWith(VolumeRefInput, input, 'volume')));
    },

    async deletePair(input: VolumeRefInput): Promise<void> {
      return mapFailures(async () => arrays.deletePair(parseWith(VolumeRefInput, input, 'volume')));
    },

    async createSnapshot(input: z.input<typeof SnapshotInput>): Promise<SnapshotInfo> {
      return mapFailures(async () => {
        const { ref, name } = parseWith(SnapshotInput, input, 'snapshot');
        return arrays.createSnapshot(ref, name);
      });
    },

    async deleteSnapshot(input: z.input<typeof SnapshotInput>): Promise<void> {
      return mapFailures(async () => {
        const { ref, name } = parseWith(SnapshotInput, input, 'snapshot');
        return arrays.deleteSnapshot(ref, name);
      });
    },

    /** Every pair and snapshot of every array of a site, as the arrays report them now. */
    async listArrayFunctions(input: { site: string }): Promise<{ pairs: PairInfo[]; snapshots: SnapshotInfo[] }> {
      return mapFailures(async () => {
        const { site } = parseWith(z.object({ site: z.string().min(1) }), input, 'site');
        const names = findSite(loaded.config, site).arrays.map((a) => a.name);
        const pairs: PairInfo[] = [];
        const snapshots: SnapshotInfo[] = [];
        for (const array of names) {
          pairs.push(...(await arrays.listPairs(site, array)));
          snapshots.push(...(await arrays.listSnapshots(site, array)));
        }
        return { pairs, snapshots };
      });
    },

    /** Which hook the target's application has (`none` when kura.yaml gives it none), and its timeout. */
    async applicationHook(input: z.input<typeof HookInput>): Promise<HookInfo> {
      return mapFailures(async () => {
        const { site, target } = parseWith(HookInput, input, 'hook');
        const hook = await hookOnHost(loaded, site, target, volumeOfDevice(arrays, site));
        // A step hook answers exactly as before, so histories recorded before held sessions replay.
        if (!hook.session) return { kind: hook.kind, timeoutMs: hook.timeoutMs };
        return { kind: hook.kind, timeoutMs: hook.timeoutMs, session: true, heartbeatMs: hook.heartbeatMs };
      });
    },

    /**
     * Holds the target's application in backup mode (a `postgres` hook): logs in, starts the
     * backup, signals the workflow, heartbeats while it polls the workflow for the release of this
     * round, then stops the backup on the same session and answers what the stop returned. A
     * worker that dies here takes the session with it, and PostgreSQL aborts the backup.
     */
    async holdBackupMode(input: z.input<typeof HoldInput>): Promise<HoldResult> {
      return mapFailures(async () => {
        const { site, target, round, pollMs } = parseWith(HoldInput, input, 'backup-mode hold');
        const hook = await hookOnHost(loaded, site, target, volumeOfDevice(arrays, site));
        if (!hook.session)
          throw new KuraError(
            ErrorType.InvalidInput,
            `the ${hook.kind} hook of ${target} holds no session; enter and leave its backup mode with beginBackupMode and endBackupMode`,
          );
        const ctx = Context.current();
        const workflowId = ctx.info.workflowExecution?.workflowId;
        if (workflowId === undefined)
          throw new KuraError(ErrorType.InvalidInput, 'a backup-mode hold runs only inside the operation it holds for');
        const handle = ctx.client.workflow.getHandle(workflowId);
        return hook.holdBackupMode(`${workflowId} round ${round}`, {
          signal: ctx.cancellationSignal,
          pollMs,
          entered: (info) => handle.signal(backupModeEnteredSignal, { round, ...info }),
          // A query that cannot be answered now (no workflow worker for a moment) is not a release.
          released: () =>
            handle.query(backupModeReleasedQuery).then(
              (r) => r >= round,
              () => false,
            ),
          heartbeat: () => ctx.heartbeat({ round, held: true }),
        });
      });
    },

    /** Puts the target's application into backup mode; HookTimeout when it does not in time. */
    async beginBackupMode(input: z.input<typeof HookInput>): Promise<void> {
      return mapFailures(async () => {
        const { site, target } = parseWith(HookInput, input, 'hook');
        const hook = await hookOnHost(loaded, site, target, volumeOfDevice(arrays, site));
        if (hook.session) throw heldSession(hook.kind, target);
        await hook.beginBackupMode(Context.current().cancellationSignal);
      });
    },

    /** Takes the target's application out of backup mode. */
    async endBackupMode(input: z.input<typeof HookInput>): Promise<void> {
      return mapFailures(async () => {
        const { site, target } = parseWith(HookInput, input, 'hook');
        const hook = await hookOnHost(loaded, site, target, volumeOfDevice(arrays, site));
        if (hook.session) throw heldSession(hook.kind, target);
        await hook.endBackupMode(Context.current().cancellationSignal);
      });
    },
  };
}

export type ArrayActivities = ReturnType<typeof createArrayActivities>;

/** A session hook is entered and left only inside its hold: two separate calls could not share the session. */
function heldSession(kind: string, target: string): KuraError {
  return new KuraError(
    ErrorType.InvalidInput,
    `the ${kind} hook of ${target} holds one session from begin to end; its backup mode is entered and left by holdBackupMode`,
  );
}
