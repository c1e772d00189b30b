/**
 * What a volume of the datapath keeps on disk besides its journal: the state file, whose presence
 * is backup mode itself (ADR 013), and the record of the last backup switched back to passthrough.
 * Both are zod-validated when read; the state file is replaced atomically, one writer at a time.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { DatapathPhase } from '../domain/datapath';
import { InvalidInputError, type Issue } from '../domain/errors';
import { parseWith } from '../domain/validate';
import { Mutex } from './sync';

/** The state file, `<volume file>.state.json`: a backup in progress, from the switch to the switch back. */
export const BackupStateSchema = z.object({
  version: z.literal(1),
  mode: z.literal('backup'),
  phase: z.enum([DatapathPhase.BaseCopy, DatapathPhase.CatchUp]),
  backupId: z.string(),
  image: z.string(),
  switchedAt: z.string(),
  baseCopiedBytes: z.number().int(),
  rounds: z.number().int(),
});
export type BackupState = z.infer<typeof BackupStateSchema>;

/** `<volume file>.last.json`: the last backup switched back, so a finish retried after a restart knows it happened. */
export const LastBackupSchema = z.object({ backupId: z.string(), quiesceMs: z.number() });
export type LastBackup = z.infer<typeof LastBackupSchema>;

/** The files of one volume in its state directory, named after the volume's main storage file. */
export class VolumeStateStore {
  readonly stateFile: string;
  readonly lastFile: string;
  readonly journalFile: string;
  /** The state file is rewritten by the base copy and by control calls; one writer at a time. */
  private readonly lock = new Mutex();

  /**
   * @param name the export name, for messages
   * @param mainFile main storage; its base name names the files
   * @param stateDir where the files live
   */
  constructor(
    private readonly name: string,
    mainFile: string,
    private readonly stateDir: string,
  ) {
    const base = path.join(stateDir, path.basename(mainFile));
    this.stateFile = `${base}.state.json`;
    this.lastFile = `${base}.last.json`;
    this.journalFile = `${base}.journal`;
  }

  /** Creates the state directory when missing. */
  ensureDir(): void {
    mkdirSync(this.stateDir, { recursive: true });
  }

  /**
   * The backup in progress, or null in passthrough (no state file). A state file that is not one
   * is refused with InvalidInputError rather than guessed at: it may stand for a backup whose
   * journal holds acknowledged writes.
   */
  async loadState(): Promise<BackupState | null> {
    if (!existsSync(this.stateFile)) return null;
    let saved: unknown;
    try {
      saved = JSON.parse(await readFile(this.stateFile, 'utf8'));
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      throw this.notAStateFile(`not JSON: ${err.message}`, [], err);
    }
    try {
      return parseWith(BackupStateSchema, saved, `datapath state file ${this.stateFile}`);
    } catch (err) {
      if (!(err instanceof InvalidInputError)) throw err;
      throw this.notAStateFile(err.issues[0]?.message ?? err.message, err.issues, err);
    }
  }

  private notAStateFile(reason: string, issues: Issue[], cause: unknown): InvalidInputError {
    return new InvalidInputError(
      `${this.stateFile} is not a datapath state file (${reason}); move it away only if no backup of ${this.name} was running`,
      issues,
      cause,
    );
  }

  /** Replaces the state file atomically and durably: a crash leaves the old one or the new one, never a mix. */
  async saveState(state: BackupState): Promise<void> {
    const text = JSON.stringify(state);
    await this.lock.run(() => this.replace(this.stateFile, text));
  }

  /** Writes `text` to a temporary file, syncs it, renames it over `file` and syncs the directory. */
  private async replace(file: string, text: string): Promise<void> {
    const tmp = `${file}.tmp`;
    await writeFile(tmp, text);
    const fh = await open(tmp, 'r+');
    await fh.sync();
    await fh.close();
    await rename(tmp, file);
    const dir = await open(this.stateDir, 'r');
    await dir.sync().catch(() => undefined);
    await dir.close();
  }

  /** Removes the state file, after any write of it in progress: from here on the volume is in passthrough. */
  async removeState(): Promise<void> {
    await this.lock.run(() => rm(this.stateFile, { force: true }));
  }

  /** The last backup switched back, or null when there is none or the file does not hold one. */
  async loadLast(): Promise<LastBackup | null> {
    if (!existsSync(this.lastFile)) return null;
    const text = await readFile(this.lastFile, 'utf8');
    try {
      return parseWith(LastBackupSchema, JSON.parse(text), `last-backup file ${this.lastFile}`);
    } catch (err) {
      // It only answers retried finishes; a file of another shape, or one torn by a crash while an
      // earlier version wrote it in place, is as good as none.
      if (err instanceof InvalidInputError || err instanceof SyntaxError) return null;
      throw err;
    }
  }

  /** Replaces the record of the last backup switched back, atomically: a kill leaves the old or the new. */
  async saveLast(last: LastBackup): Promise<void> {
    await this.lock.run(() => this.replace(this.lastFile, JSON.stringify(last)));
  }

  /** Deletes the journal file: before a new backup's, or one left from a switch back that had reflected everything. */
  async removeJournal(): Promise<void> {
    await rm(this.journalFile, { force: true });
  }
}
