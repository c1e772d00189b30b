/**
 * The `postgres` hook's hold heartbeats while the workflow has not answered whether backup mode may
 * end: a workflow busy in one long task (a split run as a local activity) answers queries only when
 * it ends, and a hold silent that long would be taken for dead and its backup mode lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresHookSchema } from '../../src/domain/inventory';
import { PostgresHook } from '../../src/drivers/postgres-hook';
import { eventually } from '../support/harness';
import { PG_PASSWORD, startPostgres, type TestPostgres } from '../support/postgres';

let pg: TestPostgres;

beforeAll(async () => {
  pg = await startPostgres();
}, 60_000);

afterAll(async () => {
  await pg?.stop();
});

describe("the postgres hook's hold", () => {
  it('keeps heartbeating while a release question goes unanswered, asking one at a time, then stops the backup', async () => {
    const hook = new PostgresHook(
      PostgresHookSchema.parse({
        target: 'vm-001',
        kind: 'postgres',
        port: pg.port,
        user: 'postgres',
        passwordEnv: 'PW',
      }),
      { PW: PG_PASSWORD },
    );
    const beats: number[] = [];
    let asked = 0;
    let answer: (released: boolean) => void = () => undefined;
    let enteredAt = 0;
    const held = hook.holdBackupMode('op/split-backup/vm-001 round 1', {
      pollMs: 50,
      entered: () => {
        enteredAt = Date.now();
        return Promise.resolve();
      },
      // The first question is answered only when the test says so, as by a workflow busy in one long task.
      released: () => {
        asked += 1;
        return new Promise<boolean>((resolve) => (answer = resolve));
      },
      heartbeat: () => void beats.push(Date.now()),
    });
    // Ten heartbeats after backup mode was entered, all while the first question is unanswered.
    await eventually(() => Promise.resolve(enteredAt > 0 && beats.filter((t) => t >= enteredAt).length >= 10), 30_000);
    expect(asked).toBe(1);
    expect(await pg.sessions()).toHaveLength(1);

    answer(true);
    const result = await held;
    expect(result.label).toContain('LABEL: op/split-backup/vm-001 round 1');
    expect(asked).toBe(1);
    expect(await pg.sessions()).toEqual([]);
  });
});
