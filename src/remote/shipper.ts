/**
 * The main site's shipper of one remote-copy group: reads the group's journal after what the
 * remote acknowledged, sends it in batches across the WAN, several batches in flight, and trims
 * the journal as acknowledgements come back. Lost batches are sent again (go-back-N from the
 * acknowledged seq once the oldest batch in flight is overdue); the remote ignores what it already
 * has, so a resend is harmless. The host's writes never wait for any of this.
 */
import type { GroupJournal } from '../datapath/group-journal';
import type { Lag, WanSettings } from '../domain/remote';
import { WanLink } from '../lab/wan';
import { linkProof } from './secret';
import { FrameKind, batchFrame, frameBody, frameKind, parseAck, proofFrame } from './wire';

export interface ShipOptions {
  journal: GroupJournal;
  receiverPort: number;
  /** The link's shared secret: the receiver takes nothing from a shipper that cannot prove it. */
  secret: Buffer;
  wan: WanSettings;
  faultsFile: string;
  /** Ship for this long, then return. */
  durationMs: number;
  batchEntries: number;
  resendAfterMs: number;
  /** Batches in flight at most. */
  window?: number;
  signal?: AbortSignal;
  /** Called every few hundred ms and on each ack with the lag as it stands (an activity heartbeats it). */
  onProgress?: (lag: Lag) => void;
}

export interface ShipResult {
  lag: Lag;
  batchesSent: number;
  resends: number;
  connected: boolean;
}

/** Measures the lag: what the journal holds past the remote's acknowledgement. */
export function lagOf(journal: GroupJournal): Lag {
  const acked = journal.acked;
  const p = journal.pending(acked);
  const now = Date.now();
  return {
    mainSeq: journal.lastSeq,
    appliedSeq: acked,
    writes: p.writes,
    bytes: p.bytes,
    seconds: p.oldestAt === null ? 0 : Math.max(0, (now - p.oldestAt) / 1000),
    measuredAt: new Date(now).toISOString(),
  };
}

const TICK_MS = 10;
const RECONNECT_MS = 200;

/** Ships for `durationMs` (or until aborted) and returns the lag at the end. */
export async function ship(opts: ShipOptions): Promise<ShipResult> {
  const { journal } = opts;
  const window = opts.window ?? 8;
  const deadline = Date.now() + opts.durationMs;
  let link: WanLink | null = null;
  let nextAfter = journal.acked;
  const inflight: { last: number; sentAt: number }[] = [];
  let batchesSent = 0;
  let resends = 0;
  let connected = false;
  let lastProgress = 0;
  const progress = (force = false) => {
    const now = Date.now();
    if (!force && now - lastProgress < 250) return;
    lastProgress = now;
    opts.onProgress?.(lagOf(journal));
  };
  const onFrame = (f: Buffer) => {
    if (frameKind(f) !== FrameKind.Ack) return;
    const ack = parseAck(f);
    journal.ack(ack.applied);
    while (inflight.length && (inflight[0]?.last ?? 0) <= journal.acked) inflight.shift();
    if (nextAfter < journal.acked) nextAfter = journal.acked;
    progress(true);
  };
  try {
    while (Date.now() < deadline && !opts.signal?.aborted) {
      if (!link?.isOpen) {
        link = await WanLink.connect({
          port: opts.receiverPort,
          settings: opts.wan,
          faultsFile: opts.faultsFile,
          onFrame,
          greet: (hello) => {
            if (frameKind(hello) !== FrameKind.Hello) throw new Error('the receiver did not open with a hello');
            return proofFrame(linkProof(opts.secret, journal.group, frameBody(hello)));
          },
        }).catch(() => null);
        if (!link) {
          progress();
          await sleep(Math.min(RECONNECT_MS, Math.max(0, deadline - Date.now())));
          continue;
        }
        connected = true;
        // A new connection knows nothing of what the last one had in flight.
        inflight.length = 0;
        nextAfter = journal.acked;
      }
      const oldest = inflight[0];
      if (oldest && Date.now() - oldest.sentAt > opts.resendAfterMs) {
        resends += inflight.length;
        inflight.length = 0;
        nextAfter = journal.acked;
      }
      let sent = false;
      while (inflight.length < window) {
        const writes = journal.read(nextAfter, opts.batchEntries);
        const last = writes[writes.length - 1];
        if (!last) break;
        link.send(batchFrame(journal.group, writes));
        inflight.push({ last: last.seq, sentAt: Date.now() });
        nextAfter = last.seq;
        batchesSent++;
        sent = true;
      }
      progress();
      if (!sent) await sleep(TICK_MS);
      else await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    link?.close();
  }
  const lag = lagOf(journal);
  opts.onProgress?.(lag);
  return { lag, batchesSent, resends, connected };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
