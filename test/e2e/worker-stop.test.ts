/**
 * `kura worker`, as a production host runs it under a service manager: SIGTERM or Ctrl-C stops its
 * workers in order and it exits 0, saying so, with nothing left running.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { labEnv, makeLab, type TestLab } from '../support/harness';

const ROOT = path.resolve(__dirname, '..', '..');
let lab: TestLab;

beforeAll(async () => {
  lab = await makeLab({ vms: 1, dataVolumeSize: 1024 * 1024 });
});

afterAll(() => lab?.cleanup());

/** Runs `kura worker` until it says it runs, sends `signal`, and returns its exit code and output. */
async function stopWorker(signal: NodeJS.Signals): Promise<{ code: number | null; by: string | null; output: string }> {
  const child = spawn(path.join(ROOT, 'bin', 'kura'), ['worker'], {
    cwd: lab.dir,
    env: { ...labEnv(lab), KURA_WORKFLOW_BUNDLE: inject('workflowBundlePath') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const onData = (d: Buffer) => {
    output += d.toString();
    if (output.includes('Ctrl-C stops them') && !child.killed) child.kill(signal);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const deadline = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const [code, by] = await new Promise<[number | null, string | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  clearTimeout(deadline);
  return { code, by, output };
}

describe('kura worker', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('stops its workers in order on %s and exits 0, saying so', async (signal) => {
    const r = await stopWorker(signal);
    expect(r.output, `exit ${r.code} ${r.by}`).toContain(`kura: ${signal} received: stopping the workers`);
    expect([r.code, r.by]).toEqual([0, null]);
  });
});
