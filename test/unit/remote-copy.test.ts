/**
 * Remote copy's pure and local parts: the groups in kura.yaml and what is wrong with a bad one, a
 * site's task queue, the replica's order of application whatever the order of arrival, a zeroed
 * range carried as its length, and the `kura remote status` line.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseConfigText } from '../../src/config/load';
import { kuraPaths } from '../../src/config/paths';
import { resolveRemoteGroup } from '../../src/config/remote';
import { ConfigInvalidError, ErrorType, NotFoundError } from '../../src/domain/errors';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import { siteTaskQueue } from '../../src/api/task-queues';
import { Replica } from '../../src/remote/replica';
import { batchFrame, parseBatch } from '../../src/remote/wire';
import { GroupJournal } from '../../src/datapath/group-journal';
import { Volume } from '../../src/datapath/volume';
import { DatapathConfigSchema } from '../../src/domain/inventory';
import { renderStatus } from '../../src/cli/remote';
import type { ConfigInput } from '../../src/domain/inventory';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function config(edit: (cfg: ConfigInput) => void) {
  const cfg = hospitalPreset({ vms: 2, dataVolumeSize: 1024 * 1024 });
  const dr = JSON.parse(JSON.stringify(cfg.sites[0])) as ConfigInput['sites'][number];
  dr.name = 'dr';
  dr.vms = [];
  dr.policies = [];
  cfg.sites.push(dr);
  edit(cfg);
  return parseConfigText(renderConfigYaml(cfg), '/etc/kura/kura.yaml');
}

function configError(edit: (cfg: ConfigInput) => void): ConfigInvalidError {
  try {
    config(edit);
  } catch (err) {
    if (err instanceof ConfigInvalidError) return err;
    throw err;
  }
  throw new Error('the configuration was accepted');
}

const group = (over: Record<string, unknown> = {}) => ({
  name: 'db',
  main: 'hospital',
  remote: 'dr',
  volumes: ['array-01/vm-001-data', { main: 'array-01/vm-002-data', remote: 'array-01/vm-002-data' }],
  receiverPort: 7300,
  ...over,
});

describe('remote-copy groups in kura.yaml', () => {
  it('resolves a group to the files of its volumes at both sites', () => {
    const loaded = config((cfg) => void ((cfg as Record<string, unknown>).remoteCopy = { groups: [group()] }));
    const paths = kuraPaths(loaded);
    const r = resolveRemoteGroup(loaded, paths, 'db');
    expect(
      r.volumes.map((v) => [v.name, path.relative(paths.lab, v.mainFile), path.relative(paths.lab, v.remoteFile)]),
    ).toEqual([
      ['array-01/vm-001-data', 'hospital/arrays/array-01/vm-001-data.img', 'dr/arrays/array-01/vm-001-data.img'],
      ['array-01/vm-002-data', 'hospital/arrays/array-01/vm-002-data.img', 'dr/arrays/array-01/vm-002-data.img'],
    ]);
    expect(r.journalFile).toBe(path.join(paths.home, 'remote', 'hospital', 'db', 'journal.db'));
    expect(r.replicaFile).toBe(path.join(paths.home, 'remote', 'dr', 'db', 'replica.db'));
  });

  it('refuses a group copied to its own site, and a group defined twice, naming where', () => {
    const err = configError(
      (cfg) =>
        void ((cfg as Record<string, unknown>).remoteCopy = { groups: [group({ remote: 'hospital' }), group()] }),
    );
    const messages = err.issues.map((i) => `${i.path}: ${i.message}`);
    // Each with the line of kura.yaml it is on.
    expect(messages).toEqual([
      expect.stringMatching(
        /^remoteCopy\.groups\[0\]\.remote \(line \d+\): must differ from main \(both are "hospital"\)$/,
      ),
      expect.stringMatching(
        /^remoteCopy\.groups\[1\]\.name \(line \d+\): remote-copy group "db" is defined twice \(also groups\[0\]\)$/,
      ),
    ]);
  });

  it('names the groups there are when asked for one that is not, and a volume the remote site lacks', () => {
    const loaded = config(
      (cfg) => void ((cfg as Record<string, unknown>).remoteCopy = { groups: [group({ volumes: ['array-01/nope'] })] }),
    );
    expect(() => resolveRemoteGroup(loaded, kuraPaths(loaded), 'wal')).toThrow(NotFoundError);
    expect(() => resolveRemoteGroup(loaded, kuraPaths(loaded), 'wal')).toThrow(
      /no remote-copy group "wal".*groups: db/,
    );
    expect(() => resolveRemoteGroup(loaded, kuraPaths(loaded), 'db')).toThrow(
      /remote-copy group db names main volume "array-01\/nope", which is no volume of site hospital/,
    );
  });
});

describe('site task queues', () => {
  it('sit beside the control queue, of its installation', () => {
    expect(siteTaskQueue('dr')).toBe('kura-site-dr');
    expect(siteTaskQueue('dr', 'kura-control@a1b2c3d4')).toBe('kura-site-dr@a1b2c3d4');
    expect(siteTaskQueue('dr', 't-1234-kura-control')).toBe('t-1234-kura-site-dr');
  });
});

describe('the replica', () => {
  function replica() {
    const dir = mkdtempSync(path.join(tmpdir(), 'kura-replica-'));
    dirs.push(dir);
    const file = path.join(dir, 'v.img');
    writeFileSync(file, Buffer.alloc(64 * 1024));
    return { r: new Replica('db', path.join(dir, 'replica.db'), { 'a/v': file }), file };
  }
  const w = (seq: number, offset: number, fill: number) => ({
    seq,
    at: 1000 + seq,
    volume: 'a/v',
    offset,
    length: 16,
    data: Buffer.alloc(16, fill),
  });

  it('applies in seq order only once the run is contiguous, and ignores what it already applied', async () => {
    const { r, file } = replica();
    // Seq 3 and 2 overwrite seq 1's bytes; they arrive first.
    r.receive([w(3, 0, 3), w(2, 0, 2)]);
    expect(await r.apply()).toBe(0);
    expect(readFileSync(file).subarray(0, 16).equals(Buffer.alloc(16))).toBe(true);
    r.receive([w(1, 0, 1)]);
    expect(await r.apply()).toBe(3);
    expect(readFileSync(file).subarray(0, 16).equals(Buffer.alloc(16, 3))).toBe(true);
    // A resent batch changes nothing.
    r.receive([w(2, 0, 2), w(1, 0, 1)]);
    expect(await r.apply()).toBe(3);
    expect(readFileSync(file).subarray(0, 16).equals(Buffer.alloc(16, 3))).toBe(true);
    expect(r.appliedLog()).toEqual([1, 2, 3]);
    expect(r.state()).toMatchObject({ applied: 3, appliedAt: 1003, inbox: 0, intent: null });
    r.close();
  });

  it('applies each seq once when two appliers of one replica run at the same time', async () => {
    const { r, file } = replica();
    // A second applier of the same file: the server's retry of an applier it lost track of.
    const again = new Replica('db', r.file, { 'a/v': file });
    r.receive(Array.from({ length: 8 }, (_, i) => w(i + 1, i * 16, i + 1)));
    const [a, b] = await Promise.all([r.apply({ batch: 4, pauseMs: 5 }), again.apply({ batch: 4, pauseMs: 5 })]);
    expect([a, b]).toEqual([8, 8]);
    expect(r.appliedLog()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(r.state()).toMatchObject({ applied: 8, inbox: 0, intent: null });
    for (let i = 0; i < 8; i++)
      expect(
        readFileSync(file)
          .subarray(i * 16, i * 16 + 16)
          .equals(Buffer.alloc(16, i + 1)),
      ).toBe(true);
    again.close();
    r.close();
  });

  it('takes a range written with zeroes as its length, through the datapath, the journal and the wire', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kura-zeroes-'));
    dirs.push(dir);
    const main = path.join(dir, 'main.img');
    writeFileSync(main, Buffer.alloc(4 * 1024 * 1024, 0xaa));
    const journal = new GroupJournal('db', path.join(dir, 'journal.db'));
    const v = await Volume.open({
      name: 'a/v',
      mainFile: main,
      stateDir: path.join(dir, 'state'),
      settings: DatapathConfigSchema.parse({}),
      onWrite: (offset, length, data) =>
        void (data ? journal.append('a/v', offset, data) : journal.appendZeroes('a/v', offset, length)),
    });
    await v.write(0, Buffer.alloc(4096, 1), false);
    await v.writeZeroes(4096, 3 * 1024 * 1024, false);
    await v.close();
    const writes = journal.read(0, 10);
    expect(writes.map((w) => [w.seq, w.offset, w.length, w.data === null])).toEqual([
      [1, 0, 4096, false],
      [2, 4096, 3 * 1024 * 1024, true],
    ]);
    expect(journal.pending(0).bytes).toBe(4096 + 3 * 1024 * 1024);
    // The zeroing crosses the wire as its length only.
    const frame = batchFrame('db', writes);
    expect(frame.length).toBeLessThan(4096 + 1024);
    const remoteFile = path.join(dir, 'remote.img');
    writeFileSync(remoteFile, Buffer.alloc(4 * 1024 * 1024, 0xaa));
    const r = new Replica('db', path.join(dir, 'replica.db'), { 'a/v': remoteFile });
    r.receive(parseBatch(frame).writes);
    expect(await r.apply()).toBe(2);
    expect(readFileSync(remoteFile).equals(readFileSync(main))).toBe(true);
    r.close();
    journal.close();
  });

  it('refuses host writes while it is the secondary, and tracks them by block once promoted', () => {
    const { r } = replica();
    expect(() => r.trackHostWrite('a/v', 0, 10)).toThrow(expect.objectContaining({ type: ErrorType.AccessDenied }));
    r.promote();
    r.trackHostWrite('a/v', 65_000, 2000);
    expect(r.changedBlocks()).toEqual({ 'a/v': [0, 1] });
    r.close();
  });
});

describe('kura remote status', () => {
  it('prints one line per group with its lag', () => {
    const out = renderStatus([
      {
        group: 'db',
        role: 'shipping',
        rounds: 7,
        lag: { mainSeq: 120, appliedSeq: 100, writes: 20, bytes: 1024 * 1024, seconds: 3.25, measuredAt: '' },
        failover: null,
        step: 'shipping',
        lastOperation: null,
      },
    ]);
    expect(out).toMatch(/GROUP\s+ROLE\s+LAG WRITES\s+LAG BYTES\s+LAG SECONDS/);
    expect(out).toMatch(/db\s+shipping\s+20\s+1\.0 MiB\s+3\.3\s+100\s+120\s+shipping/);
  });
});
