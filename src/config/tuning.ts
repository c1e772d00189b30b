/** The job tuning (piece size, timeouts, attempts) that kura.yaml's `tuning` section sets. */
import type { Config } from '../domain/inventory';
import type { JobTuning } from '../domain/jobs';

/** The tuning every job started from this configuration runs with. */
export function jobTuning(config: Config): JobTuning {
  return {
    pieceSize: config.tuning.pieceSize,
    copyHeartbeatTimeoutMs: config.tuning.copyHeartbeatTimeout,
    deviceAttempts: config.tuning.deviceAttempts,
    reserveWaitMs: config.tuning.reserveWait,
  };
}

/** The targets a policy protects, with `*` expanded to every VM of the site. */
export function policyTargets(config: Config, siteName: string, policyName: string): { targets: string[]; concurrency: number } | undefined {
  const site = config.sites.find((s) => s.name === siteName);
  if (!site) return undefined;
  if (policyName === 'all') return { targets: site.vms.map((v) => v.name), concurrency: 4 };
  const policy = site.policies.find((p) => p.name === policyName);
  if (!policy) return undefined;
  const targets = policy.targets.flatMap((t) => (t === '*' ? site.vms.map((v) => v.name) : [t]));
  return { targets: [...new Set(targets)], concurrency: policy.concurrency };
}
