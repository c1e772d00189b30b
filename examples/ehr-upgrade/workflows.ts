/**
 * The EHR team's upgrade of one of its VMs, in a namespace of its own: back the VM up through Kura's
 * Nexus service, upgrade it, check its health, and when the upgrade broke it, report the failure to
 * Kura and wait for the outcome of the recovery ladder. Kura's contract is the only thing it imports
 * from Kura.
 */
import type { Duration } from '@temporalio/common';
import { createNexusServiceClient, proxyActivities, workflowInfo } from '@temporalio/workflow';
import { KURA_NEXUS_ENDPOINT, kuraNexusService } from '../../src/api/nexus-service';
import type { LadderResult } from '../../src/domain/ladder';
import type { UpgradeActivities } from './activities';

export interface EhrUpgradeInput {
  vm: string;
  /** The version to install. */
  version: string;
  /** The Nexus endpoint that routes to Kura (default `kura`, the one `kura start` creates). */
  endpoint?: string;
  /** How long the backup may take before the upgrade is given up. */
  backupTimeout?: Duration;
}

export interface EhrUpgradeResult {
  vm: string;
  version: string;
  /** The backup taken before the upgrade, and its image's SHA-256. */
  backupId: string;
  sha256: string;
  /** Whether the VM was healthy right after the upgrade. */
  healthyAfterUpgrade: boolean;
  /** The ladder's outcome when the upgrade broke the VM. */
  recovery?: Pick<LadderResult, 'outcome' | 'rung'> & { ladder: string };
}

const { upgradeVm, checkHealth } = proxyActivities<UpgradeActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 3 },
});

/** Back up, upgrade, check; on a failed check, report it and wait for Kura's ladder. */
export async function ehrUpgrade(input: EhrUpgradeInput): Promise<EhrUpgradeResult> {
  const kura = createNexusServiceClient({
    endpoint: input.endpoint ?? KURA_NEXUS_ENDPOINT,
    service: kuraNexusService,
  });
  const requestedBy = `ehr-upgrade:${workflowInfo().workflowId}`;

  // The workflow's clock names Kura's job: a replay or a retried start asks for the same backup.
  const backup = await kura.executeOperation(
    'backup',
    { target: input.vm, requestedBy, requestedAt: new Date().toISOString() },
    { scheduleToCloseTimeout: input.backupTimeout ?? '1 hour' },
  );

  await upgradeVm({ vm: input.vm, version: input.version });
  const health = await checkHealth({ vm: input.vm });
  const result: EhrUpgradeResult = {
    vm: input.vm,
    version: input.version,
    backupId: backup.backupId,
    sha256: backup.sha256,
    healthyAfterUpgrade: health.healthy,
  };
  if (health.healthy) return result;

  const ladder = await kura.executeOperation(
    'reportVmFailure',
    {
      vm: input.vm,
      reason: `unhealthy after the upgrade to ${input.version}: ${health.detail}`,
      requestedBy,
      requestedAt: new Date().toISOString(),
    },
    { scheduleToCloseTimeout: '1 day' },
  );
  return { ...result, recovery: { outcome: ladder.outcome, rung: ladder.rung, ladder: ladder.view.workflowId } };
}
