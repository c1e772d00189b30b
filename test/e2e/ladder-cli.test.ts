/**
 * `kura vm`, `kura ladder` and `kura lab vm-fault` as a person runs them: real processes, the
 * worker starting every VM's guardian, a fault found by the guardian's own health polling, the
 * ladder shown rung by rung, a hand-over resolved by a rebuild, and refusals with exit code 2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LadderView } from '../../src/domain/ladder';
import type { KuraWorkers } from '../../src/worker';
import { cliJson, runKura, sha256, startWorkers } from '../support/harness';
import { makeVmLab, until } from '../support/vm-lab';

let lab: Awaited<ReturnType<typeof makeVmLab>>;
let workers: KuraWorkers;

const kura = (args: string[]) => runKura(lab, args);

const json = cliJson;

beforeAll(async () => {
  // The worker starts the guardians (guardVms), which poll their VM's health every 100 ms.
  lab = await makeVmLab({ vms: 2, hosts: 2, ladder: { guardVms: true, healthPoll: '100ms' } });
  workers = await startWorkers(lab);
});

afterAll(async () => {
  await workers?.shutdown();
  lab?.cleanup();
});

describe('kura vm and kura ladder', () => {
  it('backs up only the data volume on request', async () => {
    const vm = lab.vms[0]!;
    const r = await kura(['vm', 'backup-data', vm, '--json']);
    expect(r.code).toBe(0);
    const { image } = json<{ image: { imageId: string; kind: string; sha256: string; sizeBytes: number } }>(r);
    expect(image.kind).toBe('data');
    expect(image.sha256).toBe(await sha256(lab.dataVolume(vm)));
    expect(image.sizeBytes).toBe(1024 * 1024);
  });

  it('lets the guardian find an injected fault and shows the ladder that cured it at the OS reboot', async () => {
    const vm = lab.vms[0]!;
    const f = await kura(['lab', 'vm-fault', vm, '--cured-by', 'os', '--json']);
    expect(f.code).toBe(0);
    expect(json<{ curedBy: string }>(f).curedBy).toBe('os');
    const view = await until(
      async () => json<LadderView>(await kura(['ladder', 'show', vm, '--json'])),
      (v) => v.status === 'recovered',
    );
    expect(view.reason).toMatch(/^health poll: /);
    expect(view.rungs.map((r) => [r.rung, r.status])).toEqual([
      ['apl-restart', 'failed'],
      ['mw-restart', 'failed'],
      ['os-reboot', 'cured'],
      ['data-swap', 'pending'],
      ['guarantee-swap', 'pending'],
      ['human', 'pending'],
    ]);
    const text = await kura(['ladder', 'show', vm]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/recovered/);
    expect(text.stdout).toMatch(/os-reboot\s+cured\s+1/);
  });

  it('refuses wrong input and requests no ladder waits for, with exit code 2', async () => {
    const vm = lab.vms[0]!;
    const depth = await kura(['lab', 'vm-fault', vm, '--cured-by', 'sometimes', '--json']);
    expect(depth.code).toBe(2);
    expect(json<{ error: { type: string; message: string } }>(depth).error).toMatchObject({
      type: 'InvalidInput',
      message: expect.stringContaining('apl, mw, os, data, guarantee, none'),
    });
    const resolve = await kura(['ladder', 'resolve', vm, '--note', 'fixed', '--json']);
    expect(resolve.code).toBe(2);
    expect(json<{ error: { type: string; message: string } }>(resolve).error).toMatchObject({
      type: 'NotWaiting',
      message: expect.stringContaining('has ended'),
    });
    const host = await kura(['ladder', 'rebuild', vm, '--host', 'host-99']);
    expect(host.code).toBe(2);
    expect(host.stderr).toMatch(/NotFound: no host "host-99"/);
    const unknown = await kura(['vm', 'backup-data', 'no-such-vm']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/NotFound: no VM "no-such-vm"/);
    const unknownFault = await kura(['lab', 'vm-fault', 'no-such-vm', '--cured-by', 'os']);
    expect(unknownFault.code).toBe(2);
    expect(unknownFault.stderr).toMatch(/NotFound: no VM "no-such-vm" in .*kura\.yaml; VMs include /);
  });

  it('hands an incurable VM to a person and rebuilds it on a substitute host', async () => {
    const vm = lab.vms[1]!;
    expect((await kura(['lab', 'vm-fault', vm, '--cured-by', 'none', '--report'])).code).toBe(0);
    const waiting = await until(
      async () => json<LadderView>(await kura(['ladder', 'show', vm, '--json'])),
      (v) => v.status === 'waiting-for-human',
    );
    expect(waiting.currentRung).toBe('human');
    const r = await kura(['ladder', 'rebuild', vm, '--host', 'host-01', '--json']);
    expect(r.code).toBe(0);
    const view = json<LadderView>(r);
    expect(view.status).toBe('rebuilt');
    expect(view.note).toMatch(/^rebuilt on host-01 from /);
  });
});
