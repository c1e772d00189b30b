/** kura.yaml validation: a bad file reports every problem with its file, path and line; nothing starts. */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadConfig, parseConfigText } from '../../src/config/load';
import { ConfigInvalidError, NotFoundError } from '../../src/domain/errors';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import type { ConfigInput } from '../../src/domain/inventory';

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
    // Either quote style: a formatter may rewrite the fixture's quotes.
    const text = readFileSync(FIXTURE, 'utf8')
      .replace('size: lots', 'size: 8MiB')
      .replace(/(["'])bad name!\1/, 'drv-5')
      .replace(/(["'])25:00\1/, '"02:00"');
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

/** The hospital preset (3 VMs on 2 hosts) with `edit` applied, as kura.yaml text. */
function presetYaml(edit: (cfg: ConfigInput) => void): string {
  const cfg = hospitalPreset({ vms: 3, hosts: 2 });
  edit(cfg);
  return renderConfigYaml(cfg);
}

/**
 * The one problem reported at `at` (the path inside the file), with the text of the line it names
 * and the line of ConfigInvalidError's message that a person reads.
 */
function problemAt(text: string, at: string): { message: string; line: string; reported: string } {
  const err = problems(text);
  const found = err.issues.filter((i) => i.path.replace(/ \(line \d+\)$/, '') === at);
  expect(
    found.map((i) => i.path),
    `problems: ${err.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
  ).toEqual([expect.stringMatching(/ \(line \d+\)$/)]);
  const issue = found[0]!;
  const n = Number(/\(line (\d+)\)$/.exec(issue.path)![1]);
  const reported = err.message.split('\n').find((l) => l.includes(`${issue.path}:`)) ?? '';
  return { message: issue.message, line: text.split('\n')[n - 1] ?? '', reported };
}

/** A second site beside the hospital: its own names, cabled like the first. */
function clinic(cfg: ConfigInput, vmPrefix = 'cl'): void {
  const second = structuredClone(cfg.sites[0]!);
  second.name = 'clinic';
  const rename = (s: string) => s.replace(/^vm-/, `${vmPrefix}-`);
  second.vms = second.vms!.map((vm) => ({
    ...vm,
    name: rename(vm.name),
    softwareVolume: `array-01/${rename(vm.softwareVolume.split('/')[1]!)}`,
    dataVolume: `array-01/${rename(vm.dataVolume.split('/')[1]!)}`,
  }));
  const array = second.arrays[0]!;
  array.volumes = array.volumes!.map((v) => ({ ...v, id: rename(v.id) }));
  array.lunMasks = array.lunMasks!.map((m) => ({ ...m, volume: rename(m.volume) }));
  second.policies = [];
  cfg.sites.push(second);
}

describe('references and unique names beyond the site', () => {
  it('accepts a second site, a datapath serving it, and IANA zones written in any of their forms', () => {
    const text = presetYaml((cfg) => {
      clinic(cfg);
      cfg.datapath = { site: 'clinic', volumes: ['array-01/cl-001-data', 'array-01/cl-002-data'] };
      cfg.sites[0]!.policies = [
        { name: 'tokyo', targets: ['*'], nightly: '02:00', timezone: 'Asia/Tokyo' },
        { name: 'london', targets: ['vm-001'], nightly: '02:00', timezone: 'Europe/London' },
        { name: 'eastern', targets: ['vm-002'], nightly: '02:00', timezone: 'US/Eastern' },
        { name: 'utc', targets: ['array-01/vm-003-data'], nightly: '02:00', timezone: 'UTC' },
      ];
    });
    const { config } = parseConfigText(text, '/etc/kura/kura.yaml');
    expect(config.datapath.site).toBe('clinic');
    expect(config.sites.map((s) => s.name)).toEqual(['hospital', 'clinic']);
  });

  it('refuses a datapath.site that names no site, naming the sites there are', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.datapath = { site: 'clinic' })),
      'datapath.site',
    );
    expect(p.message).toBe('no site "clinic" in this configuration; sites: hospital');
    expect(p.line).toMatch(/site: clinic/);
    expect(p.reported).toMatch(/^ {2}\S*kura\.yaml: datapath\.site \(line \d+\): no site "clinic"/);
  });

  it('takes datapath.journalSync as on-flush unless set, and refuses a value it does not know, naming the ones it does', () => {
    expect(
      parseConfigText(
        presetYaml(() => undefined),
        '/etc/kura/kura.yaml',
      ).config.datapath.journalSync,
    ).toBe('on-flush');
    const every = presetYaml((cfg) => void (cfg.datapath = { journalSync: 'every-write' }));
    expect(parseConfigText(every, '/etc/kura/kura.yaml').config.datapath.journalSync).toBe('every-write');
    const p = problemAt(
      presetYaml((cfg) => void (cfg.datapath = { journalSync: 'sometimes' as 'on-flush' })),
      'datapath.journalSync',
    );
    expect(p.message).toMatch(/"on-flush".*"every-write"/);
    expect(p.line).toMatch(/journalSync: sometimes/);
  });

  it("refuses a datapath volume that is no volume of the datapath's site", () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.datapath = { volumes: ['array-01/vm-001-data', 'array-09/no-such-volume'] })),
      'datapath.volumes[1]',
    );
    expect(p.message).toBe(
      'no volume "array-09/no-such-volume" in site hospital (the datapath\'s site); name one as array/volume, e.g. array-01/vm-001-data',
    );
    expect(p.line).toContain('array-09/no-such-volume');
  });

  it('checks datapath volumes against the site the datapath names, not the first', () => {
    const p = problemAt(
      presetYaml((cfg) => {
        clinic(cfg);
        cfg.datapath = { site: 'clinic', volumes: ['array-01/vm-001-data'] };
      }),
      'datapath.volumes[0]',
    );
    expect(p.message).toMatch(/^no volume "array-01\/vm-001-data" in site clinic \(the datapath's site\)/);
  });

  it('refuses a datapath volume given twice', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.datapath = { volumes: ['array-01/vm-001-data', 'array-01/vm-001-data'] })),
      'datapath.volumes[1]',
    );
    expect(p.message).toBe('"array-01/vm-001-data" is already served (datapath.volumes[0]); name each volume once');
  });

  it('refuses the same port for NBD and the control API', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.datapath = { nbdPort: 10900, controlPort: 10900 })),
      'datapath.controlPort',
    );
    expect(p.message).toBe('port 10900 is already the NBD port (datapath.nbdPort); give the control API another');
    expect(p.line).toMatch(/controlPort: 10900/);
  });

  it('refuses a VM name that another site uses too: guardians are workflows vm/<vm>', () => {
    const p = problemAt(
      presetYaml((cfg) => clinic(cfg, 'vm')),
      'sites[1].vms[0].name',
    );
    expect(p.message).toBe(
      'VM "vm-001" is also defined in site hospital (sites[0].vms[0]); VM names must be unique across sites, since each VM\'s guardian is the workflow vm/<vm>',
    );
  });
});

describe('references and unique names within a site', () => {
  it('refuses two policies with one name, since each names a schedule', () => {
    const p = problemAt(
      presetYaml((cfg) => {
        const site = cfg.sites[0]!;
        site.policies!.push({ name: 'nightly-data', targets: ['vm-001'], nightly: '04:00' });
      }),
      'sites[0].policies[1].name',
    );
    expect(p.message).toBe('policy "nightly-data" is defined twice (also policies[0])');
    expect(p.line).toContain('name: nightly-data');
  });

  it('refuses a policy called "all", which `kura schedule trigger` reserves for every VM', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.policies![0]!.name = 'all')),
      'sites[0].policies[0].name',
    );
    expect(p.message).toMatch(/^"all" is reserved: it means every VM of the site; choose another policy name/);
  });

  it('refuses a policy time zone that is no IANA zone', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.policies![0]!.timezone = 'Mars/Olympus')),
      'sites[0].policies[0].timezone',
    );
    expect(p.message).toBe(
      '"Mars/Olympus" is not an IANA time zone; write one such as UTC, Europe/London or Asia/Tokyo',
    );
    expect(p.line).toContain('Mars/Olympus');
  });

  it.each([
    ['europe/london', 'Europe/London'],
    ['utc', 'UTC'],
  ])('refuses the time zone %s written in the wrong case, naming the right spelling', (zone, right) => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.policies![0]!.timezone = zone)),
      'sites[0].policies[0].timezone',
    );
    expect(p.message).toBe(`"${zone}" is not an IANA time zone; did you mean ${right}?`);
  });

  it('refuses a UTC offset where a zone is wanted', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.policies![0]!.timezone = '+09:00')),
      'sites[0].policies[0].timezone',
    );
    expect(p.message).toMatch(/^"\+09:00" is not an IANA time zone/);
  });

  it.each([
    ['dataVolume', 'array-01/vm-001-data', 'the data volume of VM vm-001 (vms[0].dataVolume)'],
    ['softwareVolume', 'array-01/vm-001-data', 'the data volume of VM vm-001 (vms[0].dataVolume)'],
    ['dataVolume', 'array-01/vm-001-sw', 'the software volume of VM vm-001 (vms[0].softwareVolume)'],
  ] as const)("refuses a VM whose %s is %s, already another VM's", (key, volume, owner) => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.vms![1]![key] = volume)),
      `sites[0].vms[1].${key}`,
    );
    expect(p.message).toBe(`"${volume}" is already ${owner}; each VM needs volumes of its own`);
  });

  it('refuses a LUN number used twice in one array', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.arrays[0]!.lunMasks![3]!.lun = 1)),
      'sites[0].arrays[0].lunMasks[3].lun',
    );
    expect(p.message).toBe('LUN 1 of array array-01 already presents volume "vm-001-data" (lunMasks[1])');
  });

  it('refuses a LUN mask admitting a WWN that no host or backup server of the site has', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.arrays[0]!.lunMasks![0]!.wwns = ['21:00:00:24:ff:4b:00:09'])),
      'sites[0].arrays[0].lunMasks[0].wwns[0]',
    );
    expect(p.message).toBe(
      'no host or backup server of this site has WWN 21:00:00:24:ff:4b:00:09; give that WWN to the host or server the mask is for (its wwn), or take it out of the mask',
    );
  });

  it('accepts a LUN mask admitting a host by its WWN, in any case', () => {
    const { config } = parseConfigText(
      presetYaml((cfg) => {
        cfg.sites[0]!.hosts![0]!.wwn = '21:00:00:24:FF:4C:00:01';
        cfg.sites[0]!.arrays[0]!.lunMasks![0]!.wwns.push('21:00:00:24:ff:4c:00:01');
      }),
      '/etc/kura/kura.yaml',
    );
    expect(config.sites[0]!.arrays[0]!.lunMasks[0]!.wwns).toHaveLength(3);
  });

  it.each([
    [
      'a backup server',
      (cfg: ConfigInput) => void (cfg.sites[0]!.servers[1]!.wwn = '21:00:00:24:FF:4B:00:01'),
      'sites[0].servers[1].wwn',
      'servers[0].wwn',
    ],
    [
      'a host',
      (cfg: ConfigInput) => void (cfg.sites[0]!.hosts![1]!.wwn = '50:06:0e:80:00:00:00:02'),
      'sites[0].hosts[1].wwn',
      'arrays[0].ports[1].wwn',
    ],
  ])('refuses a WWN given to %s that something else of the site has', (_who, edit, at, other) => {
    const p = problemAt(presetYaml(edit), at);
    expect(p.message).toMatch(
      new RegExp(`^WWN [0-9a-fA-F:]+ is already used by ${other.replace(/[[\].]/g, '\\$&')}; a WWN names one port`),
    );
  });

  it('refuses two ports of one array with one name', () => {
    const p = problemAt(
      presetYaml((cfg) => void (cfg.sites[0]!.arrays[0]!.ports![1]!.name = 'array-01-p0')),
      'sites[0].arrays[0].ports[1].name',
    );
    expect(p.message).toBe('port "array-01-p0" is defined twice in array "array-01" (also ports[0])');
  });

  it('refuses a link given twice, in either direction', () => {
    const p = problemAt(
      presetYaml((cfg) => void cfg.sites[0]!.links!.push(['fcsw-01', 'array-01'])),
      'sites[0].links[8]',
    );
    expect(p.message).toBe('array-01 and fcsw-01 are already linked (links[0])');
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
