/** The job tuning (piece size, timeouts, attempts) that kura.yaml's `tuning` section sets. */
import { ALL_VMS_POLICY, type Config } from '../domain/inventory';
import type { CopySettings, JobTuning } from '../domain/jobs';

/** The tuning every job started from this configuration runs with. */
export function jobTuning(config: Config): JobTuning {
  return {
    pieceSize: config.tuning.pieceSize,
    copyHeartbeatTimeoutMs: config.tuning.copyHeartbeatTimeout,
    deviceAttempts: config.tuning.deviceAttempts,
    reserveWaitMs: config.tuning.reserveWait,
  };
}

/** The stream settings of backups started from this configuration, for a policy when one is named. */
export function copySettings(config: Config, siteName?: string, policyName?: string): CopySettings {
  const policy = config.sites.find((s) => s.name === siteName)?.policies.find((p) => p.name === policyName);
  const streamKind = policy?.streamKind ?? config.tuning.streamKind;
  return {
    streams: policy?.streams ?? config.tuning.streams,
    mode: policy?.mode ?? config.tuning.mode,
    chunks: policy?.chunks ?? config.tuning.chunks,
    // Absent means LAN-free, so the settings of a site without direct streams are what they were.
    ...(streamKind === 'direct' ? { streamKind } : {}),
  };
}

/** The targets a policy protects, with `*` expanded to every VM of the site. */
export function policyTargets(
  config: Config,
  siteName: string,
  policyName: string,
): { targets: string[]; concurrency: number } | undefined {
  const site = config.sites.find((s) => s.name === siteName);
  if (!site) return undefined;
  if (policyName === ALL_VMS_POLICY) return { targets: site.vms.map((v) => v.name), concurrency: 4 };
  const policy = site.policies.find((p) => p.name === policyName);
  if (!policy) return undefined;
  const targets = policy.targets.flatMap((t) => (t === '*' ? site.vms.map((v) => v.name) : [t]));
  return { targets: [...new Set(targets)], concurrency: policy.concurrency };
}
