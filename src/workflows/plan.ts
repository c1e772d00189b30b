/**
 * Pure planning of SAN operations (seed 003 step 3): how a volume is cut into pieces and which
 * steps run in which order. Deterministic, so workflows can call it and tests can check it alone.
 */
import { DISK_LIBRARY, type PieceRecord } from '../domain/catalog';
import type { PlanStep, StepStatus } from '../domain/jobs';

export interface PiecePlan {
  piece: number;
  /** Byte offset within the volume, and length. */
  offset: number;
  length: number;
}

/** Cuts `sizeBytes` into pieces of at most `pieceSize` bytes, in order. */
export function planPieces(sizeBytes: number, pieceSize: number): PiecePlan[] {
  if (sizeBytes <= 0) return [];
  const pieces: PiecePlan[] = [];
  for (let offset = 0, piece = 0; offset < sizeBytes; offset += pieceSize, piece++) {
    pieces.push({ piece, offset, length: Math.min(pieceSize, sizeBytes - offset) });
  }
  return pieces;
}

/**
 * The chunk size of a copy (seed 004 step 3050: 100 MB as 10 × 10 MB): the one asked for, or the
 * volume cut into `chunks` equal parts rounded up to 4 KiB.
 */
export function chunkSizeFor(sizeBytes: number, chunks: number, chunkSize?: number): number {
  if (chunkSize !== undefined) return chunkSize;
  const even = Math.ceil(sizeBytes / Math.max(1, chunks));
  return Math.max(4096, Math.ceil(even / 4096) * 4096);
}

/**
 * The FC zone of one stream of a job: a name the fabric accepts, derived from the job id alone so
 * a retried step sets (and a compensation removes) the same zone.
 */
export function zoneName(job: string, stream: number): string {
  return `kura-${jobHash(job)}-s${stream}`;
}

/**
 * A short name derived from a job id alone (16 hex digits), for things the job creates on devices
 * — zones, snapshots — so a retried step names the same thing and its compensation finds it.
 */
export function jobHash(job: string): string {
  // Two 32-bit FNV-1a hashes with different offsets: 64 bits, so concurrent jobs never share a name.
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < job.length; i++) {
    const c = job.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193) >>> 0;
  }
  return `${a.toString(16).padStart(8, '0')}${b.toString(16).padStart(8, '0')}`;
}

/** A step as the plan first shows it: pending, with its dependencies. */
export function step(id: string, title: string, actor: string, dependsOn: string[] = []): PlanStep {
  return { id, title, actor, dependsOn, status: 'pending' };
}

/**
 * The execution schedule of a backup over `streams` streams (seed 004 Figs. 7–8 and 11–12):
 * reserve them all, zone each path and mount each cartridge, copy the chunks — in failover mode
 * one chain of chunks that moves to the next stream on a fault (`copy:<chunk>`), in parallel mode
 * one chain per stream (`copy:<stream>:<chunk>`) — read back to verify, record in the catalog,
 * write the catalog onto each cartridge, unmount, unzone, release.
 */
export function planBackupSteps(
  target: string,
  pieces: PiecePlan[],
  streams = 1,
  mode: 'failover' | 'parallel' = 'failover',
): PlanStep[] {
  const all = Array.from({ length: streams }, (_, s) => s);
  const loads = all.map((s) =>
    step(`load:${s}`, `zone the path of stream ${s} and mount its cartridge`, 'switch, tape library', ['reserve']),
  );
  const chain = (prefix: string, after: string[], on: string) =>
    pieces.map((p, i) =>
      step(
        `${prefix}${p.piece}`,
        `copy chunk ${p.piece} of ${target} (${p.length} bytes at ${p.offset}) ${on}`,
        'copy device',
        i === 0 ? after : [`${prefix}${p.piece - 1}`],
      ),
    );
  const copies =
    mode === 'parallel'
      ? all.flatMap((s) => chain(`copy:${s}:`, [`load:${s}`], `on stream ${s}`))
      : chain(
          'copy:',
          loads.map((l) => l.id),
          'on the first healthy stream',
        );
  const lastCopies =
    mode === 'parallel'
      ? all.map((s) => (pieces.length ? `copy:${s}:${pieces.length - 1}` : `load:${s}`))
      : [pieces.length ? `copy:${pieces.length - 1}` : 'load:0'];
  return [
    step(
      'reserve',
      `reserve ${streams} disjoint stream${streams === 1 ? '' : 's'}: backup server, library, drive, cartridge, switch path`,
      'resource pool',
    ),
    ...loads,
    ...copies,
    step('verify', 'read every piece back, check its checksum, hash the whole image', 'copy device', lastCopies),
    step('record', 'record every piece and stream in the catalog and mark the backup complete', 'catalog', ['verify']),
    step('tape-catalog', "write each cartridge's catalog rows onto it, after its data", 'tape library', ['record']),
    step('unload', 'unmount the cartridges and remove the zones', 'tape library, switch', ['tape-catalog']),
    step('release', 'release the streams', 'resource pool', ['unload']),
  ];
}

/** The pieces a restore reads from one cartridge during one mount. */
export interface Mount {
  library: string;
  tape: string;
  pieces: PieceRecord[];
}

/** Consecutive pieces (in piece order) on the same cartridge share one mount. */
export function groupByTape(pieces: PieceRecord[]): Mount[] {
  const mounts: Mount[] = [];
  for (const p of [...pieces].sort((a, b) => a.piece - b.piece)) {
    const last = mounts[mounts.length - 1];
    if (last && last.tape === p.tape && last.library === p.library) last.pieces.push(p);
    else mounts.push({ library: p.library, tape: p.tape, pieces: [p] });
  }
  return mounts;
}

/**
 * The execution schedule of a restore (seed 004 steps 2040–2110): per mount, reserve the
 * cartridge with a drive, server and path, load it, read its pieces in order, unload, release;
 * then verify the whole image and move it into place. Pieces on disk backup storage are read
 * straight from the image, with nothing to reserve or mount. Mounts are numbered from
 * `firstIndex`; the first step depends on `after` (the last step done before, when re-planning).
 */
export function planRestoreSteps(mounts: Mount[], destination: string, firstIndex = 0, after?: string): PlanStep[] {
  const steps: PlanStep[] = [];
  let prev = after;
  const add = (id: string, title: string, actor: string) => {
    steps.push(step(id, title, actor, prev === undefined ? [] : [prev]));
    prev = id;
  };
  mounts.forEach((m, k) => {
    const i = firstIndex + k;
    if (m.library === DISK_LIBRARY) {
      for (const p of m.pieces) add(`read:${p.piece}`, `read piece ${p.piece} from ${p.tape} on disk`, 'control');
      return;
    }
    add(`reserve:${i}`, `reserve ${m.library}/${m.tape} with a drive, server and path`, 'resource pool');
    add(`load:${i}`, `mount ${m.tape}`, 'tape library');
    for (const p of m.pieces) add(`read:${p.piece}`, `read piece ${p.piece} at position ${p.position}`, 'copy device');
    add(`unload:${i}`, `unmount ${m.tape}`, 'tape library');
    add(`release:${i}`, 'release the stream', 'resource pool');
  });
  add('finish', `verify the image and move it to ${destination}`, 'control');
  return steps;
}

/**
 * The plan after mount `index` was given up: that mount's steps that did not finish keep their
 * outcome under a name tagged with the cartridge (`read:5@L1T001`), so the new steps for the same
 * pieces are told apart from them; then the remaining mounts from `index + 1`, and `finish`.
 */
export function replanRestore(
  steps: PlanStep[],
  index: number,
  abandoned: Mount,
  remaining: Mount[],
  destination: string,
): PlanStep[] {
  const own = new Set([
    `reserve:${index}`,
    `load:${index}`,
    `unload:${index}`,
    `release:${index}`,
    ...abandoned.pieces.map((p) => `read:${p.piece}`),
  ]);
  const kept = steps
    .filter((s) => s.id !== 'finish' && !(own.has(s.id) && s.status === 'pending'))
    .map((s) =>
      own.has(s.id) && s.status !== 'done'
        ? { ...s, id: `${s.id}@${abandoned.tape}`, status: s.status === 'failed' ? s.status : ('skipped' as const) }
        : s,
    );
  const lastDone = [...kept].reverse().find((s) => s.status === 'done')?.id;
  return [...kept, ...planRestoreSteps(remaining, destination, index + 1, lastDone)];
}

/** Returns a copy of the steps with one step's status (and times) changed. */
export function markStep(steps: PlanStep[], id: string, status: StepStatus, at: string, detail?: string): PlanStep[] {
  return steps.map((s) => {
    if (s.id !== id) return s;
    const next: PlanStep = { ...s, status };
    if (status === 'running') next.startedAt = at;
    if (status === 'done' || status === 'failed' || status === 'skipped') next.endedAt = at;
    if (detail !== undefined) next.detail = detail;
    return next;
  });
}
