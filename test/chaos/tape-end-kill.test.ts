/**
 * Chaos: the worker process is killed (SIGKILL) inside a backup's last workflow task, right after
 * both drives were unloaded, and another worker takes over once the task times out. The task's
 * local activities run again from its start; the backup must still complete (its data is complete),
 * with its catalog rows on the cartridge that holds its chunks exactly once, the standby cartridge
 * cut back, no drive, zone or reservation left held, and a byte-identical restore. A split-backup
 * in failover mode with its second stream unused is the soak's case: that stream's cartridge holds
 * nothing of the backup and is erased, not given catalog rows. The kill after the release and the
 * kill in a failed backup's undo run with `npm run test:chaos` (test/chaos-long/tape-end-kill.test.ts).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectCompleteThroughKill, tapeEndLab, type TapeEndLab } from '../support/tape-end';

let t: TapeEndLab;

beforeAll(async () => {
  t = await tapeEndLab(['vm-001']);
});

afterAll(async () => {
  await t?.close();
});

describe('the worker killed in a backup’s last workflow task', () => {
  it('completes the split-backup when killed after both drives were unloaded', async () => {
    // Each stream's rows, unload and unzoning are one step, closeStream (docs/adr/057): the second
    // one's end is both drives unloaded.
    await expectCompleteThroughKill(t, 'vm-001', 'split', { activity: 'closeStream', count: 2 });
  });
});
