/**
 * docs/grafana/kura.json against the metrics the code defines: every Kura metric the dashboard
 * queries exists, and every Kura metric the worker and the datapath serve has a panel, so neither
 * side can drift from the other unnoticed.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DatapathMetrics } from '../../src/metrics/datapath-metrics';
import { WorkerMetrics } from '../../src/metrics/worker-metrics';

interface Panel {
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(
  readFileSync(path.join(__dirname, '..', '..', 'docs', 'grafana', 'kura.json'), 'utf8'),
) as { uid: string; panels: Panel[]; templating: { list: { name: string }[] } };

/** Kura's metric families a query names (a histogram's series are its family). */
function familiesIn(expr: string): string[] {
  return [...expr.matchAll(/\bkura_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

async function definedFamilies(): Promise<string[]> {
  const worker = new WorkerMetrics({ lastGoodBackups: () => [], poolDevices: async () => [] });
  const datapath = new DatapathMetrics(new Map());
  const all = [...(await worker.registry.getMetricsAsJSON()), ...(await datapath.registry.getMetricsAsJSON())];
  return all.map((m) => m.name).filter((n) => n.startsWith('kura_'));
}

describe('the Grafana dashboard', () => {
  const queried = new Set(dashboard.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => familiesIn(t.expr))));

  it('queries only metrics Kura defines', async () => {
    const defined = new Set(await definedFamilies());
    expect([...queried].filter((m) => !defined.has(m))).toEqual([]);
  });

  it('shows every metric Kura defines', async () => {
    expect((await definedFamilies()).filter((m) => !queried.has(m))).toEqual([]);
  });

  it('lays its panels out without overlaps, on the 24-column grid, with a datasource to choose', () => {
    const boxes = dashboard.panels.map((p) => ({ title: p.title, ...p.gridPos }));
    for (const b of boxes) expect(b.x + b.w, b.title).toBeLessThanOrEqual(24);
    const overlaps = boxes.flatMap((a, i) =>
      boxes
        .slice(i + 1)
        .filter((b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h)
        .map((b) => `${a.title} / ${b.title}`),
    );
    expect(overlaps).toEqual([]);
    expect(dashboard.templating.list.map((v) => v.name)).toContain('datasource');
  });
});
