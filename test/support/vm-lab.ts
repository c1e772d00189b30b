/**
 * Test support for the VM guardian and the recovery ladder: a lab whose VM names are unique to the
 * test (a guardian's id names only its VM, and is global on the shared dev server), a ladder policy in
 * milliseconds, and readers of the lab's event log per VM.
 */
import type { Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { LabState, type LabEvent } from '../../src/lab/state';
import { ladderPolicy, type LadderPolicy } from '../../src/domain/ladder';
import { JobKind, KuraKind, KuraVm, guardianWorkflowId } from '../../src/client';
import { makeLab, type LabOptions, type TestLab } from './harness';

/** The actions a ladder asks of the lab, as the event log names them. */
export const ACTION_EVENTS = ['apl-restart', 'mw-restart', 'os-reboot', 'volume-create', 'volume-swap', 'vm-rebuild'];

/** Ladder settings for tests: restarts of tens of milliseconds, short waits, no polling. */
export const FAST_LADDER = {
  attempts: 1,
  healthWait: '700ms',
  healthCheckEvery: '25ms',
  backoff: '10ms',
  stabilityWindow: '0ms',
  keepImages: 2,
  healthPoll: '0ms',
  guardVms: false,
} as const;

/** A lab of `vms` VMs named `<site>-vm-NNN`, with fast restarts and the test ladder policy. */
export async function makeVmLab(
  opts: LabOptions & { ladder?: Record<string, unknown>; lab?: Record<string, unknown> } = {},
): Promise<TestLab & { vms: string[] }> {
  const lab = await makeLab({
    vms: 2,
    dataVolumeSize: 1024 * 1024,
    softwareVolumeSize: 512 * 1024,
    ...opts,
    edit: (cfg) => {
      const site = cfg.sites[0]!;
      for (const vm of site.vms ?? []) vm.name = `${site.name}-${vm.name}`;
      (cfg as Record<string, unknown>).ladder = { ...FAST_LADDER, ...opts.ladder };
      (cfg as Record<string, unknown>).lab = { aplRestart: '30ms', mwRestart: '40ms', osReboot: '60ms', ...opts.lab };
      opts.edit?.(cfg);
    },
  });
  return { ...lab, vms: lab.loaded.config.sites[0]!.vms.map((v) => v.name) };
}

/** The lab's policy as a guardian gets it, with changes for one test. */
export function policyOf(lab: TestLab, change: Partial<LadderPolicy> = {}): LadderPolicy {
  return { ...ladderPolicy(lab.loaded.config.ladder, lab.loaded.config.tuning.copyHeartbeatTimeout), ...change };
}

/** Starts a VM's guardian with a policy of the test's choosing. */
export async function startGuardian(client: Client, lab: TestLab, vm: string, policy: LadderPolicy = policyOf(lab)) {
  return client.workflow.start('vmGuardian', {
    workflowId: guardianWorkflowId(vm),
    taskQueue: lab.taskQueue,
    args: [{ site: lab.site, vm, policy }],
    typedSearchAttributes: new TypedSearchAttributes([
      { key: KuraKind, value: JobKind.Guardian },
      { key: KuraVm, value: vm },
    ]),
  });
}

/** The recovery actions the lab carried out for a VM, in order: `[event, rung]`. */
export function actionsOf(lab: TestLab, vm: string, since = 0): [string, string][] {
  const state = new LabState(lab.paths.labState);
  try {
    return state
      .events({ device: vm, since })
      .filter((e: LabEvent) => ACTION_EVENTS.includes(e.event))
      .map((e) => [e.event, String(e.detail.rung)]);
  } finally {
    state.close();
  }
}

/** The lab's last event sequence number (events after it are new). */
export function lastSeq(lab: TestLab): number {
  const state = new LabState(lab.paths.labState);
  try {
    return state.events().at(-1)?.seq ?? 0;
  } finally {
    state.close();
  }
}

/** What each rung asks of the lab, in order, when it runs once. */
export const RUNG_ACTIONS: Record<string, [string, string][]> = {
  'apl-restart': [['apl-restart', 'apl-restart']],
  'mw-restart': [['mw-restart', 'mw-restart']],
  'os-reboot': [['os-reboot', 'os-reboot']],
  'data-swap': [
    ['volume-create', 'data-swap'],
    ['volume-swap', 'data-swap'],
    ['os-reboot', 'data-swap'],
  ],
  'guarantee-swap': [
    ['volume-create', 'guarantee-swap'],
    ['volume-swap', 'guarantee-swap'],
    ['os-reboot', 'guarantee-swap'],
  ],
};

/** Polls `read` until `done` holds (or the time is up, returning the last value). */
export async function until<T>(read: () => Promise<T>, done: (v: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await read().catch(() => undefined as T);
    if ((v !== undefined && done(v)) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}
