/**
 * The remote-copy link's shared secret: 32 random bytes in an owner-only (0600) file that both
 * sites of an installation hold, from which the shipper proves itself to the receiver (an
 * HMAC-SHA256 over a nonce the receiver sends on each connection), so no other process can put
 * writes into a remote copy.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import type { LoadedConfig } from '../config/load';
import type { KuraPaths } from '../config/paths';
import { KeyFileInvalidError } from '../domain/errors';

/** Bytes of the nonce the receiver sends and of the proof the shipper answers with. */
export const NONCE_BYTES = 32;

/** Where the secret lives: kura.yaml's `remoteCopy.secretFile` (relative to kura.yaml), else under Kura's home. */
export function remoteSecretFile(loaded: LoadedConfig, paths: KuraPaths): string {
  const configured = loaded.config.remoteCopy.secretFile;
  return configured ? path.resolve(loaded.dir, configured) : path.join(paths.home, 'remote', 'link.secret');
}

/**
 * Reads the secret, creating it (0600 from its first byte) when missing: the side that starts first
 * writes it, the other reads the same file (in a real installation, a copy of it). A file others
 * than its owner may read is refused, as is one too short to be a secret.
 */
export function loadRemoteSecret(file: string): Buffer {
  const abs = path.resolve(file);
  if (!existsSync(abs)) {
    mkdirSync(path.dirname(abs), { recursive: true, mode: 0o700 });
    try {
      // 'wx': when both sides start at once, one creates it and the other reads what it wrote.
      const fd = openSync(abs, 'wx', 0o600);
      try {
        writeSync(fd, `${randomBytes(32).toString('hex')}\n`);
      } finally {
        closeSync(fd);
      }
      // The mode given to open is masked by the umask.
      chmodSync(abs, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const mode = statSync(abs).mode & 0o777;
  if ((mode & 0o077) !== 0)
    throw new KeyFileInvalidError(
      `the remote-copy secret ${abs} has mode ${mode.toString(8).padStart(4, '0')}: others than its owner can read or change it; run \`chmod 600 ${abs}\``,
      { file: abs, mode },
    );
  const text = readFileSync(abs, 'utf8').trim();
  if (text.length < 32)
    throw new KeyFileInvalidError(
      `the remote-copy secret ${abs} holds ${text.length} characters, fewer than 32; delete it and let Kura write a new one (then copy it to the other site)`,
      { file: abs },
    );
  return Buffer.from(text, 'utf8');
}

/** The proof that the sender knows the secret: bound to the group and to this connection's nonce. */
export function linkProof(secret: Buffer, group: string, nonce: Buffer): Buffer {
  return createHmac('sha256', secret).update(`kura remote-copy v1\0${group}\0`).update(nonce).digest();
}

/** Whether `proof` is the right one for this nonce, compared in constant time. */
export function proofHolds(secret: Buffer, group: string, nonce: Buffer, proof: Buffer): boolean {
  const want = linkProof(secret, group, nonce);
  return proof.length === want.length && timingSafeEqual(proof, want);
}
