/**
 * Determinism across code changes: every recorded workflow history (test/replay/histories/, made by
 * `npm run replay:record` from real test runs) replays on the workflow code of this checkout, through
 * Kura's own codec; a change that would break a running workflow fails here.
 */
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bundleWorkflowCode, type ReplayWorkerOptions } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { kuraDataConverter, WORKFLOW_BUNDLE_CONVERTERS } from '../../src/codec/data-converter';
import * as workflows from '../../src/workflows/index';
import { readRecordedHistories, RECORD_COMMAND, replayErrors, REPLAY_KEY_FILE } from './recorder';

const recorded = readRecordedHistories();
/** The history the reordered fixture replays: a drill that created its host before removing it. */
const REORDERED_HISTORY = 'restoreDrill';
let keyDir: string;
let options: ReplayWorkerOptions;
/** The outcome of each history's replay, by its file name. */
const outcomes = new Map<string, Error | undefined>();

beforeAll(async () => {
  // The key file must be its owner's alone (git keeps no such mode), so the replay reads a copy.
  keyDir = mkdtempSync(path.join(os.tmpdir(), 'kura-replay-'));
  const keyFile = path.join(keyDir, 'kura-keys.json');
  copyFileSync(REPLAY_KEY_FILE, keyFile);
  chmodSync(keyFile, 0o600);
  // The bundle the test run already made, as every worker of the suite runs it: one bundle for all.
  options = {
    workflowBundle: { codePath: inject('workflowBundlePath') },
    dataConverter: kuraDataConverter({ keyFile }),
  };
  const errors = await replayErrors(options, recorded);
  recorded.forEach((h, i) => outcomes.set(h.name, errors[i]));
});

afterAll(() => {
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
});

describe('recorded workflow histories', () => {
  it('cover every workflow type Kura registers', () => {
    const registered = Object.entries(workflows)
      .filter(([, v]) => typeof v === 'function')
      .map(([name]) => name)
      .sort();
    const covered = new Set(recorded.map((h) => h.workflowType));
    const missing = registered.filter((t) => !covered.has(t));
    expect(
      missing,
      `workflow types without a recorded history in test/replay/histories/: ${missing.join(', ')}. Run a test ` +
        `that starts each from vitest.replay-record.config.mts, then \`${RECORD_COMMAND}\` (docs/workflow-changes.md)`,
    ).toEqual([]);
    expect(registered.length).toBeGreaterThan(0);
  });

  it.each(recorded.map((h) => [h.name, h] as const))('%s replays on the current workflow code', (name, h) => {
    const error = outcomes.get(name);
    expect(
      error === undefined ? undefined : `${error.name}: ${error.message}`,
      `${h.workflowType} (${h.workflowId}) no longer replays: a change to its code path must be guarded with ` +
        `patched() (docs/workflow-changes.md), not hidden by re-recording`,
    ).toBeUndefined();
  });
});

const noop = () => undefined;
const quiet = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

describe('the replay check', () => {
  it('fails with a determinism violation when a workflow issues its commands in another order', async () => {
    const bundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('./fixtures/reordered-workflows.ts'),
      ...WORKFLOW_BUNDLE_CONVERTERS,
      logger: quiet,
    });
    const history = recorded.find((h) => h.name === REORDERED_HISTORY);
    expect(history, `${REORDERED_HISTORY} is recorded`).toBeDefined();
    const [error] = await replayErrors({ ...options, workflowBundle: bundle }, [history!]);
    expect(error).toBeInstanceOf(DeterminismViolationError);
    expect(error?.message).toMatch(/nondeterminism/i);
    // The SDK names the command the code issued against the one the history holds.
    expect(error?.message).toContain(
      "scheduled event 'createDrillHost' does not match activity type of activity command 'removeDrillHost'",
    );
  });
});
