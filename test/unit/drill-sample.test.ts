/**
 * A drill's sample: every class represented, `perClass` targets of each taken in name order from
 * the rotation's offset, and a class whose only target lacks a backup still drilled (to fail).
 */
import { describe, expect, it } from 'vitest';
import { drillHostName, pickSample, type DrillCandidate } from '../../src/domain/drill';

const c = (className: DrillCandidate['className'], target: string, missing?: string): DrillCandidate => ({
  className,
  site: 'hospital',
  target,
  backupIds: [`${target}@1`],
  ...(missing === undefined ? {} : { missing }),
});
const estate = [
  c('vm', 'vm-003'),
  c('vm', 'vm-001'),
  c('vm', 'vm-002'),
  c('server', 'fs-01'),
  c('server', 'fs-02'),
  c('client', 'cl-01', 'no backup of cl-01 in the store'),
];

describe('a drill sample', () => {
  it('represents every class, rotating through each one by the offset', () => {
    expect(pickSample(estate, 1, 0).map((x) => x.target)).toEqual(['cl-01', 'fs-01', 'vm-001']);
    expect(pickSample(estate, 1, 1).map((x) => x.target)).toEqual(['cl-01', 'fs-02', 'vm-002']);
    expect(pickSample(estate, 2, 2).map((x) => x.target)).toEqual(['cl-01', 'fs-01', 'fs-02', 'vm-003', 'vm-001']);
    expect(pickSample(estate, 1, 0)[0]!.missing).toBe('no backup of cl-01 in the store');
  });

  it("names the drill's own host the same for the same drill and differently for another", () => {
    expect(drillHostName('drill/20261130T010000Z')).toMatch(/^drill-[0-9a-f]{8}$/);
    expect(drillHostName('drill/20261130T010000Z')).toBe(drillHostName('drill/20261130T010000Z'));
    expect(drillHostName('drill/20261130T010000Z')).not.toBe(drillHostName('drill/20261201T010000Z'));
  });
});
