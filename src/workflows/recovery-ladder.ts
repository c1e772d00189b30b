/**
 * The escalating restart ladder of seed 001 (Fig. 2, S11–S18) for one incident of one VM:
 * APL restart → MW restart → OS reboot → data swap with the latest good data image → data swap
 * with the startup-guarantee image → hand over to a person, who resolves the incident or has the
 * VM rebuilt on a substitute host from its two images. A health check after every rung decides.
 *
 * The ladder's progress lives in this workflow's history, outside the VM and its volumes, so
 * swapping the data volume (or killing the worker while it happens) never makes the recovery
 * forget how far it got: a finished rung is never run again (the comparative example, Fig. 6).
 */
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  isCancellation,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import {
  AUTOMATIC_RUNGS,
  LadderInputSchema,
  RUNGS,
  RebuildRequestSchema,
  ResolveRequestSchema,
  type AutomaticRung,
  type Attempt,
  type HealthEnd,
  type ImageRecord,
  type LadderInput,
  type LadderResult,
  type LadderView,
  type Rung,
  type RungRecord,
} from '../domain/ladder';
import { ErrorType } from '../domain/errors';
import { ladderQuery, rebuildUpdate, resolveUpdate } from '../messages';
import { JobKind, KuraKind, KuraRung, KuraSite, KuraTarget, KuraVm } from '../search-attributes';
import { acceptInput, jobFailure, rootFailure } from './failures';
import { notifyActivities, vmActivities } from './vm-proxies';
import { label } from './labels';

/** Runs the ladder for one incident until the VM is healthy again or a person has dealt with it. */
export async function recoveryLadder(input: LadderInput): Promise<LadderResult> {
  const req = acceptInput(LadderInputSchema, input, 'recovery ladder input');
  const { workflowId } = workflowInfo();
  const { site, vm, incident, policy } = req;
  const longestWait = Math.max(...AUTOMATIC_RUNGS.map((r) => policy.rungs[r].healthWaitMs));
  const acts = vmActivities(policy, longestWait);
  const { notify } = notifyActivities();

  const startIndex = RUNGS.indexOf(req.startRung);
  const view: LadderView = {
    workflowId,
    site,
    vm,
    incident,
    reason: req.reason,
    status: 'climbing',
    currentRung: null,
    startedAt: new Date().toISOString(),
    rungs: RUNGS.map((rung, i) => ({ rung, status: i < startIndex ? 'skipped' : 'pending', attempts: [] })),
  };
  setHandler(ladderQuery, () => view);
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.Ladder },
    { key: KuraVm, value: label(vm) },
    { key: KuraTarget, value: label(vm) },
    { key: KuraSite, value: label(site) },
  ]);

  /** The ladder's result once a person has dealt with the VM (resolved it, or had it rebuilt). */
  let handedOver: LadderResult | undefined;
  let rebuilding = false;
  const requireWaiting = (what: string) => {
    if (view.status !== 'waiting-for-human') {
      throw ApplicationFailure.nonRetryable(
        `cannot ${what} ${vm}: its ladder ${workflowId} is ${view.status}${view.currentRung ? ` at ${view.currentRung}` : ''}, not waiting for a person`,
        ErrorType.NotWaiting,
      );
    }
    if (rebuilding)
      throw ApplicationFailure.nonRetryable(
        `cannot ${what} ${vm}: a rebuild is in progress on its ladder ${workflowId}`,
        ErrorType.NotWaiting,
      );
  };

  setHandler(
    resolveUpdate,
    (raw) => {
      const r = ResolveRequestSchema.parse(raw);
      record('human').status = 'done';
      view.note = `resolved by ${r.by}: ${r.note}`;
      handedOver = finish('resolved', 'human');
      return view;
    },
    {
      validator: (raw) => {
        acceptInput(ResolveRequestSchema, raw, 'resolve request');
        requireWaiting('resolve');
      },
    },
  );

  setHandler(
    rebuildUpdate,
    async (raw) => {
      const r = RebuildRequestSchema.parse(raw);
      const human = record('human');
      const attempt = startAttempt(human);
      rebuilding = true;
      try {
        const built = await acts.rebuildVm({
          site,
          vm,
          rung: 'human',
          incident,
          host: r.host,
          request: `${workflowId}/human/rebuild/${attempt.attempt}`,
        });
        attempt.detail = `rebuilt on ${built.host} from ${built.software} and ${built.data} (by ${r.by})`;
        const health = await acts.awaitHealthy({
          site,
          vm,
          timeoutMs: policy.rungs['os-reboot'].healthWaitMs,
          everyMs: policy.healthCheckEveryMs,
          rung: 'human',
        });
        endAttempt(attempt, health.healthy ? 'healthy' : 'unhealthy', `${attempt.detail}; ${health.detail}`, {
          tookMs: built.tookMs,
          waitedMs: health.waitedMs,
        });
        if (health.healthy) {
          human.status = 'done';
          view.note = attempt.detail;
          handedOver = finish('rebuilt', 'human');
        }
        return view;
      } catch (err) {
        endAttempt(attempt, 'failed', rootFailure(err).message);
        throw jobFailure(`rebuild of ${vm} on ${r.host} failed`, err);
      } finally {
        rebuilding = false;
      }
    },
    {
      validator: (raw) => {
        const { host } = acceptInput(RebuildRequestSchema, raw, 'rebuild request');
        if (!req.hosts.includes(host)) {
          throw ApplicationFailure.nonRetryable(
            `no host "${host}" in site ${site}; substitute hosts are: ${req.hosts.join(', ')}`,
            ErrorType.NotFound,
          );
        }
        requireWaiting('rebuild');
      },
    },
  );

  // S11–S17: widen the initialization range rung by rung until a health check passes.
  for (const rung of AUTOMATIC_RUNGS.slice(startIndex)) {
    if (await climb(rung)) return finish('recovered', rung);
  }

  // S18: notify maintenance personnel and hand over.
  enter('human');
  view.status = 'waiting-for-human';
  record('human').status = 'waiting';
  await notify({
    subject: `VM ${vm} of site ${site} did not recover; it needs a person`,
    detail: {
      workflowId,
      vm,
      site,
      incident,
      reason: req.reason,
      tried: view.rungs.filter((r) => r.attempts.length > 0).map((r) => r.rung),
      resolve: `kura ladder resolve ${vm} --note "<what was done>"`,
      rebuild: `kura ladder rebuild ${vm} --host <substitute host>`,
    },
  }).catch(() => undefined);
  setCurrentDetails(
    `**waiting for a person** — ${vm}: \`kura ladder resolve ${vm} --note …\` or \`kura ladder rebuild ${vm} --host …\``,
  );
  await condition(() => handedOver !== undefined);
  await condition(allHandlersFinished);
  return handedOver!;

  /** Runs one rung: its attempts with backoff between them; true when the VM came back healthy. */
  async function climb(rung: AutomaticRung): Promise<boolean> {
    enter(rung);
    const rec = record(rung);
    const rp = policy.rungs[rung];
    for (let n = 1; n <= rp.attempts; n++) {
      if (n > 1) await sleep(rp.backoffMs);
      const attempt = startAttempt(rec);
      try {
        const acted = await act(rung, `${workflowId}/${rung}/${n}`);
        if (acted.skip) {
          endAttempt(attempt, 'failed', acted.skip);
          rec.status = 'failed';
          return false;
        }
        // S12: the health wait. A VM that keeps reporting a definite failure after the action
        // ends it early (the activity counts the checks; its result is in the history, so a
        // replay takes the same branch), and the ladder widens the range without waiting it out.
        const escalateAfter = rp.failedChecks ?? 0;
        attempt.healthSince = new Date().toISOString();
        attempt.healthLimitMs = rp.healthWaitMs;
        attempt.escalateAfter = escalateAfter;
        const health = await acts.awaitHealthy({
          site,
          vm,
          timeoutMs: rp.healthWaitMs,
          everyMs: policy.healthCheckEveryMs,
          rung,
          failAfter: escalateAfter,
        });
        attempt.healthEnd = health.end;
        attempt.checks = health.checks;
        attempt.failedChecks = health.failedChecks;
        endAttempt(
          attempt,
          health.healthy ? 'healthy' : 'unhealthy',
          [acted.detail, health.detail, waitEnding(health)].filter(Boolean).join('; '),
          { tookMs: acted.tookMs, waitedMs: health.waitedMs },
        );
        if (health.healthy) {
          rec.status = 'cured';
          return true;
        }
      } catch (err) {
        if (isCancellation(err)) throw err;
        // A rung whose action fails has not recovered the VM: the ladder widens the range.
        endAttempt(attempt, 'failed', rootFailure(err).message);
      }
    }
    rec.status = 'failed';
    return false;
  }

  /** The action of one rung (S11 restarts; S14–S16 data replacement). */
  async function act(
    rung: AutomaticRung,
    request: string,
  ): Promise<{ tookMs: number; detail?: string; skip?: string }> {
    const base = { site, vm, rung, incident, request };
    switch (rung) {
      case 'apl-restart':
        return acts.restartVm({ ...base, scope: 'apl' });
      case 'mw-restart':
        return acts.restartVm({ ...base, scope: 'mw' });
      case 'os-reboot':
        return acts.restartVm({ ...base, scope: 'os' });
      case 'data-swap': {
        const image = await acts.latestDataImage({ site, vm });
        if (!image) return { tookMs: 0, skip: `${vm} has no data image that verifies; nothing to swap in` };
        return swapIn(image, rung, request);
      }
      case 'guarantee-swap':
        return swapIn(await acts.ensureBaseImage({ site, vm, kind: 'guarantee' }), rung, request);
    }
  }

  /** S15: volume-creation request from the image; S16: swap volume 13 and restart from the OS. */
  async function swapIn(
    image: ImageRecord,
    rung: AutomaticRung,
    request: string,
  ): Promise<{ tookMs: number; detail: string }> {
    const base = { site, vm, rung, incident };
    const created = await acts.createDataVolume({ ...base, imageId: image.imageId, request: `${request}/create` });
    const swapped = await acts.swapDataVolume({
      ...base,
      volume: created.volume,
      imageId: image.imageId,
      request: `${request}/swap`,
    });
    const restarted = await acts.restartVm({ ...base, scope: 'os', request: `${request}/restart` });
    return {
      tookMs: created.tookMs + swapped.tookMs + restarted.tookMs,
      detail: `data volume replaced by image ${image.imageId}`,
    };
  }

  function enter(rung: Rung): void {
    view.currentRung = rung;
    const rec = record(rung);
    if (rec.status === 'pending') rec.status = 'running';
    upsertSearchAttributes([{ key: KuraRung, value: rung }]);
    setCurrentDetails(`**${rung}** — recovering ${vm} (${req.reason})`);
  }

  /** Why an unhealthy wait ended, in words for the attempt's detail. */
  function waitEnding(h: { end: HealthEnd; checks: number; failedChecks: number }): string | undefined {
    if (h.end === 'failed-checks') return `escalated after ${h.failedChecks} failed health checks in a row`;
    if (h.end === 'timeout') return `not healthy within the health wait (${h.checks} checks)`;
    return undefined;
  }

  function record(rung: Rung): RungRecord {
    return view.rungs.find((r) => r.rung === rung) as RungRecord;
  }

  function startAttempt(rec: RungRecord): Attempt {
    const attempt: Attempt = {
      attempt: rec.attempts.length + 1,
      startedAt: new Date().toISOString(),
      outcome: 'running',
    };
    rec.attempts.push(attempt);
    return attempt;
  }

  function endAttempt(
    a: Attempt,
    outcome: Attempt['outcome'],
    detail?: string,
    times?: { tookMs: number; waitedMs: number },
  ): void {
    a.outcome = outcome;
    a.endedAt = new Date().toISOString();
    if (detail) a.detail = detail;
    if (times) {
      a.actionMs = times.tookMs;
      a.healthWaitMs = times.waitedMs;
    }
  }

  function finish(outcome: LadderResult['outcome'], rung: Rung): LadderResult {
    view.status = outcome;
    view.endedAt = new Date().toISOString();
    setCurrentDetails(`**${outcome}** at ${rung} — ${vm}`);
    return { outcome, rung, endedAt: view.endedAt, view };
  }
}
