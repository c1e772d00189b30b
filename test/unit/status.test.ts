/**
 * The status page's pure parts: which targets break their RPO, the class of a target, the RPO
 * setting of a policy, and the text page — its sections in order, a section the page lacks left
 * out, and a rung in progress saying how long it has waited for health and how long it will wait.
 */
import { describe, expect, it } from 'vitest';
import { PolicySchema } from '../../src/domain/inventory';
import { StatusPageSchema, rpoBreach, targetClassOf, type StatusPage } from '../../src/domain/status';
import { renderStatus } from '../../src/cli/status';
import { renderLadder } from '../../src/cli/ladder';
import { RUNGS, type LadderView } from '../../src/domain/ladder';

const H = 3_600_000;

describe('the RPO', () => {
  it('is broken by a last good backup older than the RPO, or by none at all', () => {
    const now = Date.parse('2026-11-29T12:00:00.000Z');
    const last = (dataTime: string) => ({ backupId: 'vm-001@x', dataTime });
    expect(rpoBreach(last('2026-11-29T02:00:00.000Z'), 26 * H, now)).toEqual({ breach: false, ageMs: 10 * H });
    expect(rpoBreach(last('2026-11-28T02:00:00.000Z'), 26 * H, now)).toEqual({ breach: true, ageMs: 34 * H });
    expect(rpoBreach(undefined, 26 * H, now)).toEqual({ breach: true, ageMs: null });
  });

  it('is 26 hours for a policy that sets none, takes a duration, and refuses zero', () => {
    const base = { name: 'p', targets: ['*'], nightly: '02:00' };
    expect(PolicySchema.parse(base).rpo).toBe(26 * H);
    expect(PolicySchema.parse({ ...base, rpo: '8h' }).rpo).toBe(8 * H);
    const zero = PolicySchema.safeParse({ ...base, rpo: '0s' });
    expect(zero.success).toBe(false);
    expect(zero.error?.issues[0]?.message).toBe('must be more than 0');
  });

  it('classes a target as a VM or an array volume', () => {
    expect(targetClassOf('vm-001')).toBe('vm');
    expect(targetClassOf('array-01/vol-7')).toBe('volume');
  });
});

const page: StatusPage = {
  at: '2026-11-29T18:40:12.000Z',
  namespace: 'default',
  taskQueue: 'kura-control',
  sites: ['hospital'],
  running: [
    {
      workflowId: 'op/backup/vm-001/20261129T183955Z',
      kind: 'backup',
      target: 'vm-001',
      site: 'hospital',
      startedAt: '2026-11-29T18:39:55.000Z',
      progress: {
        phase: 'launch',
        activity: 'copying chunk 3',
        fraction: 0.25,
        done: 1048576,
        total: 4194304,
        unit: 'bytes',
      },
    },
    {
      workflowId: 'ladder/vm-007/1',
      kind: 'ladder',
      target: 'vm-007',
      site: 'hospital',
      startedAt: '2026-11-29T18:38:00.000Z',
      progress: { phase: 'climbing', activity: 'mw-restart (health poll)', fraction: null },
      rung: 'mw-restart',
      healthWait: {
        rung: 'mw-restart',
        attempt: 1,
        since: '2026-11-29T18:40:00.000Z',
        waitedMs: 12_000,
        remainingMs: 108_000,
        escalateAfter: 3,
      },
    },
  ],
  devicesOut: [{ site: 'hospital', kind: 'drive', name: 'lib-02-drv-2', reason: 'cleaning tape stuck' }],
  problems: [{ section: 'lastNight', message: 'visibility did not answer' }],
};

describe('the status page as text', () => {
  it('shows its sections in order with progress, and leaves out the sections the page lacks', () => {
    const text = renderStatus(StatusPageSchema.parse(page));
    expect(text).toMatch(
      /^Kura status at 2026-11-29 18:40:12 UTC — namespace default, queue kura-control, sites hospital$/m,
    );
    expect(text).toMatch(
      /backup\s+vm-001\s+hospital\s+2026-11-29 18:39:55 UTC\s+\[###\.{7}\] 25% 1\.0 MiB\/4\.0 MiB  launch: copying chunk 3/,
    );
    expect(text).toMatch(
      /ladder\s+vm-007\s+.*climbing: mw-restart \(attempt 1\) has waited 12 s for health; it waits at most 108 s more \(less once 3 health checks in a row find it failing\)/,
    );
    expect(text).toMatch(/drive\s+lib-02-drv-2\s+cleaning tape stuck/);
    expect(text).toMatch(/^Not shown \(1\)\n {2}lastNight: visibility did not answer$/m);
    // No RPO, last night or waiting ladders were read: those headings are absent, not shown empty.
    expect(text).not.toMatch(/RPO|Last night|Waiting for a person/);
    expect(text.indexOf('Running now (2)')).toBeLessThan(text.indexOf('Devices out of service (1)'));
  });
});

describe('kura ladder show', () => {
  it('says, for a rung in progress, how long it has waited for health and how long it will wait still', () => {
    const view: LadderView = {
      workflowId: 'ladder/vm-001/i',
      site: 's',
      vm: 'vm-001',
      incident: 'i',
      reason: 'r',
      status: 'climbing',
      currentRung: 'apl-restart',
      startedAt: '2026-11-29T10:00:00.000Z',
      rungs: RUNGS.map((rung) => ({ rung, status: rung === 'apl-restart' ? 'running' : 'pending', attempts: [] })),
    };
    view.rungs[0]!.attempts.push({
      attempt: 1,
      startedAt: '2026-11-29T10:00:00.000Z',
      outcome: 'running',
      healthSince: '2026-11-29T10:00:02.000Z',
      healthLimitMs: 120_000,
      escalateAfter: 0,
    });
    expect(renderLadder(view, Date.parse('2026-11-29T10:00:32.000Z'))).toMatch(
      /^apl-restart \(attempt 1\) has waited 30 s for health; it waits at most 90 s more \(no early escalation\)$/m,
    );
  });
});
