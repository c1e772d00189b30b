import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { planNight, type NightJob } from '../../src/domain/night-plan';
import { nightPlanSvg } from '../../src/domain/night-svg';
import { byClass, parseXml } from '../support/xml';
import { colourCounts, decodePng, screenshot } from '../support/chromium';

const job = (target: string, sizeBytes: number): NightJob => ({
  job: `idc/${target}`,
  policy: 'idc',
  target,
  sizeBytes,
  sizeFrom: 'catalog',
  bytesPerSecond: 100_000_000,
  rateFrom: 'configured',
});
const IDC = [job('a-www', 360e9), job('b-app', 180e9), job('a-app', 540e9), job('b-www', 720e9), job('c-db', 3e12)];
const plan = planNight({
  date: '2026-12-01',
  timezone: 'UTC',
  window: { start: '00:00', end: '06:00' },
  drives: ['lib1/d1', 'lib1/d2'],
  jobs: IDC,
});
const dir = mkdtempSync(path.join(tmpdir(), 'kura-night-svg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the night plan's SVG", () => {
  it('is well-formed XML with one lane per drive, one bar per job on its drive, and the window marked', () => {
    const svg = parseXml(nightPlanSvg(plan));
    expect(svg.name).toBe('svg');
    expect(svg.attributes.xmlns).toBe('http://www.w3.org/2000/svg');
    const lanes = byClass(svg, 'lane');
    expect(lanes.map((l) => l.attributes['data-drive'])).toEqual(['lib1/d1', 'lib1/d2']);
    const barsOf = (lane: (typeof lanes)[number]) =>
      byClass(lane, 'bar').map((b) => [b.attributes['data-job'], b.attributes['data-start'], b.attributes['data-end']]);
    expect(barsOf(lanes[0]!)).toEqual([
      ['idc/a-www', '00:00', '01:00'],
      ['idc/b-www', '01:00', '03:00'],
    ]);
    expect(barsOf(lanes[1]!)).toEqual([
      ['idc/b-app', '00:00', '00:30'],
      ['idc/a-app', '00:30', '02:00'],
    ]);
    expect(byClass(svg, 'label').map((t) => t.text)).toEqual([
      'a-www 00:00–01:00',
      'b-www 01:00–03:00',
      'b-app 00:00–00:30',
      'a-app 00:30–02:00',
    ]);
    const window = byClass(svg, 'window');
    expect(window).toHaveLength(1);
    expect(window[0]!.attributes).toMatchObject({ 'data-start': '00:00', 'data-end': '06:00' });
    expect(byClass(svg, 'tick-label').map((t) => t.text)).toEqual([
      '00:00',
      '01:00',
      '02:00',
      '03:00',
      '04:00',
      '05:00',
      '06:00',
    ]);
    expect(byClass(svg, 'unfit').map((t) => t.attributes['data-job'])).toEqual(['idc/c-db']);
    expect(byClass(svg, 'unfit')[0]!.text).toMatch(/^idc\/c-db: it needs 8\.3 h/);
  });

  it('places each bar in proportion to its time: the 1 h bar is twice as wide as the 30 min one', () => {
    const svg = parseXml(nightPlanSvg(plan));
    const width = (job: string) =>
      Number(byClass(svg, 'bar').find((b) => b.attributes['data-job'] === job)!.children[0]!.attributes.width);
    expect(width('idc/a-www') / width('idc/b-app')).toBeCloseTo(2, 2);
    expect(width('idc/b-www') / width('idc/a-www')).toBeCloseTo(2, 2);
  });

  it('escapes names that XML would otherwise break on', () => {
    const odd = planNight({
      date: '2026-12-01',
      timezone: 'UTC',
      window: { start: '00:00', end: '06:00' },
      drives: ['d<1>&"'],
      jobs: [{ ...job('a&b<c>', 1e9), job: "p/'a&b<c>'" }],
    });
    const svg = parseXml(nightPlanSvg(odd));
    expect(byClass(svg, 'lane')[0]!.attributes['data-drive']).toBe('d<1>&"');
    expect(byClass(svg, 'label')[0]!.text).toBe('a&b<c> 00:00–00:01');
  });

  it('is drawn by headless Chromium: the screenshot is not blank and shows the bars', async () => {
    const file = path.join(dir, 'plan.svg');
    writeFileSync(file, nightPlanSvg(plan));
    const pixels = decodePng(await screenshot(file, 960, 400));
    expect(pixels.width).toBe(960);
    const counts = colourCounts(pixels);
    // A blank page is one colour; the chart has the background, the window, the lanes and a colour per bar.
    expect(counts.size).toBeGreaterThan(10);
    const share = (hex: string) => (counts.get(hex) ?? 0) / (pixels.width * pixels.height);
    // The first bars' fills (a-www, b-app) each cover a visible share of the picture.
    expect(share('#4e79a7')).toBeGreaterThan(0.005);
    expect(share('#f28e2b')).toBeGreaterThan(0.002);
    expect(share('#ffffff')).toBeLessThan(0.95);
  });
});
