/**
 * Kura's key file: the AES-256 keys that encrypt payloads (the newest encrypts, every listed key
 * decrypts, rotation appends) and the key of the search-attribute hash, which never rotates so that
 * filters keep matching runs started before a rotation. The file must be its owner's alone.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import type { LoadedConfig } from '../config/load';
import { KeyFileInvalidError } from '../domain/errors';
import { parseWith } from '../domain/validate';

const Base64Key = z
  .string()
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64')
  .refine((s) => Buffer.from(s, 'base64').length === 32, 'must be 32 bytes (AES-256), base64-encoded');

export const KeyEntrySchema = z.object({
  /** Written into every payload's metadata, so a decoder knows which key to use. */
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, dot, dash and underscore only'),
  created: z.string(),
  key: Base64Key,
});
export type KeyEntry = z.infer<typeof KeyEntrySchema>;

export const KeyFileSchema = z
  .object({
    version: z.literal(1),
    /** Oldest first; the last one encrypts. */
    keys: z.array(KeyEntrySchema).min(1, 'the key file needs at least one key'),
    /** The HMAC key of hashed search attribute values. */
    hashKey: Base64Key,
  })
  .superRefine((f, ctx) => {
    const seen = new Set<string>();
    f.keys.forEach((k, i) => {
      if (seen.has(k.id)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'id'], message: `key id "${k.id}" twice` });
      seen.add(k.id);
    });
  });
export type KeyFile = z.infer<typeof KeyFileSchema>;

/** The keys of one key file, decoded. */
export interface KeyRing {
  file: string;
  /** The id of the key that encrypts. */
  current: string;
  keys: ReadonlyMap<string, Buffer>;
  hashKey: Buffer;
}

/** The key file named by kura.yaml's `security.keyFile` (absolute), or undefined when encryption is off. */
export function keyFileOf(loaded: LoadedConfig): string | undefined {
  const f = loaded.config.security.keyFile;
  return f === undefined ? undefined : path.resolve(loaded.dir, f);
}

/**
 * Reads and checks a key file: it must exist, be its owner's alone (no group or other bits, as
 * `chmod 600` leaves it) and validate. Throws KeyFileInvalidError naming the file and the fix.
 */
export function readKeyRing(file: string): KeyRing {
  const abs = path.resolve(file);
  if (!existsSync(abs))
    throw new KeyFileInvalidError(
      `the key file ${abs} does not exist; create it with \`kura keys rotate\` (or restore it from where its keys are kept)`,
      { file: abs },
    );
  const mode = statSync(abs).mode & 0o777;
  if ((mode & 0o077) !== 0)
    throw new KeyFileInvalidError(
      `the key file ${abs} has mode ${mode.toString(8).padStart(4, '0')}: others than its owner can read or change it; run \`chmod 600 ${abs}\``,
      { file: abs, mode },
    );
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(abs, 'utf8'));
  } catch (err) {
    throw new KeyFileInvalidError(`the key file ${abs} is not JSON: ${(err as Error).message}`, { file: abs });
  }
  let parsed: KeyFile;
  try {
    parsed = parseWith(KeyFileSchema, raw, `key file ${abs}`);
  } catch (err) {
    throw new KeyFileInvalidError((err as Error).message, { file: abs });
  }
  const last = parsed.keys[parsed.keys.length - 1]!;
  return {
    file: abs,
    current: last.id,
    keys: new Map(parsed.keys.map((k) => [k.id, Buffer.from(k.key, 'base64')])),
    hashKey: Buffer.from(parsed.hashKey, 'base64'),
  };
}

/** The ids of a key file's keys, oldest first, with when each was made (for `kura keys list`). */
export function listKeys(file: string): { id: string; created: string; encrypts: boolean }[] {
  readKeyRing(file); // the same checks as every reader
  const parsed = KeyFileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  return parsed.keys.map((k, i) => ({ id: k.id, created: k.created, encrypts: i === parsed.keys.length - 1 }));
}

/** Creates the key file with one key unless it exists; answers whether it created it. */
export function ensureKeyFile(file: string): boolean {
  if (existsSync(file)) return false;
  writeKeyFile(file, { version: 1, keys: [newKey('k1')], hashKey: randomBytes(32).toString('base64') });
  return true;
}

/**
 * Adds a new key, which encrypts from now on; the older ones stay to decrypt what they encrypted.
 * Creates the file when there is none. Answers the new key's id.
 */
export function rotateKeyFile(file: string): string {
  if (ensureKeyFile(file)) return readKeyRing(file).current;
  readKeyRing(file);
  const parsed = KeyFileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const taken = new Set(parsed.keys.map((k) => k.id));
  let n = parsed.keys.length + 1;
  while (taken.has(`k${n}`)) n++;
  const key = newKey(`k${n}`);
  writeKeyFile(file, { ...parsed, keys: [...parsed.keys, key] });
  return key.id;
}

function newKey(id: string): KeyEntry {
  return { id, created: new Date().toISOString(), key: randomBytes(32).toString('base64') };
}

/**
 * Writes the whole file beside itself with mode 0600 from its first byte, then renames it into
 * place: a reader sees the old keys or the new ones, never half a file, and never a moment of 0644.
 */
function writeKeyFile(file: string, content: KeyFile): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(content, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
