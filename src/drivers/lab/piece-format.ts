/**
 * The on-tape format of a piece in the lab: a NUL-padded JSON header block of PIECE_HEADER_BYTES
 * in front of the piece's data, and the checks a reader makes before it trusts what follows.
 */
import type { FileHandle } from 'node:fs/promises';
import { z } from 'zod';
import { ChecksumMismatchError, InvalidInputError } from '../../domain/errors';
import { PieceHeaderSchema } from '../../domain/catalog';
import { jsonBlock, parseBlock } from '../../lab/files';
import { PIECE_HEADER_BYTES, type PieceHeader, type TapeAddress } from '../types';

/** The header block as written on the cartridge: the PieceHeader, a kind tag, and the volume size. */
export const TapePieceHeaderSchema = PieceHeaderSchema.extend({
  kind: z.literal('kura-piece'),
  /**
   * Size of the whole volume the piece was cut from. Not part of PieceHeader; recorded so a read
   * can place percentage faults on the same volume bytes as the write did.
   */
  volumeSize: z.number().int().min(0).optional(),
});
export type TapePieceHeader = z.infer<typeof TapePieceHeaderSchema>;

/** The NUL-padded header block written in front of a piece. */
export function pieceHeaderBlock(header: PieceHeader, volumeSize: number): Buffer {
  const value: TapePieceHeader = {
    kind: 'kura-piece',
    backupId: header.backupId,
    target: header.target,
    job: header.job,
    copy: header.copy,
    piece: header.piece,
    offset: header.offset,
    sizeBytes: header.sizeBytes,
    dataTime: header.dataTime,
    volumeSize,
  };
  const parsed = TapePieceHeaderSchema.safeParse(value);
  if (!parsed.success)
    throw new InvalidInputError(
      `the piece header is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const size = Buffer.byteLength(JSON.stringify(value), 'utf8');
  if (size > PIECE_HEADER_BYTES) {
    throw new InvalidInputError(
      `the piece header of ${header.backupId} takes ${size} bytes as JSON, more than the ${PIECE_HEADER_BYTES}-byte header block; shorten the backup id, target or job`,
    );
  }
  return jsonBlock(value, PIECE_HEADER_BYTES);
}

/**
 * The header of the piece at `source.position`, which must be the expected piece and be whole on
 * the cartridge; ChecksumMismatchError saying what is there instead.
 */
export async function expectPieceAt(
  tape: FileHandle,
  endOfData: number,
  source: TapeAddress & { position: number },
  expect: Pick<PieceHeader, 'backupId' | 'piece' | 'sizeBytes'>,
): Promise<TapePieceHeader> {
  const where = `tape ${source.tape} of library ${source.library}`;
  const found =
    source.position + PIECE_HEADER_BYTES <= endOfData ? await readHeaderAt(tape, source.position) : undefined;
  if (
    found === undefined ||
    found.backupId !== expect.backupId ||
    found.piece !== expect.piece ||
    found.sizeBytes !== expect.sizeBytes
  ) {
    throw new ChecksumMismatchError(
      `${where} holds ${found === undefined ? 'no piece header' : `piece ${found.piece} of ${found.backupId} (${found.sizeBytes} bytes)`} at position ${source.position}, ` +
        `not piece ${expect.piece} of ${expect.backupId} (${expect.sizeBytes} bytes); the catalog and the cartridge disagree — check the catalog row or read another copy`,
      { library: source.library, tape: source.tape, position: source.position, found: found ?? null },
    );
  }
  const dataStart = source.position + PIECE_HEADER_BYTES;
  if (dataStart + found.sizeBytes > endOfData) {
    throw new ChecksumMismatchError(
      `piece ${found.piece} of ${found.backupId} at position ${source.position} of ${where} is incomplete: ${Math.max(0, endOfData - dataStart)} of ${found.sizeBytes} bytes are on the tape; read another copy`,
      { library: source.library, tape: source.tape, position: source.position },
    );
  }
  return found;
}

/** The piece header at a position of an open cartridge, or undefined when there is none. */
export async function readHeaderAt(fh: FileHandle, position: number): Promise<TapePieceHeader | undefined> {
  const block = Buffer.alloc(PIECE_HEADER_BYTES);
  const { bytesRead } = await fh.read(block, 0, PIECE_HEADER_BYTES, position);
  if (bytesRead < PIECE_HEADER_BYTES) return undefined;
  return parseBlock(block, TapePieceHeaderSchema);
}

/** Whether the header on the tape is the very one a copy would write (so data behind it may be kept). */
export function sameHeader(a: TapePieceHeader, b: PieceHeader): boolean {
  return (
    a.backupId === b.backupId &&
    a.target === b.target &&
    a.job === b.job &&
    a.copy === b.copy &&
    a.piece === b.piece &&
    a.offset === b.offset &&
    a.sizeBytes === b.sizeBytes &&
    a.dataTime === b.dataTime
  );
}
