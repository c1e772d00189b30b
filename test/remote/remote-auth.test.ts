/**
 * The remote-copy link's authentication: a connection that cannot prove the shared secret is
 * closed and logged, and nothing it sent reaches the replica; the real shipper with the secret ships.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { GroupJournal } from '../../src/datapath/group-journal';
import { ErrorType, KuraError } from '../../src/domain/errors';
import { Receiver } from '../../src/remote/receiver';
import type { LoadedConfig } from '../../src/config/load';
import type { KuraPaths } from '../../src/config/paths';
import { loadRemoteSecret, remoteSecretFile } from '../../src/remote/secret';
import { ship } from '../../src/remote/shipper';
import { batchFrame, proofFrame } from '../../src/remote/wire';
import { makeReplica, openRaw, until, write } from './raw-link';

const SIZE = 64 * 1024;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setUp() {
  const { dir, volumeFile, replica } = makeReplica('db', SIZE);
  const secret = randomBytes(32);
  const log: string[] = [];
  const receiver = new Receiver({ replica, secret, port: 0, log: (l) => log.push(l) });
  const port = await receiver.listen();
  cleanups.push(async () => {
    await receiver.close();
    replica.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, volumeFile, replica, secret, receiver, port, log };
}

const payload = Buffer.alloc(4096, 0x5a);
const batch = batchFrame('db', [write(1, 0, payload), write(2, 8192, null, 4096)]);

describe('remote-copy link authentication', () => {
  it('closes a connection that sends a batch without the proof, and takes nothing from it', async () => {
    const { replica, port, volumeFile, log, receiver } = await setUp();
    const raw = await openRaw(port);
    raw.send(batch);
    expect(await until(() => raw.isClosed(), 5000)).toBe(true);
    expect(replica.state()).toMatchObject({ applied: 0, inbox: 0, intent: null });
    expect(replica.appliedLog()).toEqual([]);
    expect(readFileSync(volumeFile).equals(Buffer.alloc(SIZE))).toBe(true);
    expect(raw.frames).toEqual([]);
    expect(log).toHaveLength(1);
    expect(log[0]).toMatch(/remote-copy db: refused a connection .* \(not authenticated\): its first frame \(kind 1\)/);
    expect(receiver.error).toBeNull();
  });

  it('closes a connection whose proof is made with another secret, and takes nothing from it', async () => {
    const { replica, port, volumeFile, log } = await setUp();
    const raw = await openRaw(port, { secret: randomBytes(32), group: 'db' });
    raw.send(batch);
    expect(await until(() => raw.isClosed(), 5000)).toBe(true);
    expect(replica.state()).toMatchObject({ applied: 0, inbox: 0 });
    expect(readFileSync(volumeFile).equals(Buffer.alloc(SIZE))).toBe(true);
    expect(raw.frames).toEqual([]);
    expect(log[0]).toMatch(/its proof does not match the secret/);
  });

  it('refuses a proof made for another group, or replayed from another connection', async () => {
    const { replica, port, volumeFile, secret, log } = await setUp();
    const other = await openRaw(port, { secret, group: 'another' });
    other.send(batch);
    expect(await until(() => other.isClosed(), 5000)).toBe(true);

    // A proof that held on one connection is worth nothing on the next: the nonce is new.
    const first = await openRaw(port, { secret, group: 'db' });
    const { linkProof } = await import('../../src/remote/secret');
    const captured = proofFrame(linkProof(secret, 'db', first.nonce));
    await first.end();
    const replay = await openRaw(port);
    expect(replay.nonce.equals(first.nonce)).toBe(false);
    replay.send(Buffer.concat([captured, batch]));
    expect(await until(() => replay.isClosed(), 5000)).toBe(true);
    expect(replica.state()).toMatchObject({ applied: 0, inbox: 0 });
    expect(readFileSync(volumeFile).equals(Buffer.alloc(SIZE))).toBe(true);
    expect(log.filter((l) => /its proof does not match the secret/.test(l))).toHaveLength(2);
  });

  it('takes the batch of a connection that proved the secret', async () => {
    const { replica, port, volumeFile, secret } = await setUp();
    const raw = await openRaw(port, { secret, group: 'db' });
    raw.send(batch);
    expect(await until(() => replica.state().applied === 2, 5000)).toBe(true);
    const want = Buffer.alloc(SIZE);
    payload.copy(want, 0);
    expect(readFileSync(volumeFile).equals(want)).toBe(true);
    expect(raw.isClosed()).toBe(false);
    await raw.end();
  });

  it('the real shipper with the secret ships; with another secret it ships nothing', async () => {
    const { dir, replica, port, volumeFile, secret, log } = await setUp();
    const journal = new GroupJournal('db', path.join(dir, 'journal.db'));
    cleanups.push(() => journal.close());
    const want = Buffer.alloc(SIZE);
    for (let i = 0; i < 16; i++) {
      const b = Buffer.alloc(4096, i + 1);
      journal.append('a/v', i * 4096, b);
      b.copy(want, i * 4096);
    }
    const opts = {
      journal,
      receiverPort: port,
      wan: { bandwidth: 0, latency: 0 },
      faultsFile: path.join(dir, 'wan.json'),
      durationMs: 600,
      batchEntries: 4,
      resendAfterMs: 200,
    };
    const refused = await ship({ ...opts, secret: randomBytes(32) });
    expect(refused.lag.appliedSeq).toBe(0);
    expect(replica.state()).toMatchObject({ applied: 0, inbox: 0 });
    expect(log.some((l) => /its proof does not match the secret/.test(l))).toBe(true);

    const stop = new AbortController();
    const shipping = ship({ ...opts, durationMs: 10_000, secret, signal: stop.signal });
    expect(await until(() => journal.acked === 16, 8000)).toBe(true);
    stop.abort();
    const res = await shipping;
    expect(res.lag.appliedSeq).toBe(16);
    expect(readFileSync(volumeFile).equals(want)).toBe(true);
  });
});

describe('the remote-copy secret file', () => {
  it('is created 0600 when missing, read back the same, and refused with wider permissions', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kura-remote-secret-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'remote', 'link.secret');
    const first = loadRemoteSecret(file);
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadRemoteSecret(file).equals(first)).toBe(true);

    chmodSync(file, 0o644);
    let caught: unknown;
    try {
      loadRemoteSecret(file);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(KuraError);
    expect((caught as KuraError).type).toBe(ErrorType.KeyFileInvalid);
    expect((caught as Error).message).toBe(
      `the remote-copy secret ${file} has mode 0644: others than its owner can read or change it; run \`chmod 600 ${file}\``,
    );

    writeFileSync(file, 'short\n', { mode: 0o600 });
    chmodSync(file, 0o600);
    expect(() => loadRemoteSecret(file)).toThrow(/holds 5 characters, fewer than 32/);
  });

  it("is kura.yaml's remoteCopy.secretFile, relative to kura.yaml, else under Kura's home", () => {
    const loaded = (secretFile?: string) =>
      ({ dir: '/etc/kura', config: { remoteCopy: { secretFile } } }) as unknown as LoadedConfig;
    const paths = { home: '/var/lib/kura' } as KuraPaths;
    expect(remoteSecretFile(loaded('secrets/link.secret'), paths)).toBe('/etc/kura/secrets/link.secret');
    expect(remoteSecretFile(loaded('/abs/link.secret'), paths)).toBe('/abs/link.secret');
    expect(remoteSecretFile(loaded(), paths)).toBe('/var/lib/kura/remote/link.secret');
  });
});
