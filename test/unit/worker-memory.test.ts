/**
 * How a worker process bounds its memory: kura.yaml's `worker` section, and the V8 heap growth the
 * worker sets for every heap of its process, the SDK's workflow thread's included (docs/adr/048).
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseConfigText } from '../../src/config/load';
import { ConfigInvalidError } from '../../src/domain/errors';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';

const ROOT = path.resolve(__dirname, '..', '..');

function yamlWith(worker: string): string {
  return `${renderConfigYaml(hospitalPreset({ vms: 1 }))}\n${worker}\n`;
}

describe("kura.yaml's worker section", () => {
  it('bounds the heaps to 1.5× their live size by default and leaves the workflow cache to the SDK', () => {
    const cfg = parseConfigText(renderConfigYaml(hospitalPreset({ vms: 1 })), 'kura.yaml');
    expect(cfg.config.worker).toStrictEqual({ heapGrowthPercent: 50 });
    const set = parseConfigText(yamlWith('worker:\n  heapGrowthPercent: 0\n  maxCachedWorkflows: 250'), 'kura.yaml');
    expect(set.config.worker).toStrictEqual({ heapGrowthPercent: 0, maxCachedWorkflows: 250 });
  });

  it('refuses a growth out of range, a cache that is not a whole number and a key it does not know, naming each', () => {
    let err: unknown;
    try {
      parseConfigText(
        yamlWith('worker:\n  heapGrowthPercent: 500\n  maxCachedWorkflows: 2.5\n  cacheSize: 3'),
        '/etc/kura/kura.yaml',
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigInvalidError);
    const paths = (err as ConfigInvalidError).issues.map((i) => i.path.replace(/ \(line \d+\)$/, ''));
    expect(paths).toEqual(expect.arrayContaining(['worker.heapGrowthPercent', 'worker.maxCachedWorkflows']));
    expect((err as ConfigInvalidError).message).toMatch(/cacheSize/);
  });
});

/**
 * A process that applies the growth as the worker does, then starts a thread (as the SDK starts its
 * workflow thread) holding about 30 MB live while it makes garbage that lives a while, and prints
 * the most the thread's heap took.
 */
const CHILD = `
const { applyHeapGrowth } = require(${JSON.stringify(path.join(ROOT, 'src', 'worker.ts'))});
const { Worker } = require('node:worker_threads');
applyHeapGrowth(Number(process.argv[1]));
const w = new Worker(\`
  const v8 = require('node:v8');
  const live = [];
  for (let i = 0; i < 200000; i++) live.push({ i, s: 'x'.repeat(20) + i });
  const ring = new Array(20000);
  let k = 0, max = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < 3000) {
    for (let i = 0; i < 2000; i++) ring[k++ % ring.length] = { b: new Array(50).fill(i) };
    max = Math.max(max, v8.getHeapStatistics().total_heap_size);
  }
  require('node:worker_threads').parentPort.postMessage({ max, live: live.length });
\`, { eval: true });
w.on('message', (m) => { console.log(JSON.stringify(m)); void w.terminate(); });
`;

async function threadHeapMax(percent: number): Promise<number> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--require', 'tsx/cjs', '-e', CHILD, String(percent)],
    {
      cwd: ROOT,
    },
  );
  const out = JSON.parse(stdout.trim().split('\n').pop()!) as { max: number; live: number };
  expect(out.live).toBe(200000);
  return out.max;
}

describe('the heap growth the worker sets', () => {
  it("holds a thread started after it to a heap far smaller than V8's own choice", async () => {
    const [own, bounded] = await Promise.all([threadHeapMax(0), threadHeapMax(20)]);
    // Measured: about 360 MiB with V8's own growth, about 150 MiB at 20 %.
    expect(bounded).toBeLessThan(own * 0.7);
  }, 60_000);
});
