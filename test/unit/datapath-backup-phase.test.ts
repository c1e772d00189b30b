/**
 * The backup-phase machine without files: the transitions it allows, durable before they are
 * taken, the ones it refuses with their error type and message, and the convergence rule fed by
 * the catch-up rounds.
 */
import { describe, expect, it } from 'vitest';
import { BackupPhases, VolumeBusyError, type ConvergenceSettings } from '../../src/datapath/backup-phase';
import type { BackupState } from '../../src/datapath/volume-state';
import { InvalidInputError, KuraError } from '../../src/domain/errors';

const SETTINGS: ConvergenceSettings = {
  rateWindow: 5_000,
  throttleAfterRounds: 1,
  activeAfterRounds: 2,
  ioTimeout: 30_000,
  safetyFactor: 0.5,
};
const SIZE = 1 << 20;

function machine(settings: ConvergenceSettings = SETTINGS): BackupPhases {
  return new BackupPhases('array-01/vol-1', SIZE, settings);
}

/** Records what was made durable, and in which phase the machine was while it was written. */
function recorder(m: BackupPhases) {
  const saved: { state: BackupState; phaseMeanwhile: string }[] = [];
  const persist = (state: BackupState) => {
    saved.push({ state: structuredClone(state), phaseMeanwhile: m.phase });
    return Promise.resolve();
  };
  return { saved, persist };
}

function refusal(fn: () => unknown): KuraError {
  try {
    fn();
  } catch (err) {
    if (err instanceof KuraError) return err;
    throw err;
  }
  throw new Error('not refused');
}

async function inCatchUp(m: BackupPhases, backupId = 'b1'): Promise<BackupState> {
  const { persist } = recorder(m);
  const state = await m.enter(backupId, '/img/b1.img', persist);
  await m.baseCopied(state, persist);
  return state;
}

describe('allowed transitions', () => {
  it('enters backup mode in the base copy only once its record is durable', async () => {
    const m = machine();
    const { saved, persist } = recorder(m);
    const state = await m.enter('b1', '/img/b1.img', persist);
    expect(saved).toEqual([{ state, phaseMeanwhile: 'passthrough' }]);
    expect(state).toMatchObject({
      version: 1,
      mode: 'backup',
      phase: 'base-copy',
      backupId: 'b1',
      image: '/img/b1.img',
      baseCopiedBytes: 0,
      rounds: 0,
    });
    expect([m.phase, m.state, m.inCatchUp]).toEqual(['base-copy', state, false]);
  });

  it('stays in passthrough when the record cannot be made durable', async () => {
    const m = machine();
    const failed = await m
      .enter('b1', '/img/b1.img', () => Promise.reject(new Error('disk full')))
      .then(
        () => undefined,
        (e: Error) => e,
      );
    expect(failed?.message).toBe('disk full');
    expect([m.phase, m.state]).toEqual(['passthrough', null]);
  });

  it('moves from the base copy to catch-up durable first', async () => {
    const m = machine();
    const { saved, persist } = recorder(m);
    const state = await m.enter('b1', '/img/b1.img', persist);
    state.baseCopiedBytes = SIZE;
    await m.baseCopied(state, persist);
    expect(saved[1]).toEqual({ state: { ...state, phase: 'catch-up' }, phaseMeanwhile: 'base-copy' });
    expect([m.phase, m.inCatchUp, m.state]).toEqual(['catch-up', true, state]);
  });

  it('reports quiescing while commands are held, and passthrough once left', async () => {
    const m = machine();
    await inCatchUp(m);
    m.beginQuiesce();
    expect([m.phase, m.quiescing, m.inCatchUp]).toEqual(['quiescing', true, true]);
    m.left();
    m.endQuiesce();
    expect([m.phase, m.quiescing, m.state]).toEqual(['passthrough', false, null]);
    expect(m.status(0)).toMatchObject({ mode: 'passthrough', phase: 'passthrough', backupId: null, etaMs: null });
  });

  it('takes a retried enter-backup of the backup in progress as done, and a new backup after the switch back', async () => {
    const m = machine();
    await inCatchUp(m, 'b1');
    expect(m.admitEnter('b1')).toBe(true);
    m.left();
    expect(m.admitEnter('b2')).toBe(false);
    const { persist } = recorder(m);
    expect((await m.enter('b2', '/img/b2.img', persist)).backupId).toBe('b2');
  });

  it('comes back in the phase a state file recorded', async () => {
    const m = machine();
    const { persist } = recorder(m);
    const other = machine();
    const state = await other.enter('b1', '/img/b1.img', persist);
    await other.baseCopied(state, persist);
    m.resume(state);
    expect([m.phase, m.require('b1')]).toEqual(['catch-up', state]);
  });
});

describe('refused transitions', () => {
  it('refuses every backup request in passthrough with InvalidInput', () => {
    const m = machine();
    for (const ask of [() => m.require('b1'), () => m.requireCatchUp('b1'), () => m.requireFinishable('b1')]) {
      const err = refusal(ask);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect([err.type, err.message]).toEqual([
        'InvalidInput',
        'array-01/vol-1 is not in backup mode; start with enter-backup',
      ]);
    }
  });

  it('refuses another backup while one is in progress with AlreadyRunning', async () => {
    const m = machine();
    const { persist } = recorder(m);
    await m.enter('b1', '/img/b1.img', persist);
    const enter = refusal(() => m.admitEnter('b2'));
    expect(enter).toBeInstanceOf(VolumeBusyError);
    expect([enter.type, enter.message]).toEqual([
      'AlreadyRunning',
      'array-01/vol-1 is in backup mode for b1; wait for it to finish or abort it (kura backup --online shows it)',
    ]);
    const ref = refusal(() => m.require('b2'));
    expect([ref.name, ref.type, ref.message]).toEqual([
      'VolumeBusyError',
      'AlreadyRunning',
      'array-01/vol-1 is in backup mode for b1, not b2',
    ]);
    const again = await m.enter('b1', '/img/b1.img', persist).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(again).toBeInstanceOf(VolumeBusyError);
    expect(m.state?.backupId).toBe('b1');
  });

  it('refuses catch-up and finish before the base copy is done, naming how far it got', async () => {
    const m = machine();
    const { persist } = recorder(m);
    const state = await m.enter('b1', '/img/b1.img', persist);
    state.baseCopiedBytes = 4096;
    const round = refusal(() => m.requireCatchUp('b1'));
    expect([round.name, round.type, round.message]).toEqual([
      'InvalidInputError',
      'InvalidInput',
      `array-01/vol-1 has not finished its base copy (4096 of ${SIZE} bytes); catch-up starts after it`,
    ]);
    const finish = refusal(() => m.requireFinishable('b1'));
    expect([finish.type, finish.message]).toEqual([
      'InvalidInput',
      'array-01/vol-1 has not finished its base copy; it cannot switch back yet',
    ]);
    expect(m.phase).toBe('base-copy');
  });

  it('refuses to end a base copy twice, and writes nothing for it', async () => {
    const m = machine();
    const state = await inCatchUp(m);
    const { saved, persist } = recorder(m);
    const err = await m.baseCopied(state, persist).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toBe('array-01/vol-1 is in catch-up for b1, not in its base copy');
    expect(saved).toEqual([]);
  });
});

describe('the convergence rule', () => {
  it('counts rounds and escalates to throttled, then active, while no drain estimate fits and nothing shrinks', async () => {
    const m = machine();
    const state = await inCatchUp(m);
    m.roundDone(state, 8192);
    expect([state.rounds, m.path]).toEqual([1, 'throttled']);
    m.roundDone(state, 8192);
    expect([state.rounds, m.path]).toEqual([2, 'active']);
    expect(m.status(8192)).toMatchObject({ rounds: 2, path: 'active', etaMs: null, reflectRate: 0 });
  });

  it('stays on the normal path when the drain measured from the reflect rate fits the I/O timeout', async () => {
    const m = machine();
    const state = await inCatchUp(m);
    m.reflected(1_000_000);
    m.roundDone(state, 8192);
    m.roundDone(state, 8192);
    expect([state.rounds, m.path]).toEqual([2, 'normal']);
    const st = m.status(8192);
    expect(st.reflectRate).toBeGreaterThan(0);
    expect(st.etaMs).toBe(Math.ceil((8192 / st.reflectRate) * 1000));
  });

  it('starts each backup on the normal path with fresh rates', async () => {
    const m = machine();
    const state = await inCatchUp(m, 'b1');
    m.wrote(4096);
    m.roundDone(state, 4096);
    m.roundDone(state, 4096);
    expect(m.path).toBe('active');
    m.left();
    await inCatchUp(m, 'b2');
    expect(m.status(0)).toMatchObject({ backupId: 'b2', path: 'normal', writeRate: 0, reflectRate: 0, rounds: 0 });
  });
});
