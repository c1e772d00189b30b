/** Where Kura connects: explicit option, then Temporal's environment, then kura.yaml, then the embedded server. */
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { DEFAULT_ADDRESS, temporalConnectionOptions } from '../../src/stack/connection';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

function loadedWith(temporal?: { address?: string; namespace?: string }) {
  const cfg = hospitalPreset({ vms: 1 });
  if (temporal) cfg.temporal = temporal;
  return parseConfigText(renderConfigYaml(cfg), '/tmp/kura.yaml');
}

describe('the Temporal connection', () => {
  it('defaults to the embedded dev server and says the address was not chosen', () => {
    delete process.env.TEMPORAL_ADDRESS;
    delete process.env.TEMPORAL_NAMESPACE;
    const t = temporalConnectionOptions(loadedWith());
    expect(t).toMatchObject({ address: DEFAULT_ADDRESS, namespace: 'default', explicit: false });
  });

  it('takes kura.yaml over the default, and the environment over kura.yaml', () => {
    delete process.env.TEMPORAL_ADDRESS;
    expect(temporalConnectionOptions(loadedWith({ address: 'yaml.example:7233', namespace: 'kura' }))).toMatchObject({
      address: 'yaml.example:7233',
      namespace: 'kura',
      explicit: true,
    });
    process.env.TEMPORAL_ADDRESS = 'env.example:7233';
    process.env.TEMPORAL_NAMESPACE = 'ops';
    expect(temporalConnectionOptions(loadedWith({ address: 'yaml.example:7233', namespace: 'kura' }))).toMatchObject({
      address: 'env.example:7233',
      namespace: 'ops',
      explicit: true,
    });
  });

  it('takes an explicit option over everything', () => {
    process.env.TEMPORAL_ADDRESS = 'env.example:7233';
    expect(temporalConnectionOptions(loadedWith(), { address: '10.0.0.1:7233' }).address).toBe('10.0.0.1:7233');
  });
});
