/**
 * `kura start` (what `npm start` runs) on a fresh directory: creates the hospital lab estate,
 * starts workers against the configured server, backs up every VM once and shuts down cleanly.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/store';
import { serverEnv, uniqueId } from '../support/harness';

const KURA = path.resolve(__dirname, '..', '..', 'bin', 'kura');
const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-start-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kura start on a fresh directory', () => {
  it('creates the lab estate, backs up every VM once with a summary, and exits when told to', async () => {
    const run = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(
        KURA,
        ['start', '--exit-after', '--vms', '5', '--concurrency', '3'],
        {
          cwd: dir,
          env: { ...process.env, ...serverEnv(), KURA_TASK_QUEUE: `t-${uniqueId()}-kura-control`, KURA_CONFIG: '' },
          timeout: 180_000,
        },
        (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      );
    });
    expect(run.stderr).toMatch(/created kura\.yaml from the hospital lab preset \(5 VMs\)/);
    expect(run.stderr).toMatch(/using the Temporal server at 127\.0\.0\.1:\d+/);
    // Other namespaces reach this installation's control worker through the Nexus endpoint `kura`.
    expect(run.stderr).toMatch(
      /Nexus endpoint kura (created|updated|unchanged): service kura on t-[0-9a-f]+-kura-control/,
    );
    expect(run.stderr).toMatch(/Protected 5 of 5 targets of hospital: 40\.0 MiB in [\d.]+ s .*0 failed\./);
    expect(run.stderr).toMatch(/shutting down workers/);
    expect(run.code).toBe(0);

    expect(existsSync(path.join(dir, 'kura.yaml'))).toBe(true);
    const catalog = new Catalog(path.join(dir, '.kura', 'catalog.db'));
    const backups = catalog.listBackups();
    catalog.close();
    expect(backups.map((b) => b.target).sort()).toEqual(['vm-001', 'vm-002', 'vm-003', 'vm-004', 'vm-005']);
    expect(backups.every((b) => b.status === 'complete' && b.sizeBytes === 8 * 1024 * 1024)).toBe(true);
  });
});
