/**
 * SHA-256, the checksum the catalog, the image store and every restore rely on: the one place a
 * hash object is made, for bytes in memory and for the data mover's running digests.
 */
import { createHash, type Hash } from 'node:crypto';

/** A fresh SHA-256 digest to feed block by block (the data mover's running checksum). */
export function newSha256(): Hash {
  return createHash('sha256');
}

/** SHA-256 (hex) of bytes in memory; a string is hashed as UTF-8. */
export function sha256Hex(data: string | Buffer): string {
  return newSha256().update(data).digest('hex');
}
