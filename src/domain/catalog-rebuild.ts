/**
 * The catalog rebuilt from cartridges as a job (seed 004 step 1170's purpose): its request, what
 * its `progress` query answers while it reads, and the report it ends with.
 */
import { z } from 'zod';
import type { TapeCatalogEntry } from './catalog';
import { NameSchema } from './names';
import { IsoTimeSchema, JobTuningSchema } from './jobs';

export const CatalogRebuildRequestSchema = z.object({
  /** The site whose cartridges are read; its catalog rows are compared with what they say. */
  site: NameSchema,
  requestedBy: z.string().min(1),
  /** The request's instant; it names the workflow, so one request runs once. */
  requestedAt: IsoTimeSchema,
  tuning: JobTuningSchema,
  /**
   * A catalog file on the control worker's host (an absolute path) that the rebuilt entries are
   * merged into, created when missing — only when every cartridge was read, so a partial rebuild
   * is never written where a catalog is expected.
   */
  out: z.string().min(1).optional(),
});
export type CatalogRebuildRequest = z.input<typeof CatalogRebuildRequestSchema>;

/** Where a rebuild is: listing the cartridges, reading them, comparing, writing the file. */
export const RebuildPhase = {
  Accept: 'accept',
  Plan: 'plan',
  Read: 'read',
  Compare: 'compare',
  Write: 'write',
  Done: 'done',
  Failed: 'failed',
} as const;
export type RebuildPhase = (typeof RebuildPhase)[keyof typeof RebuildPhase];

/** A cartridge the rebuild could not have or read, with the typed failure that stopped it. */
export interface UnreadCartridge {
  library: string;
  tape: string;
  /** An ErrorType: NoResources (no drive, server or path could be had, or the cartridge itself), DeviceFault, … */
  type: string;
  message: string;
}

/** One library's pass over its cartridges, as the progress shows it. */
export interface LibraryProgress {
  library: string;
  /** Cartridges of this library done so far (read or given up), and in all. */
  done: number;
  total: number;
  /** `waiting` for its turn, `reading` a cartridge, `done` with every cartridge. */
  state: 'waiting' | 'reading' | 'done';
  /** The cartridge in hand and where: `L1T002 in lib-01-drv-1, read by bks-01`. */
  current?: string;
}

/** What the rebuild's `progress` query answers. */
export interface CatalogRebuildProgress {
  phase: RebuildPhase;
  /** What is happening now, one line. */
  activity: string;
  /** Cartridges read, cartridges given up (listed in `unread`), and cartridges in all. */
  cartridges: number;
  cartridgesTotal: number;
  entries: number;
  unread: UnreadCartridge[];
  libraries: LibraryProgress[];
  startedAt: string;
  error?: string;
}

/** The rebuild's result: what the cartridges say, and how that compares with the catalog. */
export interface CatalogRebuildReport {
  workflowId: string;
  site: string;
  /** Cartridges read, and cartridges of the site in all. */
  cartridges: number;
  cartridgesTotal: number;
  /** Every catalog entry read, cartridge by cartridge in library order. */
  entries: TapeCatalogEntry[];
  /** Complete backups the entries describe. */
  backups: number;
  /** Where the rebuilt contents differ from the catalog's, in words; empty when they are equal. */
  differences: string[];
  unread: UnreadCartridge[];
  /** The file the entries were merged into; null when none was asked for or a cartridge was not read. */
  file: string | null;
  startedAt: string;
  endedAt: string;
}
