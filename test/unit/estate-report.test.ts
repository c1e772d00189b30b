/**
 * The estate report page over a catalog of seven nights of store backups, drills and lag samples:
 * every inline SVG is well-formed XML with the plots the page promises, protection lists breaches
 * first, and the page renders in headless Chromium with no console error into a screenshot that is
 * not blank (kept under test-artifacts/).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DrillLog } from '../../src/catalog/drills';
import { Catalog } from '../../src/catalog/store';
import { loadConfig } from '../../src/config/load';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { gatherEstate, renderEstateReport, type EstateData } from '../../src/report/estate';
import { allElements, parseXml } from '../support/strict-xml';
import { decodePng, distinctColours } from '../support/png';
import { addStoreBackup } from '../support/store-backups';

const MiB = 1024 * 1024;
const ARTIFACTS = path.resolve(__dirname, '../../test-artifacts');
const NOW = Date.parse('2026-11-08T00:30:00.000Z');
let dir: string;
let data: EstateData;
let html: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-report-'));
  const cfg = hospitalPreset({ vms: 1, fileServers: 1, clients: 1, site: 'hospital' });
  writeFileSync(path.join(dir, 'kura.yaml'), renderConfigYaml(cfg));
  const loaded = loadConfig(path.join(dir, 'kura.yaml'));
  const catalog = new Catalog(path.join(dir, 'catalog.db'));
  const drills = new DrillLog(path.join(dir, 'catalog.db'));
  try {
    // The first night is full; later the VM's volumes name their changes by bitmap, the server compares digests.
    const add = (target: string, dataTime: string, sizeBytes: number, storedBytes: number, seconds: number) =>
      addStoreBackup(catalog, {
        target,
        dataTime,
        sizeBytes,
        storedBytes,
        seconds,
        changedFrom: dataTime.startsWith('2026-11-01') ? 'full' : target.startsWith('vm-') ? 'bitmap' : 'digests',
      });
    for (let d = 1; d <= 7; d++) {
      const night = `2026-11-0${d}`;
      add('vm-001/software', `${night}T01:00:00.000Z`, 4 * MiB, d === 1 ? 4 * MiB : MiB / 8, 20 + d);
      add('vm-001/data', `${night}T01:00:00.000Z`, 8 * MiB, d === 1 ? 8 * MiB : MiB / 2, 40 + d * 3);
      add('fs-01', `${night}T22:00:00.000Z`, 16 * MiB, d === 1 ? 16 * MiB : MiB, 60 + d * 5);
      // The client stopped being backed up after the fourth night: a breach of its RPO.
      if (d <= 4) add('cl-01', `${night}T12:30:00.000Z`, 4 * MiB, d === 1 ? 4 * MiB : MiB / 4, 15);
      drills.recordLag({
        at: `${night}T07:00:00.000Z`,
        lagMs: (d % 3) * 3_600_000,
        behind: d % 3,
        maxLagMs: 4 * 3_600_000,
      });
      for (const [className, target, rto] of [
        ['vm', 'vm-001', 2000 + d * 100],
        ['server', 'fs-01', 900 + d * 10],
        ['client', 'cl-01', 600],
      ] as const)
        drills.record({
          drillId: `drill/${night}`,
          target,
          className,
          site: 'hospital',
          backupId: null,
          store: 'primary',
          host: 'drill-00000001',
          startedAt: `${night}T04:00:0${className.length}.000Z`,
          endedAt: `${night}T04:01:00.000Z`,
          rtoMs: d === 6 && className === 'client' ? null : rto,
          outcome: d === 6 && className === 'client' ? 'failed' : 'healthy',
          errorType: d === 6 && className === 'client' ? 'ChecksumMismatch' : null,
          error: d === 6 && className === 'client' ? 'chunk 3 cannot be read from any store' : null,
        });
    }
    data = gatherEstate({ loaded, catalog, drills, lag: null, now: NOW });
  } finally {
    catalog.close();
    drills.close();
  }
  html = renderEstateReport(data);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs headless Chromium on a page: its console lines, and the screenshot written. */
async function chromium(file: string, png: string): Promise<{ console: string[]; code: number | null }> {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'kura-chromium-'));
  try {
    const child = spawn(
      '/usr/bin/chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${profile}`,
        `--screenshot=${png}`,
        '--window-size=800,2700',
        '--hide-scrollbars',
        '--enable-logging=stderr',
        '--v=0',
        `file://${file}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout.resume();
    const code = await new Promise<number | null>((r) => child.on('close', r));
    return { console: err.split('\n').filter((l) => /:CONSOLE[:(]|Uncaught/.test(l)), code };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

describe('the estate report', () => {
  it("counts how the newest day's store backups found their changed chunks, from the catalog", () => {
    expect(data.changes).toEqual({ day: '2026-11-07', bitmap: 2, digests: 1, full: 0, unknown: 0 });
    expect(html).toContain(
      '<b>2 of 3</b>store backups of 2026-11-07 read only their changed chunks (dirty bitmap); 1 compared digests, 0 full',
    );
  });

  it('lists protection per class with breaches first, and gathers each night', () => {
    expect(data.protection.map((p) => [p.className, p.target, p.breach])).toEqual([
      ['client', 'cl-01', true],
      ['vm', 'vm-001', false],
      ['server', 'fs-01', false],
    ]);
    expect(data.protection[0]!.ageMs).toBe(NOW - Date.parse('2026-11-04T12:30:00.000Z'));
    expect(data.dedup.at(-1)).toEqual({
      at: '2026-11-07T00:00:00.000Z',
      logical: 7 * (4 + 8 + 16) * MiB + 4 * 4 * MiB,
      stored: 28 * MiB + 6 * (MiB / 8 + MiB / 2 + MiB) + 4 * MiB + 3 * (MiB / 4),
    });
    // A night runs from noon to noon: the file server's 22:00 and the VM's 01:00 are one night.
    expect(data.nights.map((n) => n.night)).toEqual([
      '2026-10-31',
      '2026-11-01',
      '2026-11-02',
      '2026-11-03',
      '2026-11-04',
      '2026-11-05',
      '2026-11-06',
      '2026-11-07',
    ]);
    expect(data.nights[6]).toMatchObject({ jobs: 3, longestMs: 90_000, bytes: (4 + 8 + 16) * MiB });
    expect(data.nights[6]!.wallMs).toBe(3 * 3_600_000 + 61_000);
  });

  it('is one self-contained page whose SVGs are well-formed and carry each plot', () => {
    expect(html).not.toMatch(/<script|<link|src=|href=|url\(/i);
    const svgs = [...html.matchAll(/<svg[\s\S]*?<\/svg>/g)].map((m) => parseXml(m[0]));
    expect(svgs.map((s) => s.children.find((c) => c.name === 'title')?.text)).toEqual([
      'Protection per class: age of the last good backup against the RPO',
      'Store size against logical data',
      'Job durations per night',
      'Throughput per night',
      "Drills' recovery times (red: failed)",
      "The copy's lag behind the first store",
    ]);
    for (const s of svgs) expect(s.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    // Protection: the breached client's bar first, red, labelled.
    const labels = allElements(svgs[0]!)
      .filter((e) => e.name === 'text')
      .map((e) => e.text);
    expect(labels[0]).toBe('client cl-01');
    expect(labels[1]).toMatch(/^84(\.0)? h old — BREACH$/);
    expect(labels[2]).toBe('vm vm-001');
    const bars = allElements(svgs[0]!)
      .filter((e) => e.name === 'rect')
      .slice(1);
    expect(bars.map((b) => b.attrs.fill)).toEqual(['#d64545', '#3f8f5a', '#3f8f5a']);
    // Two lines over seven nights for the dedup plot; one bar per night per series for the jobs.
    expect(allElements(svgs[1]!).filter((e) => e.name === 'polyline')).toHaveLength(2);
    expect(allElements(svgs[2]!).filter((e) => e.name === 'rect' && e.children.length > 0)).toHaveLength(16);
    // 21 drilled targets, the one that failed in red.
    const drillBars = allElements(svgs[4]!).filter((e) => e.name === 'rect' && e.children.length > 0);
    expect(drillBars).toHaveLength(21);
    expect(drillBars.filter((b) => b.attrs.fill === '#d64545').map((b) => b.children[0]!.text)).toEqual([
      'cl-01: failed',
    ]);
    expect(allElements(svgs[5]!).filter((e) => e.name === 'circle')).toHaveLength(7);
  });

  it('renders in headless Chromium with no console error, into a screenshot that is not blank', async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, 'estate-report.html');
    const png = path.join(ARTIFACTS, 'estate-report.png');
    writeFileSync(file, html);
    // The check itself sees a console error: a page that logs one is caught.
    const probe = path.join(ARTIFACTS, 'console-probe.html');
    writeFileSync(probe, '<!DOCTYPE html><html><body><script>console.error("probe")</script></body></html>');
    const [page, bad] = await Promise.all([
      chromium(file, png),
      chromium(probe, path.join(ARTIFACTS, 'console-probe.png')),
    ]);
    expect(bad.console.some((l) => l.includes('"probe"'))).toBe(true);
    expect(page.code).toBe(0);
    expect(page.console).toEqual([]);
    const img = decodePng(readFileSync(png));
    expect([img.width, img.height]).toEqual([800, 2700]);
    expect(distinctColours(img)).toBeGreaterThan(20);
  });
});
