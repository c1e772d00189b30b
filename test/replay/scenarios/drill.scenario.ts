/**
 * Runs for the recorder that no test of the default installation makes: a restore drill, the estate
 * report and a store sync (test/workflows/drill.test.ts runs them under an installation of its own,
 * and a replay worker's task queue names no installation, so those runs cannot be replayed).
 */
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ClassName } from '../../../src/domain/classes';
import { makeDrillLab, type DrillLab } from '../../support/drill-lab';

let d: DrillLab;

beforeAll(async () => {
  d = await makeDrillLab();
});

afterAll(async () => {
  await d?.close();
  await d?.workers.shutdown();
  d?.lab.cleanup();
});

it('a drill restores every class healthy, and the report is written', async () => {
  const report = await (await d.drills.run()).result();
  expect(report.failed).toBe(0);
  expect(report.targets.map((t) => t.className).sort()).toEqual(Object.values(ClassName).sort());
  // The VM came back from its image's definition (the path recorded since the definition patch).
  expect(report.vms.map((v) => v.definitionFrom)).toEqual(['image']);
  const out = path.join(d.lab.dir, 'estate.html');
  const page = await (await d.drills.report(out)).result();
  expect(page.file).toBe(out);
  expect(page.bytes).toBeGreaterThan(0);
});
