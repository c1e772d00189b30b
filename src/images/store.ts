/**
 * Kura's image store (store 33 of seed 001): the data images of each VM's data volume (the K most
 * recent kept), its startup-guarantee image and its software image — real files under
 * `<home>/images/<site>/<vm>/`, indexed with their size and SHA-256 in a small SQLite file.
 */
import type Database from 'better-sqlite3';
import { z } from 'zod';
import * as path from 'node:path';
import { openDatabase } from '../stack/sqlite';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import { ImageRecordSchema, type ImageKind, type ImageRecord } from '../domain/ladder';

/** Schema versions, applied in order; never edit a shipped entry, append. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE images (
     image_id TEXT PRIMARY KEY,
     site TEXT NOT NULL,
     vm TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('data', 'guarantee', 'software')),
     file TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE INDEX images_vm ON images(site, vm, kind, created_at);`,
];

interface Row {
  image_id: string;
  site: string;
  vm: string;
  kind: string;
  file: string;
  size_bytes: number;
  sha256: string;
  created_at: string;
}

/** Where the image store of a Kura home lives. */
export function imageStoreDir(home: string): string {
  return path.join(home, 'images');
}

/** The image index. One per process; SQLite's WAL lets workers and the CLI share it. */
export class ImageStore {
  private readonly db: Database.Database;
  readonly dir: string;

  constructor(home: string) {
    this.dir = imageStoreDir(home);
    this.db = openDatabase(path.join(this.dir, 'index.db'), MIGRATIONS, { busyTimeoutMs: 5000 });
  }

  /** The file an image of this id is kept in. */
  fileFor(site: string, vm: string, imageId: string): string {
    return path.join(this.dir, site, vm, `${imageId.replace(/[^A-Za-z0-9._-]/g, '_')}.img`);
  }

  /** Records an image whose file is complete and verified; recording the same id again is a no-op. */
  add(record: ImageRecord): ImageRecord {
    const r = ImageRecordSchema.parse(record);
    this.db
      .prepare(
        'INSERT INTO images (image_id, site, vm, kind, file, size_bytes, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_id) DO NOTHING',
      )
      .run(r.imageId, r.site, r.vm, r.kind, r.file, r.sizeBytes, r.sha256, r.createdAt);
    return this.get(r.imageId);
  }

  /** One image; NotFoundError when the index has no such id. */
  get(imageId: string): ImageRecord {
    const row = this.db.prepare('SELECT * FROM images WHERE image_id = ?').get(imageId) as Row | undefined;
    if (!row)
      throw new NotFoundError(
        `no image ${imageId} in the image store (${this.dir}); a VM's images are the files in ${path.join(this.dir, '<site>', '<vm>')}`,
        { imageId },
      );
    return this.toRecord(row);
  }

  /** Whether an image of this id is recorded. */
  has(imageId: string): boolean {
    return this.db.prepare('SELECT 1 FROM images WHERE image_id = ?').get(imageId) !== undefined;
  }

  /** A VM's images of one kind, newest first. */
  list(site: string, vm: string, kind: ImageKind): ImageRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM images WHERE site = ? AND vm = ? AND kind = ? ORDER BY created_at DESC, image_id DESC')
      .all(site, vm, kind) as Row[];
    return rows.map((r) => this.toRecord(r));
  }

  /** Forgets an image (its file is the caller's to delete). */
  remove(imageId: string): void {
    this.db.prepare('DELETE FROM images WHERE image_id = ?').run(imageId);
  }

  close(): void {
    this.db.close();
  }

  private toRecord(r: Row): ImageRecord {
    const parsed = ImageRecordSchema.safeParse({
      imageId: r.image_id,
      site: r.site,
      vm: r.vm,
      kind: r.kind,
      file: r.file,
      sizeBytes: r.size_bytes,
      sha256: r.sha256,
      createdAt: r.created_at,
    });
    if (!parsed.success) {
      throw new InvalidInputError(
        `the image index ${path.join(this.dir, 'index.db')} holds an invalid row for ${r.image_id} (${z.prettifyError(parsed.error)}); remove the row or the index file`,
      );
    }
    return parsed.data;
  }
}
