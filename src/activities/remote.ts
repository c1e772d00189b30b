/**
 * The activities of async remote copy, each on the queue of the site it acts at: at the main site
 * the set-up copy, the shipper, the loss measured at failover and the failback's resync; at the
 * remote site the applier (the receiver on the far end of the WAN) and the promotion at failover.
 * Each validates its input, is idempotent, and the long ones heartbeat their progress.
 */
import { Context, log } from '@temporalio/activity';
import { copyFile, open } from 'node:fs/promises';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { resolveRemoteGroup, type ResolvedRemoteGroup } from '../config/remote';
import { GroupJournal } from '../datapath/group-journal';
import { parseWith } from '../domain/validate';
import type { FailbackReport, Lag } from '../domain/remote';
import { Replica, RESYNC_BLOCK_BYTES, blocksOfWrite } from '../remote/replica';
import { Receiver } from '../remote/receiver';
import { loadRemoteSecret, remoteSecretFile } from '../remote/secret';
import { ship } from '../remote/shipper';
import { mapFailures } from './failures';

const GroupRefSchema = z.object({ group: z.string().min(1) });
const ShipSchema = GroupRefSchema.extend({ roundMs: z.number().int().positive() });
const ApplySchema = ShipSchema.extend({ applyPauseMs: z.number().int().nonnegative().default(0) });
const LossSchema = GroupRefSchema.extend({ appliedSeq: z.number().int().nonnegative() });

export interface RemoteActivityDeps {
  loaded: LoadedConfig;
  paths: KuraPaths;
}

/** How often the applier reports its applied seq. */
const APPLY_HEARTBEAT_MS = 500;

export function createRemoteActivities(deps: RemoteActivityDeps) {
  const resolve = (group: string): ResolvedRemoteGroup => resolveRemoteGroup(deps.loaded, deps.paths, group);
  const replicaOf = (r: ResolvedRemoteGroup) =>
    new Replica(
      r.group.name,
      r.replicaFile,
      Object.fromEntries(r.volumes.map((v) => [v.name, v.remoteFile])),
      Object.fromEntries(r.volumes.map((v) => [v.name, v.sizeBytes])),
    );
  const secret = () => loadRemoteSecret(remoteSecretFile(deps.loaded, deps.paths));

  return {
    /**
     * Set-up (main site): a remote copy that has applied nothing gets the main volumes whole, as of
     * the journal's last seq taken before the copy; the writes after it are shipped on top, so the
     * copy converges even with hosts writing meanwhile. Done once: a copy with an applied seq is left alone.
     */
    async remoteSetUp(input: unknown): Promise<{ baseSeq: number; copiedBytes: number }> {
      return mapFailures(async () => {
        const { group } = parseWith(GroupRefSchema, input, 'remote set-up input');
        const r = resolve(group);
        const journal = new GroupJournal(r.group.name, r.journalFile);
        const replica = replicaOf(r);
        try {
          const st = replica.state();
          if (st.applied > 0 || st.role === 'primary') return { baseSeq: st.applied, copiedBytes: 0 };
          const baseSeq = journal.lastSeq;
          let copiedBytes = 0;
          for (const v of r.volumes) {
            await copyFile(v.mainFile, v.remoteFile);
            const fh = await open(v.remoteFile, 'r+');
            await fh.sync();
            await fh.close();
            copiedBytes += v.sizeBytes;
            Context.current().heartbeat({ copiedBytes });
          }
          replica.initialise(baseSeq);
          return { baseSeq, copiedBytes };
        } finally {
          replica.close();
          journal.close();
        }
      });
    },

    /** The shipper (main site) for one round: returns the lag at its end; heartbeats it meanwhile. */
    async remoteShip(input: unknown): Promise<{ lag: Lag; batchesSent: number; resends: number }> {
      return mapFailures(async () => {
        const { group, roundMs } = parseWith(ShipSchema, input, 'remote ship input');
        const r = resolve(group);
        const rc = deps.loaded.config.remoteCopy;
        const journal = new GroupJournal(r.group.name, r.journalFile);
        try {
          const ctx = Context.current();
          const res = await ship({
            journal,
            receiverPort: r.group.receiverPort,
            secret: secret(),
            wan: rc.wan,
            faultsFile: r.faultsFile,
            durationMs: roundMs,
            batchEntries: rc.batchEntries,
            resendAfterMs: rc.resendAfter,
            signal: ctx.cancellationSignal,
            onProgress: (lag) => ctx.heartbeat(lag),
          });
          return { lag: res.lag, batchesSent: res.batchesSent, resends: res.resends };
        } finally {
          journal.close();
        }
      });
    },

    /**
     * The applier (remote site) for one round: finishes a batch a crash interrupted, receives on the
     * group's port, applies in seq order, and heartbeats the applied seq.
     */
    async remoteApply(input: unknown): Promise<{ applied: number }> {
      return mapFailures(async () => {
        const { group, roundMs, applyPauseMs } = parseWith(ApplySchema, input, 'remote apply input');
        const r = resolve(group);
        const key = secret();
        const replica = replicaOf(r);
        const receiver = new Receiver({
          replica,
          secret: key,
          port: r.group.receiverPort,
          log: (line) => log.warn(line),
          batch: deps.loaded.config.remoteCopy.batchEntries,
          pauseMs: applyPauseMs,
        });
        const ctx = Context.current();
        try {
          await receiver.listen();
          const deadline = Date.now() + roundMs;
          while (Date.now() < deadline && !ctx.cancellationSignal.aborted) {
            if (receiver.error) throw receiver.error;
            ctx.heartbeat({ applied: replica.state().applied });
            await new Promise((res) =>
              setTimeout(res, Math.min(APPLY_HEARTBEAT_MS, Math.max(1, deadline - Date.now()))),
            );
          }
          await receiver.close();
          if (receiver.error) throw receiver.error;
          return { applied: replica.state().applied };
        } finally {
          await receiver.close();
          replica.close();
        }
      });
    },

    /**
     * Failover, first (main site, when it answers): fences the main site's hosts off the group's
     * volumes, so nothing more is written there, and measures what the remote does not hold.
     */
    async remoteFence(input: unknown): Promise<{ mainSeq: number; lostWrites: number; lostBytes: number }> {
      return mapFailures(async () => {
        const { group, appliedSeq } = parseWith(LossSchema, input, 'remote fence input');
        const r = resolve(group);
        const journal = new GroupJournal(r.group.name, r.journalFile);
        try {
          journal.demote();
          const p = journal.pending(appliedSeq);
          return { mainSeq: journal.lastSeq, lostWrites: p.writes, lostBytes: p.bytes };
        } finally {
          journal.close();
        }
      });
    },

    /** Failover (remote site): applies whatever contiguous run arrived, and makes the remote copy the primary. */
    async remotePromote(input: unknown): Promise<{ applied: number }> {
      return mapFailures(async () => {
        const { group } = parseWith(GroupRefSchema, input, 'remote promote input');
        const replica = replicaOf(resolve(group));
        try {
          const ctx = Context.current();
          const applied = await replica.apply({ onBatch: (seq) => ctx.heartbeat({ applied: seq }) });
          replica.promote();
          return { applied };
        } finally {
          replica.close();
        }
      });
    },

    /**
     * Failback (main site): copies back only the blocks that differ — those written at the remote
     * site since the failover, and those the main site wrote but never shipped (lost at failover,
     * so the main site must lose them too) — then both sites agree on one seq and the main site is
     * the primary again. Re-running it after a crash copies the same blocks again.
     */
    async remoteFailback(input: unknown): Promise<FailbackReport> {
      return mapFailures(async () => {
        const { group } = parseWith(GroupRefSchema, input, 'remote failback input');
        const r = resolve(group);
        const journal = new GroupJournal(r.group.name, r.journalFile);
        const replica = replicaOf(r);
        try {
          const applied = replica.state().applied;
          const blocks = replica.changedBlocks();
          const add = (volume: string, b: number) => {
            const list = (blocks[volume] ??= []);
            if (!list.includes(b)) list.push(b);
          };
          for (let after = applied; ;) {
            const writes = journal.read(after, 1000);
            for (const w of writes) for (const b of blocksOfWrite(w.offset, w.length)) add(w.volume, b);
            const last = writes[writes.length - 1];
            if (!last) break;
            after = last.seq;
          }
          let count = 0;
          let bytes = 0;
          const buf = Buffer.alloc(RESYNC_BLOCK_BYTES);
          for (const v of r.volumes) {
            const list = blocks[v.name] ?? [];
            if (list.length === 0) continue;
            const from = await open(v.remoteFile, 'r');
            const to = await open(v.mainFile, 'r+');
            try {
              for (const b of list.sort((x, y) => x - y)) {
                const offset = b * RESYNC_BLOCK_BYTES;
                const n = Math.min(RESYNC_BLOCK_BYTES, v.sizeBytes - offset);
                if (n <= 0) continue;
                const { bytesRead } = await from.read(buf, 0, n, offset);
                await to.write(buf, 0, bytesRead, offset);
                count++;
                bytes += bytesRead;
              }
              await to.sync();
            } finally {
              await from.close();
              await to.close();
            }
            Context.current().heartbeat({ bytes });
          }
          const baseSeq = Math.max(journal.lastSeq, applied);
          journal.promote(baseSeq);
          replica.demote(baseSeq);
          return {
            group,
            blocks: count,
            bytes,
            totalBytes: r.volumes.reduce((s, v) => s + v.sizeBytes, 0),
            baseSeq,
            at: new Date().toISOString(),
          };
        } finally {
          replica.close();
          journal.close();
        }
      });
    },
  };
}

export type RemoteActivities = ReturnType<typeof createRemoteActivities>;
