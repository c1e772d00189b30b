/**
 * How the embedded Temporal server bounds its history cache: kura.yaml's `server` section, and the
 * command line the dev server is started with (docs/adr/052).
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load';
import { ConfigInvalidError } from '../../src/domain/errors';
import { DEFAULT_HISTORY_CACHE } from '../../src/domain/server-config';
import { devServerArgs } from '../../src/stack/devserver';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';

function yamlWith(server: string): string {
  return `${renderConfigYaml(hospitalPreset({ vms: 1 }))}\n${server}\n`;
}

/** The issues a kura.yaml with this `server` section is refused with. */
function refusal(server: string): ConfigInvalidError {
  try {
    parseConfigText(yamlWith(server), '/etc/kura/kura.yaml');
  } catch (e) {
    if (e instanceof ConfigInvalidError) return e;
    throw e;
  }
  throw new Error(`kura.yaml with ${JSON.stringify(server)} was accepted`);
}

/** The value given to `--dynamic-config-value` for a key, if any. */
function dynamicConfig(args: string[], key: string): string | undefined {
  const i = args.findIndex((a, j) => args[j - 1] === '--dynamic-config-value' && a.startsWith(`${key}=`));
  return i < 0 ? undefined : args[i]!.slice(key.length + 1);
}

describe("kura.yaml's server section", () => {
  it('bounds the history cache to 512 workflows by default and takes a bound in range', () => {
    const cfg = parseConfigText(renderConfigYaml(hospitalPreset({ vms: 1 })), 'kura.yaml');
    expect(DEFAULT_HISTORY_CACHE).toBe(512);
    expect(cfg.config.server).toStrictEqual({ historyCacheSize: 512 });
    for (const n of [64, 2048, 8096, 128_000]) {
      const set = parseConfigText(yamlWith(`server:\n  historyCacheSize: ${n}`), 'kura.yaml');
      expect(set.config.server).toStrictEqual({ historyCacheSize: n });
    }
  });

  it.each([
    ['63', /from 64 to 128000: below 64 the workflows in flight can fill it/],
    ['128001', /from 64 to 128000; lower it/],
    ['512.5', /from 64 to 128000, not a fraction/],
    ['lots', /must be a whole number of workflows from 64 to 128000/],
    ['-1', /below 64/],
  ])('refuses historyCacheSize: %s, naming the key and the range', (value, message) => {
    const err = refusal(`server:\n  historyCacheSize: ${value}`);
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]!.path).toMatch(/^server\.historyCacheSize \(line \d+\)$/);
    expect(err.issues[0]!.message).toMatch(/^server\.historyCacheSize must be /);
    expect(err.issues[0]!.message).toMatch(message);
    expect(err.message).toContain('kura.yaml');
  });

  it('refuses a key it does not know, naming it', () => {
    const err = refusal('server:\n  cacheSize: 512');
    expect(err.message).toMatch(/cacheSize/);
  });
});

describe("the dev server's command line", () => {
  const base = { port: 7233, namespace: 'default', headless: true };

  it("passes the history cache's bound as the server's dynamic config", () => {
    const args = devServerArgs({ ...base, workflowCache: 512 });
    expect(dynamicConfig(args, 'history.hostLevelCacheMaxSize')).toBe('512');
    expect(args.filter((a) => a.startsWith('history.hostLevelCacheMaxSize='))).toHaveLength(1);
  });

  it('gives every task queue one partition, for reads and writes alike', () => {
    const args = devServerArgs(base);
    expect(dynamicConfig(args, 'matching.numTaskqueueReadPartitions')).toBe('1');
    expect(dynamicConfig(args, 'matching.numTaskqueueWritePartitions')).toBe('1');
  });

  it("leaves the CLI's own cache when no bound is given, and keeps the rest of the line", () => {
    const args = devServerArgs(base);
    expect(dynamicConfig(args, 'history.hostLevelCacheMaxSize')).toBeUndefined();
    expect(args.slice(0, 6)).toStrictEqual(['server', 'start-dev', '--ip', '127.0.0.1', '--port', '7233']);
    expect(dynamicConfig(args, 'frontend.enableUpdateWorkflowExecution')).toBe('true');
    expect(args).toContain('--headless');
  });

  it("turns kura.yaml's bound into the server's flag", () => {
    const cfg = parseConfigText(yamlWith('server:\n  historyCacheSize: 2048'), 'kura.yaml');
    const args = devServerArgs({ ...base, workflowCache: cfg.config.server.historyCacheSize });
    expect(dynamicConfig(args, 'history.hostLevelCacheMaxSize')).toBe('2048');
  });
});
