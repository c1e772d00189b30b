/**
 * Store backups recorded straight into a catalog, in the shape `storeBackupVolume` records them
 * (a backups row, one piece in library `store`, a store_backups row), for tests of what reads the
 * catalog (the estate report) without backing anything up.
 */
import type { Catalog } from '../../src/catalog/store';

/**
 * Records a complete store backup of `target` (site `hospital`) at `dataTime` and returns its id:
 * `sizeBytes` in chunks of 64 KiB, every byte read, `storedBytes` added (all of it unless given), one
 * chunk new, and `seconds` from its start (the data time) to its end.
 */
export function addStoreBackup(
  catalog: Catalog,
  b: {
    target: string;
    dataTime: string;
    sizeBytes: number;
    storedBytes?: number;
    seconds?: number;
    /** How it found its changed chunks; not recorded (as before migration 8) when omitted. */
    changedFrom?: 'bitmap' | 'digests' | 'full';
  },
): string {
  const backupId = `${b.target}@${b.dataTime}`;
  const startedAt = b.dataTime;
  const endedAt = new Date(Date.parse(b.dataTime) + (b.seconds ?? 0) * 1000).toISOString();
  catalog.beginBackup({
    backupId,
    job: 'j',
    site: 'hospital',
    target: b.target,
    array: 'a',
    volume: 'v',
    startedAt,
    dataTime: b.dataTime,
    sizeBytes: b.sizeBytes,
  });
  catalog.completeStoreBackup(
    backupId,
    {
      endedAt,
      sha256: null,
      pieces: [
        {
          backupId,
          copy: 0,
          piece: 0,
          target: b.target,
          job: 'j',
          stream: 0,
          startedAt,
          endedAt,
          dataTime: b.dataTime,
          library: 'store',
          tape: 'primary',
          position: 0,
          offset: 0,
          sizeBytes: b.sizeBytes,
          sha256: '0'.repeat(64),
        },
      ],
    },
    {
      store: 'primary',
      chunkSize: 65536,
      chunks: b.sizeBytes / 65536,
      newChunks: 1,
      storedBytes: b.storedBytes ?? b.sizeBytes,
      readBytes: b.sizeBytes,
      ...(b.changedFrom === undefined ? {} : { changedFrom: b.changedFrom, changeNote: b.changedFrom, readChunks: 1 }),
    },
  );
  return backupId;
}
