import { describe, expect, it } from 'vitest';
import { SiteSchema, type Site } from '../../src/domain/inventory';
import { ReserveRequestSchema, type DeviceRow, type PoolTables, type ReserveRequest } from '../../src/domain/pool';
import { backupWorkflowId } from '../../src/api/workflow-ids';
import {
  TABLE_KEYS,
  allocate,
  blockedByUnavailable,
  findDevice,
  grantFor,
  mark,
  mergeInventory,
  release,
  tablesFromSite,
  unavailableMessage,
} from '../../src/domain/pool-tables';

/**
 * Two independent paths: arr-1 — sw-1 — {srv-1, lib-1} and arr-1 — sw-2 — {srv-2, lib-2}.
 * Each library has two drives and two cartridges.
 */
function twoPathSite(
  opts: { serverCapacity?: number; sw1Capacity?: number; sw2Capacity?: number; lib1TapeSizes?: [string, string] } = {},
): Site {
  const [t1, t2] = opts.lib1TapeSizes ?? ['64MiB', '64MiB'];
  return SiteSchema.parse({
    name: 'lab',
    arrays: [{ name: 'arr-1' }],
    libraries: [
      {
        name: 'lib-1',
        drives: [{ id: 'lib-1-drv-1' }, { id: 'lib-1-drv-2' }],
        cartridges: [
          { id: 'lib-1-tape-1', capacity: t1 },
          { id: 'lib-1-tape-2', capacity: t2 },
        ],
      },
      {
        name: 'lib-2',
        drives: [{ id: 'lib-2-drv-1' }, { id: 'lib-2-drv-2' }],
        cartridges: [
          { id: 'lib-2-tape-1', capacity: '64MiB' },
          { id: 'lib-2-tape-2', capacity: '64MiB' },
        ],
      },
    ],
    switches: [
      { name: 'sw-1', capacity: opts.sw1Capacity ?? 4 },
      { name: 'sw-2', capacity: opts.sw2Capacity ?? 4 },
    ],
    servers: [
      { name: 'srv-1', capacity: opts.serverCapacity ?? 1 },
      { name: 'srv-2', capacity: opts.serverCapacity ?? 1 },
    ],
    links: [
      ['arr-1', 'sw-1'],
      ['arr-1', 'sw-2'],
      ['srv-1', 'sw-1'],
      ['srv-2', 'sw-2'],
      ['lib-1', 'sw-1'],
      ['lib-2', 'sw-2'],
    ],
  });
}

const request = (r: Partial<ReserveRequest> & { job: string }) => ReserveRequestSchema.parse({ array: 'arr-1', ...r });

function must(result: ReturnType<typeof allocate>) {
  if (!result.ok) throw new Error(`expected a grant, got: ${result.missing}`);
  return result;
}

function missing(result: ReturnType<typeof allocate>): string {
  if (result.ok) throw new Error(`expected a refusal, got a grant: ${JSON.stringify(result.grant)}`);
  return result.missing;
}

function rows(t: PoolTables): DeviceRow[] {
  return TABLE_KEYS.flatMap((k) => t[k]);
}

function marked(t: PoolTables, device: string, reason: string): PoolTables {
  const out = mark(t, { device, state: 'unavailable', reason });
  if (!out.ok) throw new Error(out.error);
  return out.tables;
}

describe('pool tables', () => {
  it('numbers the rows of each table from 0 in inventory order', () => {
    const t = tablesFromSite(twoPathSite());
    expect(t.drives.map((d) => [d.number, d.name, d.library])).toEqual([
      [0, 'lib-1-drv-1', 'lib-1'],
      [1, 'lib-1-drv-2', 'lib-1'],
      [2, 'lib-2-drv-1', 'lib-2'],
      [3, 'lib-2-drv-2', 'lib-2'],
    ]);
    expect(t.tapes[0]).toMatchObject({
      number: 0,
      name: 'lib-1-tape-1',
      capacityBytes: 64 * 1024 * 1024,
      usedBytes: 0,
    });
    expect(t.libraries.map((l) => l.capacity)).toEqual([2, 2]);
  });

  it('grants two disjoint streams when two independent paths exist', () => {
    const { grant } = must(allocate(tablesFromSite(twoPathSite()), request({ job: 'job-a', streams: 2 })));
    expect(grant.streams).toEqual([
      { stream: 0, server: 'srv-1', library: 'lib-1', drive: 'lib-1-drv-1', tape: 'lib-1-tape-1', switches: ['sw-1'] },
      { stream: 1, server: 'srv-2', library: 'lib-2', drive: 'lib-2-drv-1', tape: 'lib-2-tape-1', switches: ['sw-2'] },
    ]);
  });

  it('grants nothing for a third stream on a two-path site and leaves the tables unchanged', () => {
    const before = tablesFromSite(twoPathSite({ serverCapacity: 4 }));
    const snapshot = structuredClone(before);
    const why = missing(allocate(before, request({ job: 'job-a', streams: 3 })));
    expect(why).toMatch(/^only 2 of 3 streams can be formed: /);
    expect(before).toEqual(snapshot);
    expect(rows(before).every((r) => r.holders.length === 0 && r.state === 'available')).toBe(true);
  });

  it('never grants a device marked unavailable, even when it is free', () => {
    let t = tablesFromSite(twoPathSite({ serverCapacity: 4 }));
    t = marked(t, 'lib-1-drv-1', 'head failure');
    t = marked(t, 'lib-1-drv-2', 'cleaning');
    const drives: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = allocate(t, request({ job: `job-${i}` }));
      if (!r.ok) break;
      t = r.tables;
      drives.push(...r.grant.streams.map((s) => s.drive));
    }
    expect(drives).toEqual(['lib-2-drv-1', 'lib-2-drv-2']);
    expect(findDevice(t, 'lib-1-drv-1')).toMatchObject({ state: 'unavailable', reason: 'head failure', holders: [] });
  });

  it('respects server and switch capacities across jobs', () => {
    // sw-1 carries one stream, sw-2 two: after one stream through sw-1, srv-1 is unreachable.
    let t = tablesFromSite(twoPathSite({ serverCapacity: 2, sw1Capacity: 1, sw2Capacity: 2 }));
    const granted: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = allocate(t, request({ job: `job-${i}` }));
      if (!r.ok) {
        expect(r.missing).toContain('sw-1 held by job job-0 stream 0');
        break;
      }
      t = r.tables;
      granted.push(`${r.grant.streams[0]?.server}/${r.grant.streams[0]?.switches.join('+')}`);
    }
    expect(granted).toEqual(['srv-1/sw-1', 'srv-2/sw-2', 'srv-2/sw-2']);
    for (const row of rows(t)) expect(row.holders.length).toBeLessThanOrEqual(row.capacity);
  });

  it('skips a cartridge without room for the bytes plus overhead', () => {
    const t = tablesFromSite(twoPathSite({ lib1TapeSizes: ['256KiB', '64MiB'] }));
    const { grant } = must(allocate(t, request({ job: 'job-a', bytes: 200 * 1024 })));
    expect(grant.streams[0]?.tape).toBe('lib-1-tape-2');
    // Only 192 KiB were asked for plus 64 KiB overhead: exactly what the small cartridge holds.
    const exact = must(allocate(t, request({ job: 'job-b', bytes: 192 * 1024 })));
    expect(exact.grant.streams[0]?.tape).toBe('lib-1-tape-1');
  });

  it('names the cartridges without room when no cartridge fits', () => {
    const t = tablesFromSite(twoPathSite({ lib1TapeSizes: ['256KiB', '256KiB'] }));
    const why = missing(allocate(t, request({ job: 'job-a', streams: 2, bytes: 1024 * 1024 })));
    expect(why).toContain(
      'lib-1 has no cartridge with room for 1114112 bytes (lib-1-tape-1 has 262144 bytes free; lib-1-tape-2 has 262144 bytes free)',
    );
  });

  it('releases every holding of a job and records the end of data of its cartridges', () => {
    const granted = must(allocate(tablesFromSite(twoPathSite()), request({ job: 'job-a', streams: 2 })));
    const out = release(granted.tables, 'job-a', { 'lib-1-tape-1': 5000, 'lib-2-tape-1': 7000 });
    // Per stream: server, library, drive, cartridge and one switch.
    expect(out.released).toBe(10);
    expect(rows(out.tables).filter((r) => r.holders.length > 0 || r.state !== 'available')).toEqual([]);
    expect(findDevice(out.tables, 'lib-1-tape-1')?.usedBytes).toBe(5000);
    expect(findDevice(out.tables, 'lib-2-tape-1')?.usedBytes).toBe(7000);
    expect(release(out.tables, 'job-a', {}).released).toBe(0);
  });

  it('returns the same grant and unchanged tables when the same job reserves again', () => {
    const first = must(allocate(tablesFromSite(twoPathSite()), request({ job: 'job-a', streams: 2 })));
    const again = must(allocate(first.tables, request({ job: 'job-a', streams: 1 })));
    expect(again.grant).toEqual(first.grant);
    expect(again.tables).toBe(first.tables);
    expect(grantFor(first.tables, 'job-a')).toEqual(first.grant);
  });

  it('says which drives are lacking and why when a stream cannot be formed', () => {
    let t = tablesFromSite(twoPathSite({ serverCapacity: 4 }));
    t = marked(t, 'lib-2-drv-1', 'head failure');
    const job = (vm: string) => backupWorkflowId(vm, '2026-11-22T02:00:00.000Z');
    t = must(allocate(t, request({ job: job('vm-003') }))).tables; // lib-1-drv-1
    t = must(allocate(t, request({ job: job('vm-004') }))).tables; // lib-1-drv-2
    t = must(allocate(t, request({ job: job('vm-005') }))).tables; // lib-2-drv-2
    t = release(t, job('vm-003'), {}).tables;
    const why = missing(allocate(t, request({ job: 'job-d', streams: 2 })));
    expect(why).toBe(
      'only 1 of 2 streams can be formed: lib-1 is already in stream 0 of this request; ' +
        `lib-2 has no free drive (lib-2-drv-1 unavailable: head failure; lib-2-drv-2 held by job ${job('vm-005')} stream 0)`,
    );
  });

  it('says no backup server is free when every server is at capacity', () => {
    let t = tablesFromSite(twoPathSite());
    t = must(allocate(t, request({ job: 'job-a', streams: 2 }))).tables;
    const why = missing(allocate(t, request({ job: 'job-b' })));
    expect(why).toMatch(
      /^no stream can be formed: no backup server has a free stream \(srv-1 held by job job-a stream 0; srv-2 held by job job-a stream 1\)/,
    );
  });

  it('gives a restore the cartridge it names, even a full one, in that cartridge library', () => {
    let t = tablesFromSite(twoPathSite());
    t = release(t, 'earlier-backup', { 'lib-2-tape-2': 64 * 1024 * 1024 }).tables;
    const { grant } = must(allocate(t, request({ job: 'restore-1', tape: 'lib-2-tape-2' })));
    expect(grant.streams).toEqual([
      { stream: 0, server: 'srv-2', library: 'lib-2', drive: 'lib-2-drv-1', tape: 'lib-2-tape-2', switches: ['sw-2'] },
    ]);
  });

  it('gives a request without an array a stream from a server to the library alone, as a catalog rebuild needs', () => {
    const t = tablesFromSite(twoPathSite());
    // arr-1 loses its cable to sw-1: no backup of arr-1 can reach lib-1 through srv-1 any more.
    t.links = t.links.filter(([a, b]) => !(a === 'arr-1' && b === 'sw-1'));
    expect(missing(allocate(t, request({ job: 'backup-1', tape: 'lib-1-tape-2' })))).toMatch(
      /^no stream can be formed: no path of usable FC switches joins storage array arr-1 to a free backup server/,
    );
    const { grant, tables } = must(allocate(t, request({ job: 'rebuild-1', tape: 'lib-1-tape-2', array: undefined })));
    expect(grant.streams).toEqual([
      { stream: 0, server: 'srv-1', library: 'lib-1', drive: 'lib-1-drv-1', tape: 'lib-1-tape-2', switches: ['sw-1'] },
    ]);
    expect(
      rows(tables)
        .filter((r) => r.holders.length > 0)
        .map((r) => r.name),
    ).toEqual(['srv-1', 'lib-1', 'lib-1-drv-1', 'lib-1-tape-2', 'sw-1']);
  });

  it('names the drives when a cartridge asked for without an array has no free drive in its library', () => {
    let t = tablesFromSite(twoPathSite());
    t = marked(t, 'lib-1-drv-1', 'head failure');
    t = marked(t, 'lib-1-drv-2', 'cleaning');
    const why = missing(allocate(t, request({ job: 'rebuild-1', tape: 'lib-1-tape-2', array: undefined })));
    expect(why).toBe(
      'no stream can be formed: lib-1 has no free drive (lib-1-drv-1 unavailable: head failure; lib-1-drv-2 unavailable: cleaning)',
    );
  });

  it('keeps holders, marks and usage when the inventory is synced, and drops only free removed devices', () => {
    let t = tablesFromSite(twoPathSite());
    t = marked(t, 'lib-2-drv-2', 'door open');
    t = must(allocate(t, request({ job: 'job-a' }))).tables; // holds lib-1-drv-1, lib-1-tape-1
    t = release(t, 'nobody', { 'lib-2-tape-1': 1234 }).tables;
    const fresh = structuredClone(twoPathSite()) as Site;
    fresh.libraries[0]!.drives = [{ id: 'lib-1-drv-2' }, { id: 'lib-1-drv-3' }];
    fresh.libraries[0]!.cartridges = [{ id: 'lib-1-tape-2', capacity: 1024 * 1024 }];
    const merged = mergeInventory(t, tablesFromSite(fresh));
    expect(merged.drives.map((d) => d.name)).toEqual([
      'lib-1-drv-2',
      'lib-1-drv-3',
      'lib-2-drv-1',
      'lib-2-drv-2',
      'lib-1-drv-1',
    ]);
    expect(findDevice(merged, 'lib-1-drv-1')).toMatchObject({
      state: 'in-use',
      holders: [{ job: 'job-a', stream: 0 }],
    });
    expect(findDevice(merged, 'lib-1-tape-1')?.holders).toEqual([{ job: 'job-a', stream: 0 }]);
    expect(findDevice(merged, 'lib-2-drv-2')).toMatchObject({ state: 'unavailable', reason: 'door open' });
    expect(findDevice(merged, 'lib-2-tape-1')?.usedBytes).toBe(1234);
    expect(findDevice(merged, 'lib-1-tape-2')?.capacityBytes).toBe(1024 * 1024);
    expect(grantFor(merged, 'job-a')?.streams[0]?.drive).toBe('lib-1-drv-1');
  });

  it('reports an unknown device as an error value when marking', () => {
    const t = tablesFromSite(twoPathSite());
    expect(mark(t, { device: 'lib-9-drv-1', state: 'unavailable' })).toEqual({
      ok: false,
      error: 'no device lib-9-drv-1 in the pool of site lab',
    });
  });

  it('keeps holders of a device marked unavailable and clears the reason when it is available again', () => {
    let t = must(allocate(tablesFromSite(twoPathSite()), request({ job: 'job-a' }))).tables;
    t = marked(t, 'lib-1-drv-1', 'head failure');
    expect(findDevice(t, 'lib-1-drv-1')).toMatchObject({
      state: 'unavailable',
      holders: [{ job: 'job-a', stream: 0 }],
    });
    const back = mark(t, { device: 'lib-1-drv-1', state: 'available' });
    if (!back.ok) throw new Error(back.error);
    expect(back.row).toEqual({
      number: 0,
      name: 'lib-1-drv-1',
      kind: 'drive',
      state: 'in-use',
      capacity: 1,
      holders: [{ job: 'job-a', stream: 0 }],
      library: 'lib-1',
    });
  });
});

describe('requests that only devices marked unavailable stand in the way of', () => {
  const restoreOf = (tape: string) => request({ job: 'restore-1', tape });

  it('names the one device that blocks the only path to a cartridge, and how to bring it back', () => {
    const t = marked(tablesFromSite(twoPathSite()), 'sw-1', 'stopped answering (hang)');
    const block = blockedByUnavailable(t, restoreOf('lib-1-tape-1'));
    expect(block).toEqual({ unavailable: [{ name: 'sw-1', reason: 'stopped answering (hang)' }], anyOne: false });
    expect(unavailableMessage(restoreOf('lib-1-tape-1'), block!)).toBe(
      'cartridge lib-1-tape-1 cannot be had: sw-1 is unavailable: stopped answering (hang), and waiting for busy devices would not help; mark it available with `kura pool mark sw-1 available` once it is fixed',
    );
  });

  it('says nothing when the devices are only busy: waiting for them helps', () => {
    // Both backup servers (capacity 1) are held by a running backup.
    const t = must(allocate(tablesFromSite(twoPathSite()), request({ job: 'backup-1', streams: 2 }))).tables;
    expect(allocate(t, restoreOf('lib-1-tape-2')).ok).toBe(false);
    expect(blockedByUnavailable(t, restoreOf('lib-1-tape-2'))).toBeUndefined();
  });

  it('says nothing when a device is unavailable but another path serves the request', () => {
    const t = marked(tablesFromSite(twoPathSite()), 'sw-2', 'cabling work');
    expect(blockedByUnavailable(t, restoreOf('lib-1-tape-1'))).toBeUndefined();
  });

  it('says nothing when the request could not be granted even with every device back', () => {
    const t = marked(tablesFromSite(twoPathSite({ serverCapacity: 4 })), 'sw-1', 'cabling work');
    expect(blockedByUnavailable(t, request({ job: 'backup-1', streams: 3 }))).toBeUndefined();
  });

  it('offers any one of several devices when one alone would do', () => {
    let t = tablesFromSite(twoPathSite());
    t = marked(t, 'lib-1-drv-1', 'head failure');
    t = marked(t, 'lib-1-drv-2', 'cleaning');
    const block = blockedByUnavailable(t, restoreOf('lib-1-tape-1'));
    expect(block).toEqual({
      unavailable: [
        { name: 'lib-1-drv-1', reason: 'head failure' },
        { name: 'lib-1-drv-2', reason: 'cleaning' },
      ],
      anyOne: true,
    });
    expect(unavailableMessage(restoreOf('lib-1-tape-1'), block!)).toMatch(
      /; mark one of them available \(`kura pool mark lib-1-drv-1 available` or `kura pool mark lib-1-drv-2 available`\) once it is fixed$/,
    );
  });

  it('names every device needed when no one of them would do alone, and only those', () => {
    let t = tablesFromSite(twoPathSite());
    t = marked(t, 'lib-1-tape-1', 'sent off site');
    t = marked(t, 'sw-1', 'stopped answering (hang)');
    t = marked(t, 'sw-2', 'cabling work');
    const block = blockedByUnavailable(t, restoreOf('lib-1-tape-1'));
    expect(block).toEqual({
      unavailable: [
        { name: 'lib-1-tape-1', reason: 'sent off site' },
        { name: 'sw-1', reason: 'stopped answering (hang)' },
      ],
      anyOne: false,
    });
    expect(unavailableMessage(restoreOf('lib-1-tape-1'), block!)).toMatch(
      /^cartridge lib-1-tape-1 cannot be had: lib-1-tape-1 is unavailable: sent off site; sw-1 is unavailable: .*; mark them available \(`kura pool mark lib-1-tape-1 available` and `kura pool mark sw-1 available`\) once they are fixed$/,
    );
  });

  it('speaks of streams when no cartridge is named', () => {
    const t = marked(tablesFromSite(twoPathSite()), 'sw-2', 'cabling work');
    const req = request({ job: 'backup-1', streams: 2 });
    const block = blockedByUnavailable(t, req);
    expect(block?.unavailable.map((d) => d.name)).toEqual(['sw-2']);
    expect(unavailableMessage(req, block!)).toMatch(
      /^the 2 streams asked for cannot be formed from storage array arr-1: sw-2 is unavailable: cabling work/,
    );
  });
});
