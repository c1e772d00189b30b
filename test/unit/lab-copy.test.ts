import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../src/config/load';
import { kuraPaths, type KuraPaths } from '../../src/config/paths';
import type { KuraError } from '../../src/domain/errors';
import { ChecksumMismatchError, DeviceFaultError, InvalidInputError, TapeFullError } from '../../src/domain/errors';
import { ConfigSchema } from '../../src/domain/inventory';
import { LabCopyDevice } from '../../src/drivers/lab/copy';
import {
  PIECE_HEADER_BYTES,
  type CopyToTapeRequest,
  type ReadFromTapeRequest,
  type VerifyOnTapeRequest,
} from '../../src/drivers/types';
import { LABEL_BYTES, createLabFiles, labCartridgePath, labVolumePath } from '../../src/lab/files';
import { hospitalPreset } from '../../src/lab/preset';
import { LabState } from '../../src/lab/state';

const KiB = 1024;
const MiB = 1024 * KiB;
const VOLUME = 4 * MiB;
const BACKUP = 'vm-001@20261122T020000Z';
const DEVICES = ['bks-01', 'fcsw-01', 'lib-01', 'lib-01-drv-1', 'L1T001', 'cpd-01'];

interface Lab {
  loaded: LoadedConfig;
  paths: KuraPaths;
  state: LabState;
  copy: LabCopyDevice;
  dir: string;
  source: Buffer;
  tapeFile: string;
}

const labs: Lab[] = [];

/** A one-VM lab: vm-001-data is a 4 MiB volume; cartridges hold `capacity` bytes; 256 KiB chunks. */
async function makeLab(capacity = 64 * MiB): Promise<Lab> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-copy-'));
  const config = ConfigSchema.parse(
    hospitalPreset({
      vms: 1,
      hosts: 1,
      dataVolumeSize: VOLUME,
      softwareVolumeSize: 64 * KiB,
      cartridgesPerLibrary: 2,
      cartridgeCapacity: capacity,
    }),
  );
  const loaded: LoadedConfig = { config, file: path.join(dir, 'kura.yaml'), dir };
  const paths = kuraPaths(loaded);
  await createLabFiles(loaded, paths);
  const state = new LabState(paths.labState);
  // The cartridge the tests write to is mounted, as the tape library's load would leave it.
  state.setDriveContents('hospital', 'lib-01-drv-1', 'L1T001');
  const lab: Lab = {
    loaded,
    paths,
    state,
    dir,
    copy: new LabCopyDevice(loaded, paths, state, { chunkBytes: 256 * KiB }),
    source: await readFile(labVolumePath(paths, 'hospital', 'array-01', 'vm-001-data')),
    tapeFile: labCartridgePath(paths, 'hospital', 'lib-01', 'L1T001'),
  };
  labs.push(lab);
  return lab;
}

afterEach(async () => {
  for (const lab of labs.splice(0)) {
    lab.state.close();
    await rm(lab.dir, { recursive: true, force: true });
  }
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function toTape(p: {
  offset: number;
  length: number;
  position: number;
  piece?: number;
  resumeBytes?: number;
  job?: string;
}): CopyToTapeRequest {
  return {
    site: 'hospital',
    devices: DEVICES,
    source: { array: 'array-01', volume: 'vm-001-data', offset: p.offset, length: p.length, volumeSize: VOLUME },
    target: { site: 'hospital', library: 'lib-01', drive: 'lib-01-drv-1', tape: 'L1T001', position: p.position },
    header: {
      backupId: BACKUP,
      target: 'vm-001',
      job: p.job ?? 'job-1',
      copy: 0,
      piece: p.piece ?? 0,
      offset: p.offset,
      sizeBytes: p.length,
      dataTime: '2026-11-22T02:00:00.000Z',
    },
    resumeBytes: p.resumeBytes ?? 0,
  };
}

function fromTape(p: {
  position: number;
  piece: number;
  sizeBytes: number;
  dest: string;
  offset: number;
  resumeBytes?: number;
}): ReadFromTapeRequest {
  return {
    site: 'hospital',
    devices: DEVICES,
    source: { site: 'hospital', library: 'lib-01', drive: 'lib-01-drv-1', tape: 'L1T001', position: p.position },
    expect: { backupId: BACKUP, piece: p.piece, sizeBytes: p.sizeBytes },
    destination: { path: p.dest, offset: p.offset },
    resumeBytes: p.resumeBytes ?? 0,
  };
}

/** Runs the promise, expects it to fail with the given Kura error class, and returns the error. */
async function failure<T extends KuraError>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as T;
}

function recorder(): {
  seen: { bytes: number; total: number; at: number }[];
  fn: (p: { bytes: number; total: number }) => void;
} {
  const seen: { bytes: number; total: number; at: number }[] = [];
  return { seen, fn: (p) => seen.push({ ...p, at: Date.now() }) };
}

describe('LabCopyDevice: writing and reading pieces', () => {
  it('copies a volume as three pieces at successive positions and reads them back into an identical file', async () => {
    const lab = await makeLab();
    const cuts = [0, 1_500_001, 3_000_003, VOLUME];
    let position = LABEL_BYTES;
    const written: { position: number; offset: number; length: number; sha256: string }[] = [];
    for (let piece = 0; piece < 3; piece++) {
      const offset = cuts[piece]!;
      const length = cuts[piece + 1]! - offset;
      const r = await lab.copy.copyToTape(toTape({ offset, length, position, piece }), () => undefined);
      expect(r).toEqual({
        sha256: sha(lab.source.subarray(offset, offset + length)),
        bytes: length,
        position,
        nextPosition: position + PIECE_HEADER_BYTES + length,
        resumedBytes: 0,
      });
      written.push({ position, offset, length, sha256: r.sha256 });
      position = r.nextPosition;
    }
    expect((await stat(lab.tapeFile)).size).toBe(position);

    const dest = path.join(lab.dir, 'restores', 'vm-001-data.img');
    for (const [piece, w] of written.entries()) {
      const r = await lab.copy.readFromTape(
        fromTape({ position: w.position, piece, sizeBytes: w.length, dest, offset: w.offset }),
        () => undefined,
      );
      expect(r).toEqual({ sha256: w.sha256, bytes: w.length, resumedBytes: 0 });
    }
    expect(sha(await readFile(dest))).toBe(sha(lab.source));
  });

  it('reports progress after each chunk up to the piece size', async () => {
    const lab = await makeLab();
    const progress = recorder();
    await lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: LABEL_BYTES }), progress.fn);
    expect(progress.seen.map((p) => p.bytes)).toEqual([256, 512, 768, 1024].map((k) => k * KiB));
    expect(progress.seen.every((p) => p.total === MiB)).toBe(true);
  });

  it('records copy-start and copy-done events on the drive', async () => {
    const lab = await makeLab();
    const r = await lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: LABEL_BYTES }), () => undefined);
    const events = lab.state.events({ device: 'lib-01-drv-1' });
    expect(events.map((e) => e.event)).toEqual(['copy-start', 'copy-done']);
    expect(events[0]?.detail).toMatchObject({ position: LABEL_BYTES, resumeBytes: 0, tape: 'L1T001' });
    expect(events[1]?.detail).toMatchObject({ bytes: MiB, sha256: r.sha256 });
  });

  it('discards everything after the position it writes at, as a tape does', async () => {
    const lab = await makeLab();
    const first = await lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: LABEL_BYTES }), () => undefined);
    await lab.copy.copyToTape(
      toTape({ offset: MiB, length: MiB, position: first.nextPosition, piece: 1 }),
      () => undefined,
    );
    const again = await lab.copy.copyToTape(
      toTape({ offset: 0, length: 100_000, position: LABEL_BYTES, job: 'job-2' }),
      () => undefined,
    );
    expect((await stat(lab.tapeFile)).size).toBe(again.nextPosition);
    const dest = path.join(lab.dir, 'restores', 'gone.img');
    const err = await failure(
      lab.copy.readFromTape(
        fromTape({ position: first.nextPosition, piece: 1, sizeBytes: MiB, dest, offset: 0 }),
        () => undefined,
      ),
      ChecksumMismatchError,
    );
    expect(err.message).toMatch(/holds no piece header at position/);
  });

  it('writes into an existing destination at the offset without truncating it', async () => {
    const lab = await makeLab();
    const r = await lab.copy.copyToTape(toTape({ offset: MiB, length: MiB, position: LABEL_BYTES }), () => undefined);
    const dest = path.join(lab.dir, 'restores', 'existing.img');
    await mkdir(path.dirname(dest), { recursive: true });
    await writeFile(dest, Buffer.alloc(3 * MiB, 0xee));
    await lab.copy.readFromTape(
      fromTape({ position: LABEL_BYTES, piece: 0, sizeBytes: MiB, dest, offset: MiB }),
      () => undefined,
    );
    const out = await readFile(dest);
    expect(out.length).toBe(3 * MiB);
    expect(sha(out.subarray(MiB, 2 * MiB))).toBe(r.sha256);
    expect(out.subarray(0, MiB).every((b) => b === 0xee) && out.subarray(2 * MiB).every((b) => b === 0xee)).toBe(true);
  });
});

describe('LabCopyDevice: verifying an image read back from tape', () => {
  /** Writes the volume as three pieces and returns what verification needs. */
  async function writeThreePieces(lab: Lab) {
    const cuts = [0, 1_500_001, 3_000_003, VOLUME];
    let position = LABEL_BYTES;
    const pieces: VerifyOnTapeRequest['pieces'] = [];
    for (let piece = 0; piece < 3; piece++) {
      const offset = cuts[piece]!;
      const length = cuts[piece + 1]! - offset;
      const r = await lab.copy.copyToTape(toTape({ offset, length, position, piece }), () => undefined);
      pieces.push({
        source: { ...TAPE_ADDR, position },
        expect: { backupId: BACKUP, piece, sizeBytes: length },
        sha256: r.sha256,
      });
      position = r.nextPosition;
    }
    return { site: 'hospital', pieces };
  }

  it('returns the SHA-256 of the whole image across its pieces', async () => {
    const lab = await makeLab();
    const req = await writeThreePieces(lab);
    const progress = recorder();
    const r = await lab.copy.verifyOnTape(req, progress.fn);
    expect(r).toEqual({ sha256: sha(lab.source), bytes: VOLUME });
    expect(progress.seen.at(-1)).toMatchObject({ bytes: VOLUME, total: VOLUME });
  });

  it('refuses with ChecksumMismatchError naming the piece when a byte on the cartridge changed', async () => {
    const lab = await makeLab();
    const req = await writeThreePieces(lab);
    const fh = await open(lab.tapeFile, 'r+');
    const at = req.pieces[1]!.source.position + PIECE_HEADER_BYTES + 1000;
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, at);
    await fh.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, at);
    await fh.close();
    const err = await failure(
      lab.copy.verifyOnTape(req, () => undefined),
      ChecksumMismatchError,
    );
    expect(err.message).toMatch(
      new RegExp(`piece 1 of ${BACKUP} hashes to [0-9a-f]{64} but was written as ${req.pieces[1]!.sha256}`),
    );
  });
});

const TAPE_ADDR = { site: 'hospital', library: 'lib-01', drive: 'lib-01-drv-1', tape: 'L1T001' };

describe('LabCopyDevice: refusals', () => {
  it('refuses positions inside the label and past the end of data with InvalidInputError', async () => {
    const lab = await makeLab();
    const inLabel = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: 0 }), () => undefined),
      InvalidInputError,
    );
    expect(inLabel.message).toBe(
      'target.position must be a whole number of at least 512 (the first 512 bytes of a cartridge hold its label), not 0',
    );
    const gap = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: 4096 }), () => undefined),
      InvalidInputError,
    );
    expect(gap.message).toBe(
      'position 4096 is past the end of recorded data (512) on tape L1T001 of library lib-01; a tape is written in sequence, append at 512',
    );
  });

  it('refuses a range past the end of the volume and an empty range with InvalidInputError', async () => {
    const lab = await makeLab();
    const past = await failure(
      lab.copy.copyToTape(toTape({ offset: 3 * MiB, length: 2 * MiB, position: LABEL_BYTES }), () => undefined),
      InvalidInputError,
    );
    expect(past.message).toMatch(
      /runs past the end of volume array-01\/vm-001-data \(4194304 bytes\); ask for at most 1048576 bytes/,
    );
    await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: 0, position: LABEL_BYTES }), () => undefined),
      InvalidInputError,
    );
    expect((await stat(lab.tapeFile)).size).toBe(LABEL_BYTES);
  });

  it('throws TapeFullError naming the cartridge when the piece does not fit, leaving the tape as it was', async () => {
    const lab = await makeLab(5 * MiB);
    const first = await lab.copy.copyToTape(
      toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }),
      () => undefined,
    );
    const err = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: first.nextPosition, piece: 1 }), () => undefined),
      TapeFullError,
    );
    expect(err.message).toMatch(
      /^tape L1T001 of library lib-01 has no room for 1048576 bytes at position 4195328: it holds 5242880 bytes and 1047040 are left; use another cartridge$/,
    );
    expect(err.details).toMatchObject({ tape: 'L1T001', library: 'lib-01' });
    expect((await stat(lab.tapeFile)).size).toBe(first.nextPosition);
  });

  it('refuses to read when the header at the position is another piece, naming library, tape and position', async () => {
    const lab = await makeLab();
    await lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: LABEL_BYTES }), () => undefined);
    const dest = path.join(lab.dir, 'restores', 'x.img');
    const err = await failure(
      lab.copy.readFromTape(
        fromTape({ position: LABEL_BYTES, piece: 1, sizeBytes: MiB, dest, offset: 0 }),
        () => undefined,
      ),
      ChecksumMismatchError,
    );
    expect(err.message).toMatch(
      /^tape L1T001 of library lib-01 holds piece 0 of vm-001@20261122T020000Z \(1048576 bytes\) at position 512, not piece 1 of vm-001@20261122T020000Z \(1048576 bytes\)/,
    );
    expect(err.details).toMatchObject({ library: 'lib-01', tape: 'L1T001', position: 512 });
    await expect(stat(dest)).rejects.toThrow(/ENOENT/);
  });
});

describe('LabCopyDevice: only the mounted cartridge is written', () => {
  it('refuses to write to a cartridge that is not in the drive, and writes nothing', async () => {
    const lab = await makeLab();
    lab.state.setDriveContents('hospital', 'lib-01-drv-1', null);
    const err = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: LABEL_BYTES }), () => undefined),
      DeviceFaultError,
    );
    expect(err.message).toBe(
      'cartridge L1T001 is not in drive lib-01-drv-1 (the drive is empty); load it first — nothing was written',
    );
    expect((await stat(lab.tapeFile)).size).toBe(LABEL_BYTES);
  });

  it('stops writing when the cartridge leaves the drive in the middle of a copy', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'bks-01', kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 2 * MiB });
    const progress = recorder();
    const copying = failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), progress.fn),
      DeviceFaultError,
    );
    while ((progress.seen.at(-1)?.bytes ?? 0) < 256 * KiB) await new Promise((r) => setTimeout(r, 20));
    lab.state.setDriveContents('hospital', 'lib-01-drv-1', 'L1T002');
    const err = await copying;
    expect(err.message).toBe(
      'cartridge L1T001 left drive lib-01-drv-1 during the copy (L1T002 is in it); no more bytes are written to it',
    );
    expect((await stat(lab.tapeFile)).size).toBeLessThan(LABEL_BYTES + PIECE_HEADER_BYTES + VOLUME);
  });
});

describe('LabCopyDevice: injected faults', () => {
  it('a fail fault at 50% throws DeviceFaultError naming the device after writing exactly half', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 50 } });
    const progress = recorder();
    const err = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), progress.fn),
      DeviceFaultError,
    );
    expect(err.device).toBe('lib-01-drv-1');
    expect(err.message).toBe('lab fault on lib-01-drv-1: injected failure at volume byte 2097152');
    expect(err.retryable).toBe(true);
    expect(progress.seen.at(-1)?.bytes).toBe(VOLUME / 2);
    const tape = await readFile(lab.tapeFile);
    expect(tape.length).toBe(LABEL_BYTES + PIECE_HEADER_BYTES + VOLUME / 2);
    expect(sha(tape.subarray(LABEL_BYTES + PIECE_HEADER_BYTES))).toBe(sha(lab.source.subarray(0, VOLUME / 2)));
    expect(lab.state.listFaults()[0]?.triggered).toBe(1);
    expect(lab.state.events({ event: 'fault-fail' }).map((e) => [e.device, e.detail.volumeByte])).toEqual([
      ['lib-01-drv-1', VOLUME / 2],
    ]);
  });

  it('places the fault in the volume: a piece ending before it passes, a piece starting past it fails at once', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'cpd-01', kind: 'fail', after: { percent: 50 } });
    const first = await lab.copy.copyToTape(
      toTape({ offset: 0, length: VOLUME / 2, position: LABEL_BYTES }),
      () => undefined,
    );
    expect(first.bytes).toBe(VOLUME / 2);
    const progress = recorder();
    const err = await failure(
      lab.copy.copyToTape(
        toTape({ offset: 3 * MiB, length: MiB, position: first.nextPosition, piece: 1 }),
        progress.fn,
      ),
      DeviceFaultError,
    );
    expect(err.message).toBe('lab fault on cpd-01: injected failure at volume byte 3145728');
    expect(progress.seen).toEqual([]);
  });

  it('resumes after a partial write: same bytes, same checksum, and reports resumedBytes', async () => {
    const lab = await makeLab();
    const whole = sha(lab.source);
    lab.state.addFault({ device: 'L1T001', kind: 'fail', after: { bytes: 1_234_567 }, once: true });
    const progress = recorder();
    await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), progress.fn),
      DeviceFaultError,
    );
    const heartbeat = progress.seen.at(-1)?.bytes ?? 0;
    expect(heartbeat).toBe(1_234_567);

    const resumed = recorder();
    const r = await lab.copy.copyToTape(
      toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES, resumeBytes: heartbeat }),
      resumed.fn,
    );
    expect(r).toMatchObject({
      sha256: whole,
      bytes: VOLUME,
      resumedBytes: heartbeat,
      nextPosition: LABEL_BYTES + PIECE_HEADER_BYTES + VOLUME,
    });
    expect(resumed.seen[0]?.bytes).toBe(heartbeat);
    const tape = await readFile(lab.tapeFile);
    expect(tape.length).toBe(r.nextPosition);
    expect(sha(tape.subarray(LABEL_BYTES + PIECE_HEADER_BYTES))).toBe(whole);
    expect(lab.state.events({ event: 'copy-start' }).map((e) => e.detail.resumeBytes)).toEqual([0, heartbeat]);
  });

  it('restarts from zero when the data to resume lies behind a different header', async () => {
    const lab = await makeLab();
    await lab.copy.copyToTape(
      toTape({ offset: 0, length: MiB, position: LABEL_BYTES, job: 'other-job' }),
      () => undefined,
    );
    const r = await lab.copy.copyToTape(
      toTape({ offset: 0, length: MiB, position: LABEL_BYTES, resumeBytes: MiB / 2 }),
      () => undefined,
    );
    expect(r.resumedBytes).toBe(0);
    expect(r.sha256).toBe(sha(lab.source.subarray(0, MiB)));
  });

  it('consumes a once fault: the first copy fails, the retry passes and the fault is gone', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'bks-01', kind: 'fail', after: { bytes: 0 }, once: true });
    const err = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: LABEL_BYTES }), () => undefined),
      DeviceFaultError,
    );
    expect(err.device).toBe('bks-01');
    const r = await lab.copy.copyToTape(toTape({ offset: 0, length: MiB, position: LABEL_BYTES }), () => undefined);
    expect(r.sha256).toBe(sha(lab.source.subarray(0, MiB)));
    expect(lab.state.listFaults()).toEqual([]);
  });

  it('a slow fault really throttles the copy to its rate from its point on', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'fcsw-01', kind: 'slow', after: { bytes: 3 * MiB }, rateBytesPerSec: 2 * MiB });
    const progress = recorder();
    const r = await lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), progress.fn);
    const ended = Date.now();
    // The last MiB, after the fault's point, at 2 MiB/s: at least half a second from that point on.
    const atPoint = progress.seen.find((p) => p.bytes >= 3 * MiB);
    expect(atPoint?.bytes).toBe(3 * MiB);
    expect(ended - (atPoint?.at ?? ended)).toBeGreaterThanOrEqual(480);
    expect(r.sha256).toBe(sha(lab.source));
    expect(lab.state.events({ event: 'fault-slow' })).toHaveLength(1);
  });

  it('a hang stops all progress until the signal aborts, then throws DeviceFaultError saying it hung', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'lib-01', kind: 'hang', after: { bytes: MiB } });
    const progress = recorder();
    const abort = new AbortController();
    // The abort comes 700 ms after the copy reaches the hang, however long a loaded machine took to get there.
    let hungAt: number | undefined;
    const onProgress = (p: { bytes: number; total: number }): void => {
      progress.fn(p);
      if (p.bytes >= MiB && hungAt === undefined) {
        hungAt = Date.now();
        setTimeout(() => abort.abort(), 700);
      }
    };
    const err = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), onProgress, abort.signal),
      DeviceFaultError,
    );
    expect(hungAt).toBeDefined();
    expect(Date.now() - hungAt!).toBeGreaterThanOrEqual(690);
    expect(err.device).toBe('lib-01');
    expect(err.message).toBe('lab fault on lib-01: the transfer hung at volume byte 1048576 and was aborted');
    // Nothing was reported past the fault's point: the transfer stood still until aborted.
    expect(progress.seen.at(-1)?.bytes).toBe(MiB);
    expect((await stat(lab.tapeFile)).size).toBe(LABEL_BYTES + PIECE_HEADER_BYTES + MiB);
  });

  it('a hang ends when the fault is cleared by another process, and the copy completes', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'cpd-01', kind: 'hang', after: { percent: 25 } });
    const other = new LabState(lab.paths.labState);
    setTimeout(() => {
      other.clearFaults('cpd-01');
      other.close();
    }, 500);
    const started = Date.now();
    const r = await lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), () => undefined);
    expect(Date.now() - started).toBeGreaterThanOrEqual(490);
    expect(r.sha256).toBe(sha(lab.source));
    expect(lab.state.events({ device: 'cpd-01' }).map((e) => e.event)).toEqual(['fault-hang', 'fault-hang-cleared']);
  });

  it('a fault added by another process while a copy runs takes effect within the copy', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'bks-01', kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: 4 * MiB });
    const other = new LabState(lab.paths.labState);
    setTimeout(() => {
      other.addFault({ device: 'L1T001', kind: 'fail', after: { percent: 75 } });
      other.close();
    }, 150);
    const err = await failure(
      lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), () => undefined),
      DeviceFaultError,
    );
    expect(err.message).toBe('lab fault on L1T001: injected failure at volume byte 3145728');
  });

  it("an abort without a fault stops the copy with the caller's reason", async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'bks-01', kind: 'slow', after: { bytes: 0 }, rateBytesPerSec: MiB });
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error('activity cancelled')), 200);
    await expect(
      lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), () => undefined, abort.signal),
    ).rejects.toThrow('activity cancelled');
  });

  it('applies faults and resume to reads too, rebuilding the checksum from the destination', async () => {
    const lab = await makeLab();
    const w = await lab.copy.copyToTape(toTape({ offset: 0, length: VOLUME, position: LABEL_BYTES }), () => undefined);
    lab.state.addFault({ device: 'lib-01-drv-1', kind: 'fail', after: { percent: 50 }, once: true });
    const dest = path.join(lab.dir, 'restores', 'r.img');
    const progress = recorder();
    const err = await failure(
      lab.copy.readFromTape(
        fromTape({ position: LABEL_BYTES, piece: 0, sizeBytes: VOLUME, dest, offset: 0 }),
        progress.fn,
      ),
      DeviceFaultError,
    );
    expect(err.message).toBe('lab fault on lib-01-drv-1: injected failure at volume byte 2097152');
    expect((await stat(dest)).size).toBe(VOLUME / 2);
    const r = await lab.copy.readFromTape(
      fromTape({
        position: LABEL_BYTES,
        piece: 0,
        sizeBytes: VOLUME,
        dest,
        offset: 0,
        resumeBytes: progress.seen.at(-1)?.bytes ?? 0,
      }),
      () => undefined,
    );
    expect(r).toEqual({ sha256: w.sha256, bytes: VOLUME, resumedBytes: VOLUME / 2 });
    expect(sha(await readFile(dest))).toBe(sha(lab.source));
  });
});

describe('LabCopyDevice.probe', () => {
  it('reports nothing when every device answers, each having read what it holds', async () => {
    const lab = await makeLab();
    // A slow device answers: it is slow, not broken.
    lab.state.addFault({ device: 'bks-01', kind: 'slow', after: { bytes: 0 }, once: false });
    expect(await lab.copy.probe('hospital', DEVICES, { timeoutMs: 2000 })).toEqual([]);
    const answered = lab.state.events({ event: 'probe-answered' }).map((e) => e.device);
    expect(answered.sort()).toEqual([...DEVICES].sort());
  });

  it('reports a hung device as not answering within the limit, and keeps its fault for the transfer it hangs', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'lib-01-drv-1', kind: 'hang', after: { percent: 50 } });
    expect(await lab.copy.probe('hospital', DEVICES, { timeoutMs: 300 })).toEqual([
      { device: 'lib-01-drv-1', reason: 'did not answer a probe within 0.3 s' },
    ]);
    expect(lab.state.faultsFor(['lib-01-drv-1']).map((f) => f.kind)).toEqual(['hang']);
  });

  it('answers once a hang is cleared within the limit', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'cpd-01', kind: 'hang', after: { bytes: 0 } });
    setTimeout(() => lab.state.clearFaults('cpd-01'), 200);
    expect(await lab.copy.probe('hospital', ['cpd-01', 'lib-01-drv-1'], { timeoutMs: 3000 })).toEqual([]);
  });

  it('reports a failing device with its fault, and a drive whose cartridge reads as another', async () => {
    const lab = await makeLab();
    lab.state.addFault({ device: 'fcsw-01', kind: 'fail', after: { percent: 10 } });
    // The drive holds L1T001, but the cartridge file carries L1T002's label.
    const other = Buffer.alloc(LABEL_BYTES);
    const src = await open(labCartridgePath(lab.paths, 'hospital', 'lib-01', 'L1T002'), 'r');
    await src.read(other, 0, LABEL_BYTES, 0);
    await src.close();
    const dst = await open(lab.tapeFile, 'r+');
    await dst.write(other, 0, LABEL_BYTES, 0);
    await dst.close();
    const down = await lab.copy.probe('hospital', DEVICES, { timeoutMs: 2000 });
    expect(down.map((h) => h.device).sort()).toEqual(['L1T001', 'fcsw-01', 'lib-01-drv-1']);
    const by = new Map(down.map((h) => [h.device, h.reason]));
    expect(by.get('fcsw-01')).toMatch(/^failed a probe: lab fault on fcsw-01: injected failure \(lab fault \d+\)$/);
    expect(by.get('lib-01-drv-1')).toBe(
      'failed a probe: cartridge L1T001 reads as hospital/lib-01/L1T002, not hospital/lib-01/L1T001',
    );
    // The probe took nothing from the fault meant for a transfer.
    expect(lab.state.faultsFor(['fcsw-01'])).toHaveLength(1);
  });
});
