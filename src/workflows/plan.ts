/**
 * Pure planning of SAN operations (seed 003 step 3): how a volume is cut into pieces and which
 * steps run in which order. Deterministic, so workflows can call it and tests can check it alone.
 */
import type { PieceRecord } from '../domain/catalog';
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

/** A step as the plan first shows it: pending, with its dependencies. */
export function step(id: string, title: string, actor: string, dependsOn: string[] = []): PlanStep {
  return { id, title, actor, dependsOn, status: 'pending' };
}

/**
 * The execution schedule of a one-stream backup: reserve a stream, mount a cartridge, copy each
 * piece in order, read them back to verify, unmount, record the pieces in the catalog, release.
 */
export function planBackupSteps(target: string, pieces: PiecePlan[]): PlanStep[] {
  const copies = pieces.map((p, i) =>
    step(`copy:${p.piece}`, `copy piece ${p.piece} of ${target} (${p.length} bytes at ${p.offset})`, 'copy device', [i === 0 ? 'load' : `copy:${p.piece - 1}`]),
  );
  const lastCopy = copies.length ? (copies[copies.length - 1] as PlanStep).id : 'load';
  return [
    step('reserve', 'reserve a stream: backup server, library, drive, cartridge, switch path', 'resource pool'),
    step('load', 'mount the cartridge in the drive', 'tape library', ['reserve']),
    ...copies,
    step('verify', 'read every piece back, check its checksum, hash the whole image', 'copy device', [lastCopy]),
    step('unload', 'unmount the cartridge', 'tape library', ['verify']),
    step('record', 'record every piece in the catalog and mark the backup complete', 'catalog', ['unload']),
    step('release', 'release the stream', 'resource pool', ['record']),
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
 * then verify the whole image and move it into place.
 */
export function planRestoreSteps(mounts: Mount[], destination: string): PlanStep[] {
  const steps = mounts.flatMap((m, i) => {
    const reads = m.pieces.map((p, j) => step(`read:${p.piece}`, `read piece ${p.piece} at position ${p.position}`, 'copy device', [j ? `read:${m.pieces[j - 1]?.piece}` : `load:${i}`]));
    return [
      step(`reserve:${i}`, `reserve ${m.library}/${m.tape} with a drive, server and path`, 'resource pool', i ? [`release:${i - 1}`] : []),
      step(`load:${i}`, `mount ${m.tape}`, 'tape library', [`reserve:${i}`]),
      ...reads,
      step(`unload:${i}`, `unmount ${m.tape}`, 'tape library', [reads[reads.length - 1]?.id ?? `load:${i}`]),
      step(`release:${i}`, 'release the stream', 'resource pool', [`unload:${i}`]),
    ];
  });
  return [...steps, step('finish', `verify the image and move it to ${destination}`, 'control', mounts.length ? [`release:${mounts.length - 1}`] : [])];
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
