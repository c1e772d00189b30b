/**
 * The benchmarks' verdicts as bench/all.ts reads them back, and the fleet curve's SVG: the figures
 * a person reads in the README must be the ones the runs printed.
 */
import { describe, expect, it } from 'vitest';
import { passes, targetText, verdictsIn, VERDICT_PREFIX, type Verdict } from '../../bench/support/verdict';
import { fleetSvg } from '../../bench/support/fleet-svg';

const MiB = 1024 * 1024;

describe('benchmark verdicts', () => {
  it('pass at the target in either direction and fall short past it', () => {
    expect(passes({ now: 0.5, target: 0.5, direction: 'atLeast' })).toBe(true);
    expect(passes({ now: 0.49, target: 0.5, direction: 'atLeast' })).toBe(false);
    expect(passes({ now: 1.3, target: 1.3, direction: 'atMost' })).toBe(true);
    expect(passes({ now: 1.31, target: 1.3, direction: 'atMost' })).toBe(false);
    expect(targetText({ target: 0.5, direction: 'atLeast' })).toBe('≥ 0.5');
    expect(targetText({ target: 1.3, direction: 'atMost' })).toBe('≤ 1.3');
  });

  it('are read back from a benchmark output in the order printed, other lines ignored', () => {
    const a: Verdict = { bench: 'spine', metric: 'x', now: 0.3, target: 0.5, direction: 'atLeast' };
    const b: Verdict = { bench: 'fleet', metric: 'y', now: 0.9, target: 1.3, direction: 'atMost', note: 'n' };
    const output = [
      'spine benchmark: …',
      `${VERDICT_PREFIX}${JSON.stringify(a)}`,
      'more',
      `${VERDICT_PREFIX}${JSON.stringify(b)}`,
    ].join('\n');
    expect(verdictsIn(output)).toEqual([a, b]);
  });
});

describe('the fleet curve', () => {
  it('draws one point per estate size with its time per VM, the target line and each size’s memory and database', () => {
    const svg = fleetSvg(
      [
        {
          vms: 77,
          perVm: 0.878,
          workerPeakRss: 473 * MiB,
          serverPeakRss: 203 * MiB,
          dbBytes: 11 * MiB,
          overLimit: false,
        },
        {
          vms: 1000,
          perVm: 0.769,
          workerPeakRss: 632 * MiB,
          serverPeakRss: 271 * MiB,
          dbBytes: 90 * MiB,
          overLimit: false,
        },
      ],
      { target: 1.3, k: 4, size: 8 * MiB, date: '2026-11-29', guardians: false },
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<circle /g)).toHaveLength(2);
    expect(svg).toContain('>0.878 s<');
    expect(svg).toContain('>0.769 s<');
    expect(svg).toContain('target: 1.3 × the time per VM at 77');
    expect(svg).toContain('>632 MiB<');
    expect(svg).toContain('>90 MiB<');
    expect(svg).toContain('2026-11-29');
  });
});
