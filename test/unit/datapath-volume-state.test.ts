/**
 * A volume's files on disk: the state file read back as written, a file that is not one refused
 * with InvalidInput, and the record of the last backup switched back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VolumeStateStore, type BackupState } from '../../src/datapath/volume-state';
import { InvalidInputError } from '../../src/domain/errors';
import { onlineBackupWorkflowId } from '../../src/api/workflow-ids';

const dirs: string[] = [];
function store(): VolumeStateStore {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kura-vstate-'));
  dirs.push(d);
  return new VolumeStateStore('array-01/vol-1', '/lab/volumes/vol-1.img', path.join(d, 'array-01'));
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const STATE: BackupState = {
  version: 1,
  mode: 'backup',
  phase: 'catch-up',
  backupId: onlineBackupWorkflowId('array-01', 'vol-1', '2025-01-01T00:00:00Z'),
  image: '/home/online/vol-1.img',
  switchedAt: '2025-01-01T00:00:00.000Z',
  baseCopiedBytes: 1048576,
  rounds: 3,
};

async function refusal(s: VolumeStateStore): Promise<InvalidInputError> {
  const err = await s.loadState().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidInputError);
  return err as InvalidInputError;
}

describe('the state file', () => {
  it('is named after the volume file in the state directory', () => {
    const s = store();
    expect([s.stateFile, s.lastFile, s.journalFile].map((f) => path.relative(path.dirname(f), f))).toEqual([
      'vol-1.img.state.json',
      'vol-1.img.last.json',
      'vol-1.img.journal',
    ]);
  });

  it('reads back what was saved, as one JSON object, with no temporary file left', async () => {
    const s = store();
    s.ensureDir();
    expect(await s.loadState()).toBeNull();
    await s.saveState(STATE);
    expect(await s.loadState()).toEqual(STATE);
    expect(readFileSync(s.stateFile, 'utf8')).toBe(JSON.stringify(STATE));
    expect(readdirSync(path.dirname(s.stateFile))).toEqual(['vol-1.img.state.json']);
    await s.saveState({ ...STATE, rounds: 4 });
    expect((await s.loadState())?.rounds).toBe(4);
  });

  it('is gone once removed: the volume is in passthrough', async () => {
    const s = store();
    s.ensureDir();
    await s.saveState(STATE);
    await s.removeState();
    expect(existsSync(s.stateFile)).toBe(false);
    expect(await s.loadState()).toBeNull();
  });

  it('refuses a file of another shape with InvalidInput, naming the problem and what to do', async () => {
    const s = store();
    s.ensureDir();
    writeFileSync(s.stateFile, JSON.stringify({ ...STATE, phase: 'quiescing' }));
    const err = await refusal(s);
    expect(err.type).toBe('InvalidInput');
    expect(err.message).toMatch(
      new RegExp(
        `^${s.stateFile.replace(/[.]/g, '\\.')} is not a datapath state file \\(.*"base-copy".*\\); move it away only if no backup of array-01/vol-1 was running$`,
      ),
    );
    expect(err.issues.map((i) => i.path)).toEqual(['phase']);
  });

  it('refuses a torn file that is not JSON with InvalidInput', async () => {
    const s = store();
    s.ensureDir();
    writeFileSync(s.stateFile, JSON.stringify(STATE).slice(0, 40));
    const err = await refusal(s);
    expect(err.message.startsWith(`${s.stateFile} is not a datapath state file (not JSON: `)).toBe(true);
    expect(err.message.endsWith('); move it away only if no backup of array-01/vol-1 was running')).toBe(true);
    expect(err.cause).toBeInstanceOf(SyntaxError);
  });
});

describe('the last backup switched back', () => {
  it('reads back what was saved, and nothing when there is none', async () => {
    const s = store();
    s.ensureDir();
    expect(await s.loadLast()).toBeNull();
    await s.saveLast({ backupId: 'b1', quiesceMs: 12.5 });
    expect(await s.loadLast()).toEqual({ backupId: 'b1', quiesceMs: 12.5 });
  });

  it('counts a file of another shape as none', async () => {
    const s = store();
    s.ensureDir();
    writeFileSync(s.lastFile, JSON.stringify({ backupId: 'b1' }));
    expect(await s.loadLast()).toBeNull();
  });

  it('counts a file torn by a crash (empty, or cut inside its JSON) as none', async () => {
    const s = store();
    s.ensureDir();
    writeFileSync(s.lastFile, '');
    expect(await s.loadLast()).toBeNull();
    writeFileSync(s.lastFile, '{"backupId":"b1","quiesc');
    expect(await s.loadLast()).toBeNull();
  });

  it('is replaced through a synced temporary file renamed over it, leaving no temporary file', async () => {
    const s = store();
    s.ensureDir();
    await s.saveLast({ backupId: 'b1', quiesceMs: 1 });
    // A temporary file left by a kill during an earlier save is overwritten, never read.
    writeFileSync(`${s.lastFile}.tmp`, '{"torn');
    await s.saveLast({ backupId: 'b2', quiesceMs: 2 });
    expect(JSON.parse(readFileSync(s.lastFile, 'utf8'))).toEqual({ backupId: 'b2', quiesceMs: 2 });
    expect(readdirSync(path.dirname(s.lastFile)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
