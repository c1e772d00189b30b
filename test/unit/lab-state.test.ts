import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/domain/errors';
import { parseAfter } from '../../src/domain/faults';
import { LabState } from '../../src/lab/state';

const dirs: string[] = [];
const open: LabState[] = [];

async function stateFile(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-state-'));
  dirs.push(dir);
  return path.join(dir, 'lab', 'state.db');
}

function openState(file: string): LabState {
  const s = new LabState(file);
  open.push(s);
  return s;
}

afterEach(async () => {
  for (const s of open.splice(0)) s.close();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('parseAfter', () => {
  it('reads percentages of the volume', () => {
    expect(parseAfter('50%')).toEqual({ percent: 50 });
    expect(parseAfter('12.5 %')).toEqual({ percent: 12.5 });
    expect(parseAfter('0%')).toEqual({ percent: 0 });
  });

  it('reads byte positions with or without units', () => {
    expect(parseAfter('0')).toEqual({ bytes: 0 });
    expect(parseAfter('1048576')).toEqual({ bytes: 1048576 });
    expect(parseAfter('64MiB')).toEqual({ bytes: 64 * 1024 * 1024 });
  });

  it('refuses anything else with InvalidInputError showing the accepted forms', () => {
    expect(() => parseAfter('half')).toThrow(InvalidInputError);
    expect(() => parseAfter('half')).toThrow(
      '--after "half" is neither a percentage nor a byte position; write e.g. 50% (of the volume), 0, 1048576 or 64MiB',
    );
    expect(() => parseAfter('150%')).toThrow(/more than 100%/);
    expect(() => parseAfter('-5')).toThrow(InvalidInputError);
  });
});

describe('LabState faults', () => {
  it('adds a fault with an id, a creation time, no firings and once=false by default', async () => {
    const s = openState(await stateFile());
    const f = s.addFault({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 50 } });
    expect(f).toMatchObject({
      id: 1,
      device: 'lib-01-drv-1',
      kind: 'fail',
      after: { percent: 50 },
      once: false,
      triggered: 0,
    });
    expect(Date.parse(f.createdAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(f.rateBytesPerSec).toBeUndefined();
    const slow = s.addFault({ device: 'cpd-01', kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 4096, once: true });
    expect(s.listFaults()).toEqual([f, slow]);
  });

  it('refuses an invalid fault with InvalidInputError naming the field', async () => {
    const s = openState(await stateFile());
    expect(() => s.addFault({ device: 'cpd-01', kind: 'explode' as 'fail', after: { bytes: 0 } })).toThrow(
      InvalidInputError,
    );
    expect(() => s.addFault({ device: 'cpd-01', kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 0 })).toThrow(
      /rateBytesPerSec/,
    );
    expect(() => s.addFault({ device: 'cpd-01', kind: 'fail', after: { percent: 101 } })).toThrow(
      /the fault to add is not valid/,
    );
    expect(s.listFaults()).toEqual([]);
  });

  it('returns only the faults of the devices asked about', async () => {
    const s = openState(await stateFile());
    s.addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 0 } });
    s.addFault({ device: 'L1T001', kind: 'hang', after: { percent: 10 } });
    s.addFault({ device: 'fcsw-02', kind: 'fail', after: { bytes: 0 } });
    expect(s.faultsFor(['L1T001', 'bks-01', 'cpd-01']).map((f) => f.device)).toEqual(['bks-01', 'L1T001']);
    expect(s.faultsFor([])).toEqual([]);
  });

  it('counts firings of a persistent fault and deletes a once fault when it fires', async () => {
    const s = openState(await stateFile());
    const keep = s.addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 0 } });
    const once = s.addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 0 }, once: true });
    expect(s.markTriggered(keep.id)).toBe(true);
    expect(s.markTriggered(keep.id)).toBe(true);
    expect(s.markTriggered(once.id)).toBe(true);
    expect(s.listFaults().map((f) => [f.id, f.triggered])).toEqual([[keep.id, 2]]);
    expect(s.markTriggered(once.id)).toBe(false);
  });

  it('clears the faults of one device, or all, and says how many', async () => {
    const s = openState(await stateFile());
    s.addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 0 } });
    s.addFault({ device: 'bks-01', kind: 'slow', after: { bytes: 0 } });
    s.addFault({ device: 'bks-02', kind: 'fail', after: { bytes: 0 } });
    expect(s.clearFaults('bks-01')).toBe(2);
    expect(s.listFaults().map((f) => f.device)).toEqual(['bks-02']);
    expect(s.clearFaults()).toBe(1);
    expect(s.listFaults()).toEqual([]);
  });
});

describe('LabState events and drives', () => {
  it('records events in order and filters them by device, kind and sequence', async () => {
    const s = openState(await stateFile());
    s.recordEvent('lib-01-drv-1', 'load', { tape: 'L1T001' });
    s.recordEvent('lib-01-drv-2', 'load', { tape: 'L1T002' });
    s.recordEvent('lib-01-drv-1', 'unload');
    const all = s.events();
    expect(all.map((e) => [e.seq, e.device, e.event, e.detail])).toEqual([
      [1, 'lib-01-drv-1', 'load', { tape: 'L1T001' }],
      [2, 'lib-01-drv-2', 'load', { tape: 'L1T002' }],
      [3, 'lib-01-drv-1', 'unload', {}],
    ]);
    expect(s.events({ device: 'lib-01-drv-1' }).map((e) => e.seq)).toEqual([1, 3]);
    expect(s.events({ event: 'load' }).map((e) => e.seq)).toEqual([1, 2]);
    expect(s.events({ since: 1, device: 'lib-01-drv-1' }).map((e) => e.seq)).toEqual([3]);
  });

  it('remembers which cartridge each drive holds, per site', async () => {
    const s = openState(await stateFile());
    expect(s.driveContents('hospital', 'lib-01-drv-1')).toBeNull();
    s.setDriveContents('hospital', 'lib-01-drv-1', 'L1T001');
    s.setDriveContents('clinic', 'lib-01-drv-1', 'L1T009');
    expect(s.driveContents('hospital', 'lib-01-drv-1')).toBe('L1T001');
    expect(s.driveHolding('hospital', 'L1T001')).toBe('lib-01-drv-1');
    s.setDriveContents('hospital', 'lib-01-drv-1', 'L1T003');
    expect(s.driveContents('hospital', 'lib-01-drv-1')).toBe('L1T003');
    s.setDriveContents('hospital', 'lib-01-drv-1', null);
    expect(s.driveContents('hospital', 'lib-01-drv-1')).toBeNull();
    expect(s.driveContents('clinic', 'lib-01-drv-1')).toBe('L1T009');
  });

  it('refuses a damaged row with InvalidInputError telling how to recover', async () => {
    const file = await stateFile();
    openState(file).addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 0 } });
    const raw = new Database(file);
    raw.prepare("UPDATE faults SET kind = 'explode'").run();
    raw.close();
    const s = openState(file);
    expect(() => s.listFaults()).toThrow(InvalidInputError);
    expect(() => s.listFaults()).toThrow(/holds an invalid fault 1 .*`kura lab fault clear`/);
  });
});

describe('LabState across processes', () => {
  it('uses WAL and a schema version, and keeps data across reopening', async () => {
    const file = await stateFile();
    const a = openState(file);
    a.addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 0 } });
    a.close();
    open.splice(open.indexOf(a), 1);
    const raw = new Database(file, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(5);
    raw.close();
    expect(openState(file).listFaults()).toHaveLength(1);
  });

  it('sees at once what another connection wrote', async () => {
    const file = await stateFile();
    const a = openState(file);
    const b = openState(file);
    a.addFault({ device: 'cpd-02', kind: 'hang', after: { bytes: 0 } });
    expect(b.faultsFor(['cpd-02'])).toHaveLength(1);
    b.clearFaults();
    expect(a.listFaults()).toEqual([]);
  });

  it('lets several processes create and write the same new file at once', async () => {
    const file = await stateFile();
    const script = path.join(path.dirname(path.dirname(file)), 'writer.ts');
    await writeFile(
      script,
      `import { LabState } from ${JSON.stringify(path.resolve('src/lab/state.ts'))};\n` +
        `const s = new LabState(${JSON.stringify(file)});\n` +
        `for (let i = 0; i < 25; i++) { s.addFault({ device: 'dev-' + process.argv[2], kind: 'fail', after: { bytes: i } }); s.recordEvent('dev', 'tick'); }\n` +
        `s.close();\n`,
    );
    const tsx = path.resolve('node_modules/.bin/tsx');
    await Promise.all([1, 2, 3, 4].map((n) => promisify(execFile)(tsx, [script, String(n)])));
    const s = openState(file);
    expect(s.listFaults()).toHaveLength(100);
    expect(new Set(s.listFaults().map((f) => f.device))).toEqual(new Set(['dev-1', 'dev-2', 'dev-3', 'dev-4']));
    expect(s.events({ event: 'tick' })).toHaveLength(100);
  }, 30_000);
});
