/**
 * The payload codec that encrypts everything Kura sends to Temporal with AES-256-GCM: each payload
 * (metadata and data) becomes the ciphertext of a new payload whose metadata names the key id, so
 * any key of the ring decrypts what it once encrypted. Payloads that are not encrypted (those
 * written before encryption was turned on) pass through decoding as they are.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { KeyUnavailableError } from '../domain/errors';
import type { KeyRing } from './keys';

/** The `encoding` metadata of an encrypted payload, as the Temporal samples name it. */
export const ENCRYPTED_ENCODING = 'binary/encrypted';
/** The metadata key naming the key a payload was encrypted with. */
export const KEY_ID_METADATA = 'encryption-key-id';
const CIPHER_METADATA = 'encryption-cipher';
const CIPHER = 'AES-256-GCM';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Encrypts with the ring's newest key; decrypts with whichever key each payload names. */
export class AesGcmCodec implements PayloadCodec {
  /** `ring` is asked at every batch, so a rotation reaches a running process (see keyRingOf). */
  constructor(private readonly ring: () => KeyRing) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const ring = this.ring();
    const id = ring.current;
    const key = ring.keys.get(id)!;
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      // The key id is authenticated too: a payload relabelled with another id does not decrypt.
      cipher.setAAD(utf8.encode(id));
      const body = Buffer.concat([cipher.update(serialize(p)), cipher.final()]);
      return {
        metadata: {
          encoding: utf8.encode(ENCRYPTED_ENCODING),
          [KEY_ID_METADATA]: utf8.encode(id),
          [CIPHER_METADATA]: utf8.encode(CIPHER),
        },
        data: new Uint8Array(Buffer.concat([iv, body, cipher.getAuthTag()])),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    const ring = this.ring();
    return payloads.map((p) => {
      const encoding = p.metadata?.encoding;
      if (!encoding || fromUtf8.decode(encoding) !== ENCRYPTED_ENCODING) return p;
      const idBytes = p.metadata?.[KEY_ID_METADATA];
      const id = idBytes ? fromUtf8.decode(idBytes) : '';
      const key = ring.keys.get(id);
      if (!key)
        throw new KeyUnavailableError(
          id,
          `a payload is encrypted with key "${id || '(none named)'}", which the key file ${ring.file} does not hold (it holds ${[...ring.keys.keys()].join(', ')}); add that key back to the file`,
        );
      const data = Buffer.from(p.data ?? new Uint8Array());
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
        decipher.setAAD(utf8.encode(id));
        decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
        return deserialize(
          Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]),
        );
      } catch (err) {
        throw new KeyUnavailableError(
          id,
          `key "${id}" of the key file ${ring.file} does not decrypt a payload encrypted under that id: the file holds another key of that name, or the payload was altered`,
          err,
        );
      }
    });
  }
}

/** A payload as JSON with base64 bytes: plain to read back, and independent of the protobuf runtime. */
function serialize(p: Payload): Buffer {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) if (v) metadata[k] = Buffer.from(v).toString('base64');
  return Buffer.from(JSON.stringify({ metadata, data: Buffer.from(p.data ?? new Uint8Array()).toString('base64') }));
}

function deserialize(bytes: Buffer): Payload {
  const o = JSON.parse(bytes.toString('utf8')) as { metadata: Record<string, string>; data: string };
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(o.metadata)) metadata[k] = new Uint8Array(Buffer.from(v, 'base64'));
  return { metadata, data: new Uint8Array(Buffer.from(o.data, 'base64')) };
}
