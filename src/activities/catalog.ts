/**
 * Catalog activities, run on the `kura-control` queue: a backup is begun, completed piece by
 * piece, or failed with what became of its streams, and a complete one is looked up for restore.
 */
import { z } from 'zod';
import type { Catalog } from '../catalog/store';
import {
  BackupModeSchema,
  NewBackupSchema,
  PieceRecordSchema,
  StreamRecordSchema,
  type BackupModeRecord,
  type BackupRecord,
  type NewBackup,
  type PieceRecord,
  type StreamRecord,
} from '../domain/catalog';
import { InvalidInputError } from '../domain/errors';
import { parseWith } from '../domain/validate';
import { mapFailures } from './failures';

const CompleteInput = z.object({
  backupId: z.string(),
  endedAt: z.string(),
  sha256: z.string().nullable(),
  pieces: z.array(PieceRecordSchema),
  streams: z.array(StreamRecordSchema).default([]),
  backupMode: BackupModeSchema.optional(),
});
const FailInput = z.object({
  backupId: z.string(),
  error: z.string(),
  endedAt: z.string(),
  streams: z.array(StreamRecordSchema).default([]),
});

/** Creates the catalog activities bound to one catalog. */
export function createCatalogActivities(deps: { catalog: Catalog }) {
  const { catalog } = deps;

  return {
    /** Records a running backup in the catalog (idempotent). */
    async beginBackup(input: NewBackup): Promise<BackupRecord> {
      return mapFailures(async () => catalog.beginBackup(parseWith(NewBackupSchema, input, 'backup record')));
    },

    /**
     * Records every piece and marks the backup complete, in one transaction, with the backup mode
     * its image was taken in (a PostgreSQL backup label) when there was one.
     */
    async completeBackup(input: {
      backupId: string;
      endedAt: string;
      sha256: string | null;
      pieces: PieceRecord[];
      streams?: StreamRecord[];
      backupMode?: BackupModeRecord;
    }): Promise<BackupRecord> {
      return mapFailures(async () => {
        const c = parseWith(CompleteInput, input, 'completed backup');
        return catalog.completeBackup(c.backupId, c);
      });
    },

    /** Marks a backup failed with the reason and what became of each of its streams. */
    async failBackup(input: {
      backupId: string;
      error: string;
      endedAt: string;
      streams?: StreamRecord[];
    }): Promise<void> {
      return mapFailures(async () => {
        const f = parseWith(FailInput, input, 'failed backup');
        catalog.failBackup(f.backupId, f.error, f.endedAt, f.streams);
      });
    },

    /** A complete backup, its pieces and streams; NotFound for an unknown id, InvalidInput when not complete. */
    async findBackup(input: {
      backupId: string;
    }): Promise<{ backup: BackupRecord; pieces: PieceRecord[]; streams: StreamRecord[] }> {
      return mapFailures(async () => {
        const backup = catalog.backup(input.backupId);
        if (backup.status !== 'complete') {
          throw new InvalidInputError(
            `backup ${backup.backupId} is ${backup.status}${backup.error ? ` (${backup.error})` : ''}; only complete backups can be restored — \`kura catalog list --target ${backup.target}\` shows the others`,
          );
        }
        return { backup, pieces: catalog.piecesOf(backup.backupId), streams: catalog.streamsOf(backup.backupId) };
      });
    },
  };
}
