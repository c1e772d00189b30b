/**
 * The global setup of `npm run replay:record`: the test run's own dev server and workflow bundle (the
 * default global setup), with every lab encrypting under the committed replay key, and at the end of
 * the run every workflow those tests ran written into test/replay/histories/ for the replay test.
 */
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestProject } from 'vitest/node';
import * as base from '../support/global-setup';
import { recordHistories, REPLAY_KEY_FILE } from './recorder';

export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const provided: Record<string, string> = {};
  // The default setup provides a fresh key; the histories must be encrypted with the one committed key.
  const keyDir = mkdtempSync(path.join(os.tmpdir(), 'kura-replay-key-'));
  const keyFile = path.join(keyDir, 'kura-keys.json');
  copyFileSync(REPLAY_KEY_FILE, keyFile);
  chmodSync(keyFile, 0o600);
  const proxy = {
    provide: (key: string, value: string) => {
      provided[key] = value;
      if (key !== 'keyFilePath') project.provide(key as 'temporalAddress', value);
    },
  } as unknown as TestProject;
  await base.setup(proxy);
  project.provide('keyFilePath', keyFile);
  return async () => {
    try {
      await recordHistories({
        address: provided.temporalAddress!,
        namespace: provided.temporalNamespace!,
        workflowBundlePath: provided.workflowBundlePath!,
        keyFile,
      });
    } catch (err) {
      // vitest reports an error in a global teardown but exits 0: the recording must not look done.
      process.exitCode = 1;
      throw err;
    } finally {
      await base.teardown();
      rmSync(keyDir, { recursive: true, force: true });
    }
  };
}
