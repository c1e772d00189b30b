/**
 * Each class's own RPO from kura.yaml: validated as a positive duration with 25 h by default, and
 * the estate report measures every target against its class's RPO, so a target of a class with a
 * short RPO is a breach — listed and drawn first — while older backups of other classes are not.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DrillLog } from '../../src/catalog/drills';
import { Catalog } from '../../src/catalog/store';
import { loadConfig } from '../../src/config/load';
import { ClassesSchema, DEFAULT_CLASS_RPO_MS } from '../../src/domain/classes';
import { InvalidInputError } from '../../src/domain/errors';
import { parseWith } from '../../src/domain/validate';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { gatherEstate, renderEstateReport, type EstateData } from '../../src/report/estate';
import { addStoreBackup } from '../support/store-backups';

const MiB = 1024 * 1024;
const HOUR = 3_600_000;
const NOW = Date.parse('2026-11-08T00:30:00.000Z');
let dir: string;

/** The estate of one VM, one file server and one client, the server's class given `rpo`, at NOW. */
function estate(serverRpo: string | undefined): EstateData {
  const cfg = hospitalPreset({ vms: 1, fileServers: 1, clients: 1, site: 'hospital' });
  const classes = (cfg as { classes: { server: Record<string, unknown> } }).classes;
  if (serverRpo !== undefined) classes.server.rpo = serverRpo;
  const sub = mkdtempSync(path.join(dir, 'estate-'));
  writeFileSync(path.join(sub, 'kura.yaml'), renderConfigYaml(cfg));
  const loaded = loadConfig(path.join(sub, 'kura.yaml'));
  const catalog = new Catalog(path.join(sub, 'catalog.db'));
  const drills = new DrillLog(path.join(sub, 'catalog.db'));
  try {
    const add = (target: string, ageHours: number) =>
      addStoreBackup(catalog, { target, dataTime: new Date(NOW - ageHours * HOUR).toISOString(), sizeBytes: MiB });
    // The server's backup is the newest of all; the VM's and the client's are older but inside 25 h.
    add('vm-001/software', 20);
    add('vm-001/data', 20);
    add('fs-01', 2);
    add('cl-01', 12);
    return gatherEstate({ loaded, catalog, drills, lag: null, now: NOW });
  } finally {
    catalog.close();
    drills.close();
  }
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-rpo-'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a class's RPO", () => {
  it('reports a target of a class with a short RPO as a breach, first, though its backup is the newest', () => {
    const data = estate('1h');
    expect(data.protection.map((p) => [p.className, p.target, p.breach, p.rpoMs])).toEqual([
      ['server', 'fs-01', true, HOUR],
      // The others against 25 h, the closest to it first.
      ['vm', 'vm-001', false, DEFAULT_CLASS_RPO_MS],
      ['client', 'cl-01', false, DEFAULT_CLASS_RPO_MS],
    ]);
    expect(data.protection[0]!.ageMs).toBe(2 * HOUR);
    // The protection plot draws the breach first, red, against its own RPO.
    const html = renderEstateReport(data);
    const plot = /<svg[^>]*aria-label="Protection per class[^"]*"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? '';
    // The bars, not the white frame: each is a row (22) less 8 high.
    const bars = [...plot.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="14" fill="(#[0-9a-f]{6})"\/>/g)];
    expect(bars.map((b) => b[1])).toEqual(['#d64545', '#3f8f5a', '#3f8f5a']);
    expect(plot.indexOf('server fs-01')).toBeLessThan(plot.indexOf('vm vm-001'));
    expect(html).toContain('<td>server</td><td>fs-01</td>');
    expect(html).toMatch(/<b>1 of 3<\/b>targets past their RPO/);
  });

  it('is 25 h when kura.yaml gives none, so the same estate has no breach', () => {
    const data = estate(undefined);
    expect(data.protection.every((p) => p.rpoMs === DEFAULT_CLASS_RPO_MS && !p.breach)).toBe(true);
    expect(data.protection.map((p) => p.target)).toEqual(['vm-001', 'cl-01', 'fs-01']);
  });

  it('is refused unless a positive duration, naming the class', () => {
    const cls = (rpo: unknown) => ({
      server: { schedule: '22:00', retention: { keepLast: 1 }, rpo },
    });
    expect(parseWith(ClassesSchema, cls('90m'), 'classes').server?.rpo).toBe(90 * 60_000);
    expect(() => parseWith(ClassesSchema, cls('soon'), 'classes')).toThrow(InvalidInputError);
    expect(() => parseWith(ClassesSchema, cls('soon'), 'classes')).toThrow(
      /invalid classes: server\.rpo: "soon" is not a duration; write e\.g\. 500ms, 30s, 5m or 1h/,
    );
    expect(() => parseWith(ClassesSchema, cls('0s'), 'classes')).toThrow(/server\.rpo: must be more than 0/);
  });
});
