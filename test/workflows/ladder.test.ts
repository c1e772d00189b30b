/**
 * The escalating restart ladder against the real dev server and the lab's real volume files: each
 * cure depth recovers at exactly its rung with every lower rung run once, a data swap leaves the
 * data volume equal to the image and the software volume untouched, an incurable fault reaches a
 * person who has the VM rebuilt elsewhere, and wrong requests are refused with nothing changed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSync, writeSync, closeSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Client } from '@temporalio/client';
import { LabState } from '../../src/lab/state';
import { LabHypervisor } from '../../src/drivers/lab/hypervisor';
import {
  CURE_DEPTHS,
  rungForDepth,
  type CureDepth,
  type GuardianView,
  type LadderResult,
} from '../../src/domain/ladder';
import { guardianQuery, rebuildUpdate, requestDataBackupUpdate, resolveUpdate } from '../../src/messages';
import { KuraRung, KuraVm } from '../../src/search-attributes';
import { Kura, guardianWorkflowId, type KuraVms } from '../../src/client';
import { labVolumePath } from '../../src/lab/files';
import { ImageStore } from '../../src/images/store';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, failureOf, sha256, startWorkers, treeFingerprint, type TestLab } from '../support/harness';
import { RUNG_ACTIONS, actionsOf, lastSeq, makeVmLab, policyOf, startGuardian, until } from '../support/vm-lab';
import { decodePayload } from '../../src/codec/data-converter';

let lab: TestLab & { vms: string[] };
let workers: KuraWorkers;
let client: Client;
let vms: KuraVms;
let close: () => Promise<void>;
let webhook: Server;
const posted: Record<string, unknown>[] = [];

beforeAll(async () => {
  // The hand-over's webhook: a real HTTP server on loopback that records what it is sent.
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      posted.push(JSON.parse(body) as Record<string, unknown>);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  const port = (webhook.address() as { port: number }).port;
  lab = await makeVmLab({
    vms: 15,
    hosts: 3,
    edit: (cfg) => void (cfg.notify = { webhook: `http://127.0.0.1:${port}/kura` }),
  });
  workers = await startWorkers(lab);
  ({ client, close } = await connectKura(lab));
  vms = new Kura(client, lab.loaded, lab.taskQueue).vms;
});

afterAll(async () => {
  await workers?.shutdown();
  await close?.();
  await new Promise((r) => webhook?.close(r));
  lab?.cleanup();
});

function volumeFile(vm: string, which: 'softwareVolume' | 'dataVolume'): string {
  const ref = lab.loaded.config.sites[0]!.vms.find((v) => v.name === vm)![which];
  const [array, volume] = ref.split('/') as [string, string];
  return labVolumePath(lab.paths, lab.site, array, volume);
}

function injectFault(vm: string, depth: CureDepth): void {
  const state = new LabState(lab.paths.labState);
  state.setVmFault(lab.site, vm, depth);
  state.close();
}

async function guardianView(vm: string): Promise<GuardianView> {
  return client.workflow.getHandle(guardianWorkflowId(vm)).query(guardianQuery);
}

/** Reports a failure and returns the ladder it started, once that ladder has ended. */
async function reportAndRecover(vm: string, reason: string): Promise<LadderResult> {
  const before = (await guardianView(vm)).state.incidents;
  await vms.reportFailure(vm, reason);
  const g = await until(
    () => guardianView(vm),
    (v) => v.state.incidents > before,
  );
  const id = g.currentLadder ?? g.state.lastLadder!;
  // The guardian names the ladder just before the server has started it.
  await until(
    () => client.workflow.getHandle(id).describe(),
    (d) => d.workflowId === id,
  );
  return client.workflow.getHandle(id).result();
}

describe('the recovery ladder', () => {
  it('recovers each cure depth at exactly its rung, every lower rung having run exactly once', async () => {
    const depths = CURE_DEPTHS.filter((d) => d !== 'none');
    const results = await Promise.all(
      depths.map(async (depth, i) => {
        const vm = lab.vms[i]!;
        await startGuardian(client, lab, vm);
        // A data image to swap in: the data-depth fault is cured by it, the guarantee-depth one is not.
        await vms.backupData(vm);
        const since = lastSeq(lab);
        injectFault(vm, depth);
        const result = await reportAndRecover(vm, `test fault cured by ${depth}`);
        return { depth, vm, result, actions: actionsOf(lab, vm, since) };
      }),
    );
    for (const { depth, result, actions } of results) {
      const cured = rungForDepth(depth);
      expect(result.outcome, depth).toBe('recovered');
      expect(result.rung, depth).toBe(cured);
      const order = ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap', 'guarantee-swap'];
      const expected = order.slice(0, order.indexOf(cured) + 1).flatMap((r) => RUNG_ACTIONS[r]!);
      expect(actions, depth).toEqual(expected);
      const ran = result.view.rungs
        .filter((r) => r.attempts.length > 0)
        .map((r) => [r.rung, r.status, r.attempts.length]);
      expect(ran, depth).toEqual(
        order.slice(0, order.indexOf(cured) + 1).map((r) => [r, r === cured ? 'cured' : 'failed', 1]),
      );
    }
  });

  it('leaves the data volume equal to the backup image byte for byte and the software volume untouched', async () => {
    const vm = lab.vms[5]!;
    await startGuardian(client, lab, vm);
    const image = await vms.backupData(vm);
    const software = await sha256(volumeFile(vm, 'softwareVolume'));
    // The VM writes to its data volume after the backup: the swap must bring back the image's bytes.
    const fd = openSync(volumeFile(vm, 'dataVolume'), 'r+');
    writeSync(fd, Buffer.alloc(4096, 0xee), 0, 4096, 8192);
    closeSync(fd);
    expect(await sha256(volumeFile(vm, 'dataVolume'))).not.toBe(image.sha256);

    injectFault(vm, 'data');
    const result = await reportAndRecover(vm, 'data corrupted');
    expect(result.rung).toBe('data-swap');
    expect(await sha256(volumeFile(vm, 'dataVolume'))).toBe(image.sha256);
    expect(await sha256(image.file)).toBe(image.sha256);
    expect(await sha256(volumeFile(vm, 'softwareVolume'))).toBe(software);
  });

  it('hands an incurable fault to a person, refuses wrong decisions, and a rebuild on a substitute host brings the VM back', async () => {
    const vm = lab.vms[6]!;
    await startGuardian(client, lab, vm);
    await vms.backupData(vm);
    const since = lastSeq(lab);
    injectFault(vm, 'none');
    await vms.reportFailure(vm, 'hardware gone bad');
    const waiting = await until(
      () => vms.ladder(vm),
      (v) => v.status === 'waiting-for-human',
    );
    expect(waiting.status).toBe('waiting-for-human');
    expect(waiting.currentRung).toBe('human');
    expect(actionsOf(lab, vm, since)).toEqual(
      ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap', 'guarantee-swap'].flatMap((r) => RUNG_ACTIONS[r]!),
    );
    // People were told, by webhook, what was tried and what they can do.
    const told = await until(
      async () => posted.find((p) => p.vm === vm),
      (p) => p !== undefined,
      10_000,
    );
    expect(told).toMatchObject({
      subject: expect.stringContaining('needs a person'),
      workflowId: waiting.workflowId,
      tried: ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap', 'guarantee-swap'],
      rebuild: `kura ladder rebuild ${vm} --host <substitute host>`,
    });
    // The UI can list the VM as in recovery, with its rung.
    const listed = await until(
      async () => {
        const out: { vm: unknown; rung: unknown }[] = [];
        for await (const w of client.workflow.list({
          query: `KuraKind = "ladder" AND KuraVm = "${vm}" AND ExecutionStatus = "Running"`,
        })) {
          out.push({ vm: w.typedSearchAttributes.get(KuraVm), rung: w.typedSearchAttributes.get(KuraRung) });
        }
        return out;
      },
      (l) => l.length === 1 && l[0]!.rung === 'human',
    );
    expect(listed).toEqual([{ vm, rung: 'human' }]);
    // The operator's page names the ladder as waiting for a person, with what was tried and what to do.
    const status = new Kura(client, lab.loaded, lab.taskQueue).status;
    const page = await until(
      () => status.page(),
      (p) => (p.waitingForPerson ?? []).some((w) => w.vm === vm),
    );
    expect(page.waitingForPerson!.find((w) => w.vm === vm)).toEqual({
      workflowId: waiting.workflowId,
      site: lab.site,
      vm,
      reason: 'hardware gone bad',
      since: expect.any(String),
      tried: ['apl-restart', 'mw-restart', 'os-reboot', 'data-swap', 'guarantee-swap'],
      resolve: `kura ladder resolve ${vm} --note "<what was done>"`,
      rebuild: `kura ladder rebuild ${vm} --host <substitute host>`,
    });
    expect(page.running!.find((j) => j.workflowId === waiting.workflowId)).toMatchObject({
      kind: 'ladder',
      rung: 'human',
      progress: { phase: 'waiting-for-human' },
    });
    // No data backup while the VM is being recovered: its images are what it is recovered from.
    await expect(vms.backupData(vm)).rejects.toMatchObject({
      type: 'InRecovery',
      message: expect.stringContaining('is being recovered'),
    });

    // An unknown host is refused before anything is sent; the ladder keeps waiting.
    const fingerprint = treeFingerprint(lab.dir);
    const seq = lastSeq(lab);
    await expect(vms.rebuild(vm, 'host-99')).rejects.toMatchObject({
      type: 'NotFound',
      message: expect.stringContaining('no host "host-99"'),
    });
    await expect(vms.resolve(vm, '')).rejects.toMatchObject({
      type: 'InvalidInput',
      message: expect.stringContaining('note'),
    });
    // The ladder's own validator refuses them too, for a client that skips those checks.
    const ladder = client.workflow.getHandle(waiting.workflowId);
    expect(
      failureOf(await ladder.executeUpdate(resolveUpdate, { args: [{ note: '' }] }).catch((e: unknown) => e)),
    ).toEqual({
      type: 'InvalidInput',
      message: expect.stringMatching(/^invalid resolve request: note: say what was done/),
    });
    expect(
      failureOf(await ladder.executeUpdate(rebuildUpdate, { args: [{ host: 'host-99' }] }).catch((e: unknown) => e)),
    ).toEqual({ type: 'NotFound', message: expect.stringMatching(/^no host "host-99" in site /) });
    expect(lastSeq(lab)).toBe(seq);
    expect(treeFingerprint(lab.dir)).toBe(fingerprint);
    expect((await vms.ladder(vm)).status).toBe('waiting-for-human');

    const substitute = lab.loaded.config.sites[0]!.hosts.find(
      (h) => h.name !== lab.loaded.config.sites[0]!.vms.find((v) => v.name === vm)!.host,
    )!.name;
    const view = await vms.rebuild(vm, substitute);
    expect(view.status).toBe('rebuilt');
    expect(actionsOf(lab, vm, seq)).toEqual([['vm-rebuild', 'human']]);
    const state = new LabState(lab.paths.labState);
    const hv = new LabHypervisor(lab.loaded, state, lab.paths);
    expect((await hv.describeVm(lab.site, vm)).host).toBe(substitute);
    expect((await hv.health(lab.site, vm)).healthy).toBe(true);
    state.close();
    // Rebuilt from the two images: the software volume from the software image, the data from the latest data image.
    const images = new ImageStore(lab.paths.home);
    expect(await sha256(volumeFile(vm, 'softwareVolume'))).toBe(images.get(`${vm}@software`).sha256);
    expect(await sha256(volumeFile(vm, 'dataVolume'))).toBe(images.list(lab.site, vm, 'data')[0]!.sha256);
    images.close();
    const g = await until(
      () => guardianView(vm),
      (v) => v.currentLadder === null,
    );
    expect(g.currentLadder).toBeNull();
  });

  it('refuses an unknown VM, and resolve or rebuild when no ladder waits, changing nothing', async () => {
    const vm = lab.vms[7]!;
    await startGuardian(client, lab, vm);
    await until(
      () => guardianView(vm),
      (v) => v.vm === vm,
    );
    const fingerprint = treeFingerprint(lab.dir);
    const seq = lastSeq(lab);
    await expect(vms.backupData('no-such-vm')).rejects.toMatchObject({
      type: 'NotFound',
      message: expect.stringContaining('no VM "no-such-vm"'),
    });
    await expect(vms.reportFailure('no-such-vm', 'x')).rejects.toMatchObject({
      type: 'NotFound',
      message: expect.stringContaining('no VM "no-such-vm"'),
    });
    await expect(vms.resolve(vm, 'fixed it')).rejects.toMatchObject({
      type: 'NotWaiting',
      message: expect.stringContaining('no recovery ladder of it is running'),
    });
    await expect(vms.rebuild(vm, 'host-01')).rejects.toMatchObject({
      type: 'NotWaiting',
      message: expect.stringContaining('no recovery ladder of it is running'),
    });
    await expect(vms.rebuild(vm, 'host-99')).rejects.toMatchObject({
      type: 'NotFound',
      message: expect.stringContaining('no host "host-99"'),
    });
    const invalid = await client.workflow
      .getHandle(guardianWorkflowId(vm))
      .executeUpdate(requestDataBackupUpdate, { args: [{ requestedBy: '' }] })
      .catch((e: unknown) => e);
    expect(failureOf(invalid)).toEqual({
      type: 'InvalidInput',
      message: expect.stringMatching(/^invalid data backup request: requestedBy: /),
    });
    expect(lastSeq(lab)).toBe(seq);
    expect(treeFingerprint(lab.dir)).toBe(fingerprint);
    expect((await guardianView(vm)).state).toMatchObject({ incidents: 0, backups: 0 });
  });

  it('continues up the ladder when the VM fails again within the stability window, and starts at the bottom after it', async () => {
    const vm = lab.vms[8]!;
    await startGuardian(client, lab, vm, policyOf(lab, { stabilityWindowMs: 10 * 60_000 }));
    injectFault(vm, 'apl');
    const first = await reportAndRecover(vm, 'first');
    expect(first.rung).toBe('apl-restart');
    const since = lastSeq(lab);
    injectFault(vm, 'apl');
    const second = await reportAndRecover(vm, 'again, within the window');
    // The APL restart already failed to hold: the second ladder starts one rung higher.
    expect(second.view.rungs.find((r) => r.rung === 'apl-restart')?.status).toBe('skipped');
    expect(second.rung).toBe('mw-restart');
    expect(actionsOf(lab, vm, since)).toEqual([['mw-restart', 'mw-restart']]);

    // Healthy for longer than the window (0 ms here): the next failure starts at the bottom again.
    const other = lab.vms[9]!;
    await startGuardian(client, lab, other, policyOf(lab, { stabilityWindowMs: 0 }));
    injectFault(other, 'apl');
    expect((await reportAndRecover(other, 'first')).rung).toBe('apl-restart');
    const from = lastSeq(lab);
    injectFault(other, 'mw');
    const again = await reportAndRecover(other, 'later');
    expect(again.rung).toBe('mw-restart');
    expect(actionsOf(lab, other, from)).toEqual([
      ['apl-restart', 'apl-restart'],
      ['mw-restart', 'mw-restart'],
    ]);
  });
});

describe('the recovery ladder, per rung and by hand', () => {
  it("tries a rung the policy's number of times before widening the range", async () => {
    const vm = lab.vms[10]!;
    const base = policyOf(lab);
    await startGuardian(client, lab, vm, {
      ...base,
      rungs: { ...base.rungs, 'apl-restart': { attempts: 3, healthWaitMs: 200, backoffMs: 50 } },
    });
    const since = lastSeq(lab);
    injectFault(vm, 'mw');
    const result = await reportAndRecover(vm, 'needs the middleware');
    expect(result.rung).toBe('mw-restart');
    expect(actionsOf(lab, vm, since)).toEqual([
      ['apl-restart', 'apl-restart'],
      ['apl-restart', 'apl-restart'],
      ['apl-restart', 'apl-restart'],
      ['mw-restart', 'mw-restart'],
    ]);
    const apl = result.view.rungs.find((r) => r.rung === 'apl-restart')!;
    expect(apl.attempts.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, 'unhealthy'],
      [2, 'unhealthy'],
      [3, 'unhealthy'],
    ]);
    // Each retry waited the rung's backoff after the previous attempt's health wait ended.
    for (let i = 1; i < apl.attempts.length; i++) {
      expect(Date.parse(apl.attempts[i]!.startedAt) - Date.parse(apl.attempts[i - 1]!.endedAt!)).toBeGreaterThanOrEqual(
        50,
      );
    }
  });

  it('escalates a rung after N health checks in a row report a definite failure, without waiting out its health wait', async () => {
    const vm = lab.vms[12]!;
    const base = policyOf(lab);
    // A health wait of ten minutes per rung: only the failed checks can end the lower rungs' waits.
    const long = { attempts: 1, healthWaitMs: 600_000, backoffMs: 0, failedChecks: 2 };
    await startGuardian(client, lab, vm, {
      ...base,
      rungs: { ...base.rungs, 'apl-restart': long, 'mw-restart': long, 'os-reboot': long },
    });
    const since = lastSeq(lab);
    injectFault(vm, 'os');
    const result = await reportAndRecover(vm, 'needs an OS reboot');
    expect(result.rung).toBe('os-reboot');
    expect(actionsOf(lab, vm, since)).toEqual([
      ['apl-restart', 'apl-restart'],
      ['mw-restart', 'mw-restart'],
      ['os-reboot', 'os-reboot'],
    ]);
    const attempt = (rung: string) => result.view.rungs.find((r) => r.rung === rung)!.attempts;
    for (const rung of ['apl-restart', 'mw-restart']) {
      const [a, more] = attempt(rung);
      expect(more, rung).toBeUndefined();
      expect(a, rung).toMatchObject({
        outcome: 'unhealthy',
        healthEnd: 'failed-checks',
        failedChecks: 2,
        escalateAfter: 2,
        healthLimitMs: 600_000,
      });
      expect(a!.detail, rung).toMatch(/escalated after 2 failed health checks in a row/);
      // The checks of a whole wait would be 600 000 / 25 = 24 000; the VM restarting for a few
      // tens of milliseconds, then failing twice, takes a handful.
      expect(a!.checks, rung).toBeGreaterThanOrEqual(2);
      expect(a!.checks, rung).toBeLessThan(100);
    }
    expect(attempt('os-reboot')[0]).toMatchObject({ outcome: 'healthy', healthEnd: 'healthy', failedChecks: 0 });

    // The history holds each health wait once, asked to end after 2 failed checks, and what it answered.
    const history = await client.workflow.getHandle(result.view.workflowId).fetchHistory();
    const waits = (history.events ?? []).filter(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'awaitHealthy',
    );
    expect(waits).toHaveLength(3);
    const results = (history.events ?? [])
      .map((e) => e.activityTaskCompletedEventAttributes?.result?.payloads?.[0])
      .filter((p) => p !== undefined && p !== null);
    // Stored encrypted: decoded as the client decodes its own answers.
    const completed = (
      await Promise.all(results.map((p) => decodePayload<{ end?: string; failedChecks?: number } | null>(client, p)))
    ).filter((r): r is { end?: string; failedChecks?: number } => r !== null && r?.end !== undefined);
    expect(completed.map((r) => [r.end, r.failedChecks])).toEqual([
      ['failed-checks', 2],
      ['failed-checks', 2],
      ['healthy', 0],
    ]);
  });

  it('waits the whole health wait when early escalation is off (failedChecks 0)', async () => {
    const vm = lab.vms[13]!;
    const base = policyOf(lab);
    const off = { attempts: 1, healthWaitMs: 300, backoffMs: 0, failedChecks: 0 };
    await startGuardian(client, lab, vm, { ...base, rungs: { ...base.rungs, 'apl-restart': off } });
    injectFault(vm, 'mw');
    const result = await reportAndRecover(vm, 'needs the middleware');
    expect(result.rung).toBe('mw-restart');
    const [a] = result.view.rungs.find((r) => r.rung === 'apl-restart')!.attempts;
    expect(a).toMatchObject({ outcome: 'unhealthy', healthEnd: 'timeout', escalateAfter: 0 });
    // Failing at every check after its 30 ms restart, it still made the checks of the whole wait.
    expect(a!.failedChecks).toBeGreaterThan(2);
    expect(a!.healthWaitMs).toBeGreaterThanOrEqual(300);
  });

  it('shows a rung in its health wait: how long it has waited and the most it will wait still', async () => {
    const vm = lab.vms[14]!;
    const base = policyOf(lab);
    const patient = { attempts: 1, healthWaitMs: 600_000, backoffMs: 0, failedChecks: 0 };
    await startGuardian(client, lab, vm, { ...base, rungs: { ...base.rungs, 'apl-restart': patient } });
    injectFault(vm, 'mw');
    await vms.reportFailure(vm, 'waits at the APL restart');
    const view = await until(
      () => vms.ladder(vm),
      (v) => v.rungs[0]!.attempts[0]?.healthSince !== undefined,
    );
    const status = new Kura(client, lab.loaded, lab.taskQueue).status;
    const page = await until(
      () => status.page(),
      (p) => (p.running ?? []).some((j) => j.workflowId === view.workflowId && j.healthWait !== undefined),
    );
    const job = page.running!.find((j) => j.workflowId === view.workflowId)!;
    expect(job).toMatchObject({ kind: 'ladder', target: vm, rung: 'apl-restart', progress: { phase: 'climbing' } });
    expect(job.healthWait).toMatchObject({
      rung: 'apl-restart',
      attempt: 1,
      since: view.rungs[0]!.attempts[0]!.healthSince,
      escalateAfter: 0,
    });
    expect(job.healthWait!.waitedMs + job.healthWait!.remainingMs).toBe(600_000);
    // The VM is left to the test's end: stop its ladder and guardian so nothing waits ten minutes.
    await client.workflow.getHandle(view.workflowId).terminate('test done');
    await client.workflow.getHandle(guardianWorkflowId(vm)).terminate('test done');
  });

  it('ends a hand-over when a person resolves it, and the next failure starts at the bottom', async () => {
    const vm = lab.vms[11]!;
    await startGuardian(client, lab, vm, policyOf(lab, { stabilityWindowMs: 10 * 60_000 }));
    injectFault(vm, 'none');
    await vms.reportFailure(vm, 'needs a person');
    await until(
      () => vms.ladder(vm),
      (v) => v.status === 'waiting-for-human',
    );
    const state = new LabState(lab.paths.labState);
    state.clearVmFault(lab.site, vm);
    state.close();
    const view = await vms.resolve(vm, 'replaced the line card');
    expect(view.status).toBe('resolved');
    expect(view.note).toMatch(/: replaced the line card$/);
    const g = await until(
      () => guardianView(vm),
      (v) => v.currentLadder === null,
    );
    expect(g.state.lastRecovery).toBeUndefined();
    const since = lastSeq(lab);
    injectFault(vm, 'apl');
    expect((await reportAndRecover(vm, 'later')).rung).toBe('apl-restart');
    expect(actionsOf(lab, vm, since)).toEqual([['apl-restart', 'apl-restart']]);
  });
});

describe('the VM guardian', () => {
  it('backs up only the data volume on its interval, keeps the last K images verified, and continues as new', async () => {
    const local = await makeVmLab({ vms: 1, ladder: { keepImages: 2 } });
    const w = await startWorkers(local);
    try {
      const vm = local.vms[0]!;
      const handle = await startGuardian(
        client,
        local,
        vm,
        policyOf(local, { backupEveryMs: 150, maxHistoryEvents: 60 }),
      );
      const firstRun = (await handle.describe()).runId;
      const g = await until(
        () => client.workflow.getHandle(guardianWorkflowId(vm)).query(guardianQuery),
        (v) => v.state.backups >= 6,
      );
      expect(g.state.backups).toBeGreaterThanOrEqual(6);
      const images = new ImageStore(local.paths.home);
      const kept = images.list(local.site, vm, 'data');
      images.close();
      expect(kept).toHaveLength(2);
      const dataSha = await sha256(local.dataVolume(vm));
      for (const img of kept) {
        expect(await sha256(img.file)).toBe(img.sha256);
        expect(img.sha256).toBe(dataSha);
        expect(img.sizeBytes).toBe(1024 * 1024);
      }
      // The state carried across continue-as-new: a new run, the backup count still growing.
      const latest = await client.workflow.getHandle(guardianWorkflowId(vm)).describe();
      expect(latest.runId).not.toBe(firstRun);
      await client.workflow.getHandle(guardianWorkflowId(vm)).terminate('test done');
    } finally {
      await w.shutdown();
      local.cleanup();
    }
  });
});
