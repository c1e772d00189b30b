/**
 * A SAN shared by two companies (seed 003's internet data centre), without a server: the idc
 * preset's model, the configuration's refusals of one company reaching another's LUN, the access
 * rule and its messages, the pool's choice of servers, the restore rule, the per-volume performance
 * figures, and the events feed's store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/store';
import { parseConfigText } from '../../src/config/load';
import { AccessDeniedError } from '../../src/domain/errors';
import { ConfigSchema, type ConfigInput, type Site } from '../../src/domain/inventory';
import { ReserveRequestSchema } from '../../src/domain/pool';
import { allocate, tablesFromSite } from '../../src/domain/pool-tables';
import {
  accessPlan,
  checkCompanyAccess,
  checkRestoreOwnership,
  companyOf,
  lunOwner,
  sanView,
  serversFor,
} from '../../src/domain/tenancy';
import { parseDatapathCounters, volumePerf } from '../../src/domain/volume-perf';
import { hospitalPreset, idcPreset, renderConfigYaml } from '../../src/lab/preset';

const idc = (): Site => ConfigSchema.parse(idcPreset()).sites[0]!;

/** The issues of an edited idc preset, as `path: message` lines. */
function issuesOf(edit: (cfg: ConfigInput) => void): string[] {
  const cfg = idcPreset();
  edit(cfg);
  const r = ConfigSchema.safeParse(cfg);
  if (r.success) return [];
  return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

/** The error a call throws (the test fails if it throws none). */
function thrown(fn: () => void): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error, none was thrown');
}

describe('the idc preset', () => {
  it('puts two companies on one SAN, each with its own hosts, server, ports, zone and LUNs', () => {
    const site = idc();
    expect(site.tenants.map((t) => t.name)).toEqual(['a-corp', 'b-corp']);
    expect(companyOf(site, 'bks-a')?.name).toBe('a-corp');
    expect(companyOf(site, 'b-host-01')?.name).toBe('b-corp');
    expect(lunOwner(site, 'array-01', 'a-www-data')).toMatchObject({ company: 'a-corp', port: 'cl1-a' });
    expect(lunOwner(site, 'array-01', 'b-app-data')).toMatchObject({ company: 'b-corp', port: 'cl1-b' });
    // Each company's LUNs are visible to its own WWNs alone.
    const view = sanView(site);
    const bksA = view.hosts.find((h) => h.name === 'bks-a')!;
    expect(new Set(bksA.luns.map((l) => l.owner))).toEqual(new Set(['a-corp']));
    expect(bksA.luns.map((l) => l.ldev)).toEqual(['a-www-sw', 'a-www-data', 'a-app-sw', 'a-app-data']);
    expect(bksA.zones).toEqual(['a-zone']);
    expect(view.masks.filter((m) => m.owner === 'b-corp').map((m) => m.lun)).toEqual([4, 5, 6, 7]);
  });

  it('keeps the seed timetable: A WWW 0:00, B app 1:00, A app 1:30, B WWW 3:00', () => {
    const at = Object.fromEntries(idc().policies.map((p) => [p.targets[0], p.nightly]));
    expect(at).toEqual({ 'a-www': '00:00', 'a-app': '01:30', 'b-app': '01:00', 'b-www': '03:00' });
  });

  it('round-trips through kura.yaml unchanged', () => {
    const loaded = parseConfigText(renderConfigYaml(idcPreset()), '/tmp/kura-idc-test/kura.yaml');
    expect(loaded.config.sites[0]?.tenants).toEqual(idc().tenants);
    expect(loaded.config.sites[0]?.arrays[0]?.lunMasks).toEqual(idc().arrays[0]?.lunMasks);
  });
});

describe('the configuration of a shared SAN', () => {
  it("refuses a LUN on one company's port masked to another company's server", () => {
    const issues = issuesOf((cfg) => {
      cfg.sites[0]!.arrays[0]!.lunMasks![1]!.wwns!.push('21:00:00:24:ff:4b:02:01');
    });
    expect(issues).toEqual([
      "sites.0.arrays.0.lunMasks.1.wwns.2: WWN 21:00:00:24:ff:4b:02:01 is not an initiator of company a-corp, which owns port array-01/cl1-a; mask a company's LUN to its own hosts and servers",
    ]);
  });

  it("refuses a zone holding another company's WWN, and a server of two companies", () => {
    const issues = issuesOf((cfg) => {
      const [a, b] = cfg.sites[0]!.tenants!;
      a!.zones![0]!.members.push('21:00:00:24:ff:4b:02:01');
      b!.servers!.push('bks-a');
    });
    expect(issues).toContain(
      'sites.0.tenants.1.servers.1: backup server bks-a already belongs to company a-corp; a backup server serves one company',
    );
    expect(issues).toContain(
      "sites.0.tenants.0.zones.0.members.4: WWN 21:00:00:24:ff:4b:02:01 is not a host, backup server or array port of company a-corp; a company's zone holds only its own ports",
    );
  });

  it('refuses a volume presented on the ports of two companies, and an unknown port', () => {
    const issues = issuesOf((cfg) => {
      const masks = cfg.sites[0]!.arrays[0]!.lunMasks!;
      masks.push({ volume: 'a-www-data', lun: 1, port: 'cl1-b', wwns: [] });
      masks.push({ volume: 'a-app-data', lun: 3, port: 'cl9-x', wwns: [] });
    });
    expect(issues).toEqual([
      'sites.0.arrays.0.lunMasks.8.port: volume array-01/a-www-data is already presented on a port of company a-corp; a LUN belongs to one company',
      'sites.0.arrays.0.lunMasks.9.port: no port "cl9-x" in array "array-01"',
    ]);
  });
});

describe('the access rule', () => {
  it("refuses company A's server on company B's LUN, naming both companies and the LUN", () => {
    const err = thrown(() => checkCompanyAccess(idc(), { array: 'array-01', volume: 'b-app-data', server: 'bks-a' }));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toBe(
      'backup server bks-a of company a-corp may not read LUN 5 (array-01/b-app-data on port array-01/cl1-b): it belongs to company b-corp; nothing was copied. Back it up through a server of b-corp',
    );
    expect((err as AccessDeniedError).details).toMatchObject({ company: 'a-corp', owner: 'b-corp', server: 'bks-a' });
  });

  it("lets a company's server read its own LUN, and refuses it when no zone of the company joins them", () => {
    const site = idc();
    expect(() => checkCompanyAccess(site, { array: 'array-01', volume: 'a-www-data', server: 'bks-a' })).not.toThrow();
    site.tenants[0]!.zones = [{ name: 'a-zone', members: ['10:00:00:00:c9:00:01:01', '50:06:0e:80:00:00:01:01'] }];
    const err = thrown(() => checkCompanyAccess(site, { array: 'array-01', volume: 'a-www-data', server: 'bks-a' }));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toMatch(
      /^no zone of company a-corp holds backup server bks-a \(21:00:00:24:ff:4b:01:01\) together with port array-01\/cl1-a/,
    );
  });

  it("gives the pool only the owner's servers, and the pool keeps to them", () => {
    const site = idc();
    expect(serversFor(site, 'array-01', 'a-app-data')).toEqual(['bks-a']);
    expect(serversFor(site, 'array-01', 'b-www-data')).toEqual(['bks-b']);
    // Step 2 finds every server with the reason it may not copy: step 3 plans from that alone.
    expect(accessPlan(site, 'array-01', 'a-app-data')).toEqual({
      owner: 'a-corp',
      servers: [
        { name: 'bks-a' },
        {
          name: 'bks-b',
          refused:
            'backup server bks-b of company b-corp may not read LUN 3 (array-01/a-app-data on port array-01/cl1-a): it belongs to company a-corp; nothing was copied. Back it up through a server of a-corp',
        },
      ],
    });
    // A volume no company owns leaves the choice to the pool, and the check to the copy.
    expect(serversFor(ConfigSchema.parse(hospitalPreset()).sites[0]!, 'array-01', 'vm-001-data')).toBeUndefined();
    const tables = tablesFromSite(site);
    for (const server of ['bks-a', 'bks-b']) {
      const r = allocate(
        tables,
        ReserveRequestSchema.parse({ job: `j-${server}`, array: 'array-01', servers: [server] }),
      );
      expect(r.ok && r.grant.streams.map((s) => s.server)).toEqual([server]);
    }
    const none = allocate(tables, ReserveRequestSchema.parse({ job: 'j', array: 'array-01', servers: ['bks-z'] }));
    expect(none.ok ? '' : none.missing).toBe(
      'no stream can be formed: none of the backup servers the request admits (bks-z) is in the pool',
    );
  });

  it("refuses a restore of A's backup onto B's volume, and allows it onto A's own", () => {
    const site = idc();
    const backup = { backupId: 'a-www@2026-11-29T00:00:00.000Z', array: 'array-01', volume: 'a-www-data' };
    const err = thrown(() => checkRestoreOwnership(site, backup, { array: 'array-01', volume: 'b-www-data' }));
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toBe(
      'backup a-www@2026-11-29T00:00:00.000Z is of company a-corp, and may not be restored onto LUN 7 (array-01/b-www-data on port array-01/cl1-b) of company b-corp; nothing was written. Restore it to a new file or volume of a-corp',
    );
    expect(() => checkRestoreOwnership(site, backup, { array: 'array-01', volume: 'a-app-data' })).not.toThrow();
    // A new volume no company owns yet takes the backup.
    expect(() => checkRestoreOwnership(site, backup, { array: 'array-01', volume: 'a-www-restored' })).not.toThrow();
  });
});

describe('per-volume performance from the datapath counters', () => {
  const exposition = (reads: number, writes: number, bytesRead: number, bytesWritten: number) =>
    [
      '# HELP kura_datapath_io_seconds Time from an NBD request',
      `kura_datapath_io_seconds_bucket{le="0.001",volume="array-01/a-www-data",op="read"} ${reads}`,
      `kura_datapath_io_seconds_count{volume="array-01/a-www-data",op="read"} ${reads}`,
      `kura_datapath_io_seconds_count{volume="array-01/a-www-data",op="write"} ${writes}`,
      `kura_datapath_io_seconds_count{volume="array-01/a-www-data",op="flush"} 3`,
      `kura_datapath_io_bytes_total{volume="array-01/a-www-data",op="read"} ${bytesRead}`,
      `kura_datapath_io_bytes_total{volume="array-01/a-www-data",op="write"} ${bytesWritten}`,
    ].join('\n');

  it('gives IOPS and the read ratio over the interval, and the byte totals', () => {
    const before = parseDatapathCounters(exposition(10, 5, 40960, 20480));
    const after = parseDatapathCounters(exposition(160, 55, 655360, 225280));
    expect(volumePerf(before, after, 2000)).toEqual([
      {
        volume: 'array-01/a-www-data',
        reads: 160,
        writes: 55,
        bytesRead: 655360,
        bytesWritten: 225280,
        iops: 100,
        readRatio: 0.75,
        intervalMs: 2000,
      },
    ]);
  });

  it('has no read ratio for a volume without I/O in the interval', () => {
    const same = parseDatapathCounters(exposition(10, 5, 40960, 20480));
    expect(volumePerf(same, same, 1000)[0]).toMatchObject({ iops: 0, readRatio: null });
  });
});

describe('the events feed in the catalog', () => {
  it('records each event once by its key, numbered in order, and reads them after a number', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-events-'));
    const catalog = new Catalog(path.join(dir, 'catalog.db'));
    try {
      const at = '2026-11-29T23:00:00.000Z';
      const first = catalog.recordEvent({ key: 'k1', at, kind: 'job-failure', subject: 'backup of a refused' });
      const again = catalog.recordEvent({ key: 'k1', at, kind: 'job-failure', subject: 'backup of a refused' });
      const second = catalog.recordEvent({
        key: 'k2',
        at,
        kind: 'device-fault',
        subject: 'device lib-01-drv-1 is at fault',
        device: 'lib-01-drv-1',
        detail: { reason: 'hang' },
      });
      expect([first.recorded, again.recorded, second.recorded]).toEqual([true, false, true]);
      expect(again.event.seq).toBe(first.event.seq);
      expect(catalog.events().map((e) => [e.seq, e.kind, e.device])).toEqual([
        [first.event.seq, 'job-failure', null],
        [second.event.seq, 'device-fault', 'lib-01-drv-1'],
      ]);
      expect(catalog.events({ after: first.event.seq })).toEqual([
        {
          seq: second.event.seq,
          at,
          kind: 'device-fault',
          subject: 'device lib-01-drv-1 is at fault',
          site: null,
          type: null,
          device: 'lib-01-drv-1',
          job: null,
          detail: { reason: 'hang' },
        },
      ]);
    } finally {
      catalog.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
