/**
 * The seed's ledger for remote-copy tests: slot n of the data volume holds deposit n, slot n of
 * the WAL volume withdrawal n, each written only after the one before it was acknowledged. Reading
 * the slots back tells which writes a copy holds.
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

const KIND = { deposit: 0x44, withdrawal: 0x57 } as const;

/** The bytes of slot n: its number, its kind, and a fill that differs by slot. */
export function ledgerSlot(n: number, kind: keyof typeof KIND, slotBytes: number): Buffer {
  const b = Buffer.alloc(slotBytes, (n * 7 + KIND[kind]) & 0xff);
  b.writeUInt32LE(n, 0);
  b.writeUInt8(KIND[kind], 4);
  return b;
}

/** How many slots hold their entry, and whether those are exactly slots 1…count. */
export function readLedger(
  volume: Buffer,
  kind: keyof typeof KIND,
  slotBytes: number,
): { count: number; contiguous: boolean; present: number[] } {
  const present: number[] = [];
  for (let i = 0; i * slotBytes < volume.length; i++) {
    const at = i * slotBytes;
    if (volume.readUInt32LE(at) === i + 1 && volume.readUInt8(at + 4) === KIND[kind]) present.push(i + 1);
  }
  return { count: present.length, contiguous: present.every((n, i) => n === i + 1), present };
}

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
