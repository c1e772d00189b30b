/**
 * The datapath without Temporal: the NBD handshake as Debian's clients and a raw socket see it,
 * passthrough I/O, the control API's refusals, abort, and the throttled and active convergence
 * paths — each checked against the bytes of main storage.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { DatapathClient } from '../../src/datapath/client';
import { createOnlineActivities } from '../../src/activities/online';
import { Catalog } from '../../src/catalog/store';
import { makeLab, type TestLab } from '../support/harness';
import { freePort, nbdUrl, qemuIo } from '../support/nbd';

const run = promisify(execFile);
const SIZE = 2 * 1024 * 1024;
let lab: TestLab;
let dp: DatapathService;
let name: string;
let volumeFile: string;

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({ vms: 2, dataVolumeSize: SIZE, edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort }) });
  dp = await startDatapath(lab.loaded, lab.paths);
  name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
  volumeFile = lab.dataVolume('vm-001');
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

async function untilPhase(client: DatapathClient, phase: string): Promise<void> {
  while ((await client.status(name)).phase !== phase) await new Promise((r) => setTimeout(r, 10));
}

describe('the NBD handshake', () => {
  it('lists every served volume to nbdinfo --list, with its size', async () => {
    const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${dp.nbdPort}`]);
    const listed = (JSON.parse(stdout) as { exports: { 'export-name': string; 'export-size': number }[] }).exports;
    expect(listed.map((e) => [e['export-name'], e['export-size']]).sort()).toEqual(
      [...dp.volumes.keys()].sort().map((n) => [n, SIZE]),
    );
  });

  it('answers NBD_OPT_GO for an unknown export with an error naming the exports there are', async () => {
    const err = await qemuIo(nbdUrl(dp.nbdPort, 'array-01/nope'), ['read 0 512']).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toContain('no export "array-01/nope"; exports: ');
    expect(err?.message).toContain(name);
  });

  it('serves NBD_OPT_EXPORT_NAME, a READ and DISC to a client speaking the bytes of the specification', async () => {
    const sock = net.connect(dp.nbdPort, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    const received = async (n: number) => {
      while (Buffer.concat(chunks).length < n) await new Promise((r) => setTimeout(r, 5));
      return Buffer.concat(chunks);
    };
    const hello = await received(18);
    expect(hello.subarray(0, 16).toString('latin1')).toBe('NBDMAGICIHAVEOPT');
    expect(hello.readUInt16BE(16)).toBe(3); // FIXED_NEWSTYLE | NO_ZEROES
    const opt = Buffer.alloc(20 + name.length);
    opt.writeUInt32BE(3, 0); // client flags: FIXED_NEWSTYLE | NO_ZEROES
    opt.write('IHAVEOPT', 4, 'latin1');
    opt.writeUInt32BE(1, 12); // NBD_OPT_EXPORT_NAME
    opt.writeUInt32BE(name.length, 16);
    opt.write(name, 20, 'latin1');
    sock.write(opt);
    const afterExport = await received(18 + 10);
    expect(Number(afterExport.readBigUInt64BE(18))).toBe(SIZE);
    const req = Buffer.alloc(28);
    req.writeUInt32BE(0x25609513, 0);
    req.writeUInt16BE(0, 6); // READ
    req.write('cookie01', 8, 'latin1');
    req.writeBigUInt64BE(4096n, 16);
    req.writeUInt32BE(16, 24);
    sock.write(req);
    const reply = (await received(28 + 16 + 16)).subarray(28);
    expect(reply.readUInt32BE(0)).toBe(0x67446698);
    expect(reply.readUInt32BE(4)).toBe(0);
    expect(reply.subarray(8, 16).toString('latin1')).toBe('cookie01');
    expect(reply.subarray(16, 32).equals(readFileSync(volumeFile).subarray(4096, 4112))).toBe(true);
    const disc = Buffer.alloc(28);
    disc.writeUInt32BE(0x25609513, 0);
    disc.writeUInt16BE(2, 6);
    sock.write(disc);
    await new Promise((r) => sock.once('close', r));
  });
});

describe('passthrough', () => {
  it('writes, zeroes and reads main storage directly', async () => {
    await qemuIo(nbdUrl(dp.nbdPort, name), [
      'write -P 0x5a 65536 8192',
      'write -z 0 4096',
      'flush',
      'read -P 0x5a 65536 8192',
      'read -P 0 0 4096',
    ]);
    const bytes = readFileSync(volumeFile);
    expect(bytes.subarray(65536, 65536 + 8192).every((b) => b === 0x5a)).toBe(true);
    expect(bytes.subarray(0, 4096).every((b) => b === 0)).toBe(true);
  });
});

describe('the control API', () => {
  it('refuses a malformed request with InvalidInput and the field at fault, and changes nothing', async () => {
    const res = await fetch(`${dp.controlUrl}/v1/volumes/${encodeURIComponent(name)}/enter-backup`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dp.token}` },
      body: JSON.stringify({ backupId: 'x', image: 'relative.img' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { type: 'InvalidInput', message: 'invalid enter-backup request: image: must be an absolute path' },
    });
    expect(dp.volumes.get(name)!.status()).toMatchObject({ mode: 'passthrough', backupId: null });
    expect(existsSync(path.resolve('relative.img'))).toBe(false);
  });

  it('answers NotFound for a volume it does not serve, naming the ones it does', async () => {
    const client = new DatapathClient(dp.controlUrl, dp.token);
    const err = await client.status('array-01/nope').then(
      () => undefined,
      (e: { type?: string; message?: string }) => e,
    );
    expect(err?.type).toBe('NotFound');
    expect(err?.message).toContain('the datapath serves no volume "array-01/nope"; it serves: ');
  });

  it('refuses a catch-up round before the base copy is done', async () => {
    const client = new DatapathClient(dp.controlUrl, dp.token);
    const image = path.join(lab.paths.home, 'online', 'early.img');
    // The base copy has not even been started when the round is asked for.
    const v = dp.volumes.get(name)!;
    await v.enterBackup('early', image);
    try {
      const err = await client.catchUp(name, 'early').then(
        () => undefined,
        (e: { type?: string; message?: string }) => e,
      );
      expect(err?.type).toBe('InvalidInput');
      expect(err?.message).toBe(
        `${name} has not finished its base copy (0 of ${SIZE} bytes); catch-up starts after it`,
      );
    } finally {
      await client.abort(name, 'early');
    }
  });
});

describe('abort', () => {
  it('puts every write of the backup on main storage, switches to passthrough and removes the partial image', async () => {
    const client = new DatapathClient(dp.controlUrl, dp.token);
    const image = path.join(lab.paths.home, 'online', 'aborted.img');
    await client.enterBackup(name, 'aborted', image);
    await qemuIo(nbdUrl(dp.nbdPort, name), ['write -P 0x77 131072 65536', 'write -P 0x78 131072 1000']);
    // Frozen during the backup…
    expect(
      readFileSync(volumeFile)
        .subarray(131072, 131072 + 65536)
        .every((b) => b === 0x77),
    ).toBe(false);
    const st = await client.abort(name, 'aborted');
    expect(st).toMatchObject({ mode: 'passthrough', unreflectedBytes: 0 });
    // …and holding the latest data after the abort.
    const bytes = readFileSync(volumeFile);
    expect(bytes.subarray(131072, 131072 + 1000).every((b) => b === 0x78)).toBe(true);
    expect(bytes.subarray(131072 + 1000, 131072 + 65536).every((b) => b === 0x77)).toBe(true);
    expect(existsSync(image)).toBe(false);
  });
});

describe('the active convergence path', () => {
  it('writes synchronously to main storage once escalated, and reports the path in the status', async () => {
    // Escalate from the first round on, so the active path is taken whatever the timing.
    await dp.close();
    dp = await startDatapath(lab.loaded, lab.paths, {
      nbdPort: 0,
      controlPort: 0,
      settings: { throttleAfterRounds: 0, activeAfterRounds: 0, throttleDelay: 1 },
    });
    const client = new DatapathClient(dp.controlUrl, dp.token);
    const image = path.join(lab.paths.home, 'online', 'active.img');
    const url = nbdUrl(dp.nbdPort, name);
    await client.enterBackup(name, 'active', image);
    await qemuIo(url, ['write -P 0x31 262144 4096']);
    await client.startBaseCopy(name, 'active');
    await untilPhase(client, 'catch-up');
    const round = await client.catchUp(name, 'active');
    expect(round.status.path).toBe('active');
    expect(round.bytesWritten).toBe(4096);

    await qemuIo(url, ['write -P 0x32 393216 4096']);
    // Still in backup mode, yet the write is already on main storage and nothing is left unreflected.
    const st = await client.status(name);
    expect(st).toMatchObject({ mode: 'backup', phase: 'catch-up', path: 'active', unreflectedBytes: 0 });
    expect(
      readFileSync(volumeFile)
        .subarray(393216, 393216 + 4096)
        .every((b) => b === 0x32),
    ).toBe(true);
    // The image keeps the switch instant: neither write is in it.
    const img = readFileSync(image);
    expect(img.subarray(262144, 262144 + 4096).every((b) => b === 0x31)).toBe(false);
    expect(img.subarray(393216, 393216 + 4096).every((b) => b === 0x32)).toBe(false);

    const fin = await client.finish(name, 'active', 10_000);
    expect(fin).toMatchObject({ switched: true, drainedBytes: 0 });
    expect(fin.quiesceMs).toBeGreaterThan(0);
    await qemuIo(url, ['read -P 0x31 262144 4096', 'read -P 0x32 393216 4096']);

    // A finish retried after the datapath restarted is answered from the record of the switch back.
    await dp.close();
    dp = await startDatapath(lab.loaded, lab.paths);
    expect(dp.volumes.get(name)!.status().lastFinished).toEqual({ backupId: 'active', quiesceMs: fin.quiesceMs });
    const catalog = new Catalog(lab.paths.catalog);
    try {
      const activities = createOnlineActivities({ loaded: lab.loaded, paths: lab.paths, catalog });
      const again = await activities.finishOnline({ volume: name, backupId: 'active', maxEtaMs: 10_000 });
      expect(again).toMatchObject({ switched: true, quiesceMs: fin.quiesceMs });
      // Another backup id is not taken for this one: the volume is not in backup mode for it.
      const other = await activities.finishOnline({ volume: name, backupId: 'other', maxEtaMs: 10_000 }).then(
        () => undefined,
        (e: { type?: string; message?: string }) => e,
      );
      expect(other?.type).toBe('InvalidInput');
      expect(other?.message).toBe(`${name} is not in backup mode; start with enter-backup`);
    } finally {
      catalog.close();
    }
  });
});

describe('the throttled convergence path', () => {
  it('delays each host write by throttleDelay once escalated, and leaves it for the next round rather than writing main storage', async () => {
    await dp.close();
    dp = await startDatapath(lab.loaded, lab.paths, {
      nbdPort: 0,
      controlPort: 0,
      settings: { throttleAfterRounds: 0, activeAfterRounds: 1000, throttleDelay: 300 },
    });
    const client = new DatapathClient(dp.controlUrl, dp.token);
    const volume = dp.volumes.get(name)!;
    const at = 458752;
    await client.enterBackup(name, 'throttled', path.join(lab.paths.home, 'online', 'throttled.img'));
    try {
      await client.startBaseCopy(name, 'throttled');
      await untilPhase(client, 'catch-up');
      expect((await client.catchUp(name, 'throttled')).status.path).toBe('throttled');

      const t0 = performance.now();
      await volume.write(at, Buffer.alloc(4096, 0x42), false);
      // Timers may fire a hair early against performance.now(); the delay is still the throttle's.
      expect(performance.now() - t0).toBeGreaterThanOrEqual(295);
      expect(await client.status(name)).toMatchObject({ mode: 'backup', path: 'throttled', unreflectedBytes: 4096 });
      expect(
        readFileSync(volumeFile)
          .subarray(at, at + 4096)
          .every((b) => b === 0x42),
      ).toBe(false);
    } finally {
      await client.abort(name, 'throttled');
    }
    expect(
      readFileSync(volumeFile)
        .subarray(at, at + 4096)
        .every((b) => b === 0x42),
    ).toBe(true);
  });
});
