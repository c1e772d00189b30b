/** kura.yaml validation: a bad file reports every problem with its file, path and line; nothing starts. */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadConfig, parseConfigText } from '../../src/config/load';
import { ConfigInvalidError, NotFoundError } from '../../src/domain/errors';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'broken-kura.yaml');

function problems(text: string): ConfigInvalidError {
  try {
    parseConfigText(text, '/etc/kura/kura.yaml');
  } catch (err) {
    if (err instanceof ConfigInvalidError) return err;
    throw err;
  }
  throw new Error('the configuration was accepted');
}

describe('a malformed kura.yaml', () => {
  const err = problems(readFileSync(FIXTURE, 'utf8'));
  const byPath = Object.fromEntries(err.issues.map((i) => [i.path.replace(/ \(line \d+\)$/, ''), i.message]));

  it('reports every problem at once, each with its path inside the file', () => {
    expect(Object.keys(byPath).sort()).toEqual(
      [
        'sites[0].arrays[0].volumes[1].size',
        'sites[0].libraries[1].drives[3].id',
        'sites[0].policies[0].nightly',
      ].sort(),
    );
  });

  it('names the file and the reason of each problem in its message', () => {
    expect(err.type).toBe('ConfigInvalid');
    expect(err.message).toContain('/etc/kura/kura.yaml');
    expect(byPath['sites[0].arrays[0].volumes[1].size']).toMatch(/"lots" is not a size/);
    expect(byPath['sites[0].libraries[1].drives[3].id']).toMatch(/must start with a letter or digit/);
    expect(byPath['sites[0].policies[0].nightly']).toMatch(/HH:MM/);
  });

  it('gives the line of each problem', () => {
    const drive = err.issues.find((i) => i.path.startsWith('sites[0].libraries[1].drives[3].id'));
    expect(drive?.path).toMatch(/\(line 31\)$/);
  });
});

describe('cross-references in kura.yaml', () => {
  it('reports unknown hosts, volumes and link ends together once the shapes are right', () => {
    const text = readFileSync(FIXTURE, 'utf8')
      .replace('size: lots', 'size: 8MiB')
      // Either quote: the fixture is YAML, and a formatter may have changed its quotes.
      .replace(/(['"])bad name!\1/, 'drv-5')
      .replace(/(['"])25:00\1/, '"02:00"');
    const err = problems(text);
    const paths = err.issues.map((i) => i.path.replace(/ \(line \d+\)$/, '')).sort();
    expect(paths).toEqual(['sites[0].links[0][1]', 'sites[0].vms[0].dataVolume', 'sites[0].vms[0].host']);
    expect(err.issues.find((i) => i.path.startsWith('sites[0].vms[0].host'))?.message).toMatch(/no host "host-09"/);
  });

  it('refuses a name used twice in one site', () => {
    const cfg = hospitalPreset({ vms: 2 });
    const lib = cfg.sites[0]!.libraries[1]!;
    lib.drives[0] = { id: 'lib-01-drv-1' };
    const err = problems(renderConfigYaml(cfg));
    expect(err.issues.map((i) => i.message).join('\n')).toMatch(/name "lib-01-drv-1" is already used/);
  });

  it('reports YAML syntax errors with their line instead of a stack trace', () => {
    const err = problems('version: 1\nsites:\n  - name: a\n    name: b\n');
    expect(err.issues[0]?.path).toMatch(/line 4/);
  });
});

describe('loading kura.yaml', () => {
  it('says how to create a configuration when there is none', () => {
    expect(() => loadConfig('/nonexistent/kura.yaml')).toThrow(NotFoundError);
    expect(() => loadConfig('/nonexistent/kura.yaml')).toThrow(/kura lab init --preset hospital/);
  });

  it('accepts the hospital preset it generates', () => {
    const { config } = parseConfigText(renderConfigYaml(hospitalPreset()), '/tmp/kura.yaml');
    expect(config.sites[0]!.vms).toHaveLength(77);
  });
});
