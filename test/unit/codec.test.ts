/** The key file, the AES-256-GCM codec, the search attribute hash and kura.yaml's security section. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Payload } from '@temporalio/common';
import { ensureKeyFile, listKeys, readKeyRing, rotateKeyFile } from '../../src/codec/keys';
import { AesGcmCodec, KEY_ID_METADATA } from '../../src/codec/aes-gcm-codec';
import { keyRingOf } from '../../src/codec/data-converter';
import { hashLabel } from '../../src/domain/label-hash';
import { parseConfigText } from '../../src/config/load';
import { ConfigInvalidError, KeyFileInvalidError, KeyUnavailableError } from '../../src/domain/errors';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-keys-'));
  file = path.join(dir, 'keys.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const text = (s: string) => new TextEncoder().encode(s);
const json = (value: unknown): Payload => ({
  metadata: { encoding: text('json/plain') },
  data: text(JSON.stringify(value)),
});

/** The error a call throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('did not throw');
}

describe('the key file', () => {
  it('is created owner-only with one key, k1, and left alone when it exists', () => {
    expect(ensureKeyFile(file)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const before = readFileSync(file, 'utf8');
    expect(ensureKeyFile(file)).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(readKeyRing(file).current).toBe('k1');
  });

  it('keeps every key on rotation and encrypts with the newest', () => {
    ensureKeyFile(file);
    const k1 = readKeyRing(file).keys.get('k1');
    expect(rotateKeyFile(file)).toBe('k2');
    const ring = readKeyRing(file);
    expect(ring.current).toBe('k2');
    expect(ring.keys.get('k1')).toEqual(k1);
    expect(listKeys(file).map((k) => [k.id, k.encrypts])).toEqual([
      ['k1', false],
      ['k2', true],
    ]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('refuses a file others can read, naming it and the chmod that fixes it', () => {
    ensureKeyFile(file);
    chmodSync(file, 0o644);
    const err = thrown(() => readKeyRing(file));
    expect(err).toBeInstanceOf(KeyFileInvalidError);
    expect(err).toMatchObject({ type: 'KeyFileInvalid' });
    expect((err as Error).message).toBe(
      `the key file ${file} has mode 0644: others than its owner can read or change it; run \`chmod 600 ${file}\``,
    );
  });

  it('refuses a missing file with the command that creates one', () => {
    const err = thrown(() => readKeyRing(file));
    expect(err).toBeInstanceOf(KeyFileInvalidError);
    expect((err as Error).message).toMatch(/does not exist; create it with `kura keys rotate`/);
  });

  it('refuses a key that is not 32 bytes, by its path in the file', () => {
    writeFileSync(
      file,
      JSON.stringify({
        version: 1,
        keys: [{ id: 'k1', created: 'x', key: Buffer.alloc(16).toString('base64') }],
        hashKey: Buffer.alloc(32).toString('base64'),
      }),
      { mode: 0o600 },
    );
    const err = thrown(() => readKeyRing(file));
    expect(err).toBeInstanceOf(KeyFileInvalidError);
    expect((err as Error).message).toMatch(/keys\[0\]\.key: must be 32 bytes \(AES-256\), base64-encoded/);
  });

  it('is read again by a running process once it changes', () => {
    ensureKeyFile(file);
    expect(keyRingOf(file).current).toBe('k1');
    rotateKeyFile(file);
    expect(keyRingOf(file).current).toBe('k2');
  });
});

describe('the AES-256-GCM codec', () => {
  it('round-trips payloads, naming the key in the metadata and hiding the data', async () => {
    ensureKeyFile(file);
    const codec = new AesGcmCodec(() => readKeyRing(file));
    const [encrypted] = await codec.encode([json({ vm: 'vm-001', path: '/srv/images' })]);
    expect(new TextDecoder().decode(encrypted!.metadata![KEY_ID_METADATA])).toBe('k1');
    expect(new TextDecoder().decode(encrypted!.metadata!.encoding)).toBe('binary/encrypted');
    expect(Buffer.from(encrypted!.data!).toString('latin1')).not.toContain('vm-001');
    const [decoded] = await codec.decode([encrypted!]);
    expect(JSON.parse(new TextDecoder().decode(decoded!.data!))).toEqual({ vm: 'vm-001', path: '/srv/images' });
    expect(new TextDecoder().decode(decoded!.metadata!.encoding)).toBe('json/plain');
  });

  it('passes payloads written before encryption through unchanged', async () => {
    ensureKeyFile(file);
    const plain = json({ vm: 'vm-001' });
    expect(await new AesGcmCodec(() => readKeyRing(file)).decode([plain])).toEqual([plain]);
  });

  it('decrypts with an older key after a rotation', async () => {
    ensureKeyFile(file);
    const codec = new AesGcmCodec(() => readKeyRing(file));
    const [old] = await codec.encode([json('before')]);
    rotateKeyFile(file);
    const [fresh] = await codec.encode([json('after')]);
    expect(new TextDecoder().decode(fresh!.metadata![KEY_ID_METADATA])).toBe('k2');
    const decoded = await codec.decode([old!, fresh!]);
    expect(decoded.map((p) => JSON.parse(new TextDecoder().decode(p.data!)))).toEqual(['before', 'after']);
  });

  it('fails a payload that was altered with KeyUnavailable naming the key', async () => {
    ensureKeyFile(file);
    const codec = new AesGcmCodec(() => readKeyRing(file));
    const [p] = await codec.encode([json('x')]);
    p!.data![20] = p!.data![20]! ^ 1;
    const err = await codec.decode([p!]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyUnavailableError);
    expect(err).toMatchObject({ type: 'KeyUnavailable', keyId: 'k1' });
    expect((err as Error).message).toMatch(/key "k1" of the key file .* does not decrypt/);
  });

  it('fails a payload relabelled with another key id, because the id is authenticated', async () => {
    ensureKeyFile(file);
    rotateKeyFile(file);
    const codec = new AesGcmCodec(() => readKeyRing(file));
    const [p] = await codec.encode([json('x')]);
    p!.metadata![KEY_ID_METADATA] = text('k1');
    const err = await codec.decode([p!]).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'KeyUnavailableError', keyId: 'k1' });
  });
});

describe('the search attribute hash', () => {
  it('is HMAC-SHA-256 of the name, hex, cut to 80 bits behind h-', () => {
    const key = 'ab'.repeat(32);
    for (const name of ['vm-001', 'hospital', 'array-01/vm-001-data', 'ükö-日本']) {
      const expected = createHmac('sha256', Buffer.from(key, 'hex')).update(name).digest('hex').slice(0, 20);
      expect(hashLabel(key, name)).toBe(`h-${expected}`);
    }
  });
});

describe("kura.yaml's security section", () => {
  it('is on in the lab preset, with a key file beside kura.yaml', () => {
    const loaded = parseConfigText(renderConfigYaml(hospitalPreset({ vms: 2 })), '/etc/kura/kura.yaml');
    expect(loaded.config.security.keyFile).toBe('kura-keys.json');
    expect(loaded.config.security.hashSearchAttributes).toBe(false);
  });

  it('refuses hashing without a key file, at its path and line', () => {
    const cfg = hospitalPreset({ vms: 2 });
    cfg.security = { hashSearchAttributes: true };
    let err: unknown;
    try {
      parseConfigText(renderConfigYaml(cfg), '/etc/kura/kura.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigInvalidError);
    expect((err as ConfigInvalidError).issues).toEqual([
      {
        path: expect.stringMatching(/^security\.hashSearchAttributes \(line \d+\)$/),
        message: 'hashing search attributes needs a key: set security.keyFile too',
      },
    ]);
  });
});
