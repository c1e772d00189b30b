/**
 * The messages of async remote copy between the main site's shipper and the remote site's
 * receiver: length-prefixed frames on a TCP stream, so the lab WAN can delay, reorder or drop
 * each one whole. A connection opens with the receiver's hello (a fresh nonce) and the shipper's
 * proof (an HMAC of it under the shared secret); then a batch carries a JSON header (validated on
 * arrival) and the writes' bytes, and an ack carries the remote's applied seq.
 */
import { z } from 'zod';
import type { GroupWrite } from '../datapath/group-journal';
import { parseWith } from '../domain/validate';

export const FrameKind = { Batch: 1, Ack: 2, Hello: 3, Proof: 4 } as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/** Frames larger than this are refused: a batch is at most `batchEntries` writes of an NBD request each. */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;

const BatchHeaderSchema = z.object({
  group: z.string().min(1),
  writes: z
    .array(
      z.object({
        seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
        at: z.number().nonnegative(),
        volume: z.string().min(1),
        offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
        length: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
        /** A range written with zeroes: no bytes follow for it. */
        zero: z.boolean().default(false),
      }),
    )
    .min(1),
});

const AckSchema = z.object({ group: z.string().min(1), applied: z.number().int().nonnegative() });
export type Ack = z.infer<typeof AckSchema>;

/** A frame: u32 length of what follows, u8 kind, then the body. */
function frame(kind: FrameKind, body: Buffer[]): Buffer {
  const n = body.reduce((s, b) => s + b.length, 0);
  const head = Buffer.alloc(5);
  head.writeUInt32LE(n + 1, 0);
  head.writeUInt8(kind, 4);
  return Buffer.concat([head, ...body]);
}

/** A batch of journaled writes, in seq order. */
export function batchFrame(group: string, writes: readonly GroupWrite[]): Buffer {
  const header = Buffer.from(
    JSON.stringify({
      group,
      writes: writes.map((w) => ({
        seq: w.seq,
        at: w.at,
        volume: w.volume,
        offset: w.offset,
        length: w.length,
        zero: w.data === null,
      })),
    }),
  );
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length, 0);
  return frame(FrameKind.Batch, [len, header, ...writes.flatMap((w) => (w.data ? [w.data] : []))]);
}

/** The receiver's first frame on a connection: the nonce the shipper must prove the secret over. */
export function helloFrame(nonce: Buffer): Buffer {
  return frame(FrameKind.Hello, [nonce]);
}

/** The shipper's answer to the hello: the HMAC of the nonce (see `linkProof`). */
export function proofFrame(proof: Buffer): Buffer {
  return frame(FrameKind.Proof, [proof]);
}

/** The bytes a hello or a proof carries. */
export function frameBody(f: Buffer): Buffer {
  return f.subarray(5);
}

export function ackFrame(ack: Ack): Buffer {
  return frame(FrameKind.Ack, [Buffer.from(JSON.stringify(ack))]);
}

/** What a frame carries: a batch, an ack, a hello or a proof. */
export function frameKind(f: Buffer): FrameKind {
  if (f.length < 5) throw new Error('remote-copy frame of no bytes: it is corrupt');
  return f.readUInt8(4) as FrameKind;
}

export function parseBatch(f: Buffer): { group: string; writes: GroupWrite[] } {
  if (f.length < 9) throw new Error(`remote-copy batch of ${f.length} bytes has no header length: it is corrupt`);
  const headerLen = f.readUInt32LE(5);
  if (9 + headerLen > f.length)
    throw new Error(`remote-copy batch of ${f.length} bytes announces a header of ${headerLen}: it is corrupt`);
  const header = parseWith(
    BatchHeaderSchema,
    JSON.parse(f.subarray(9, 9 + headerLen).toString('utf8')) as unknown,
    'remote-copy batch',
  );
  let at = 9 + headerLen;
  const writes = header.writes.map((w) => {
    if (w.zero) return { seq: w.seq, at: w.at, volume: w.volume, offset: w.offset, length: w.length, data: null };
    if (at + w.length > f.length)
      throw new Error(`remote-copy batch of ${f.length} bytes lacks the bytes of write ${w.seq}: it is corrupt`);
    const data = Buffer.from(f.subarray(at, at + w.length));
    at += w.length;
    return { seq: w.seq, at: w.at, volume: w.volume, offset: w.offset, length: w.length, data };
  });
  if (at !== f.length)
    throw new Error(`remote-copy batch of ${f.length} bytes holds ${at} bytes of header and writes; it is corrupt`);
  return { group: header.group, writes };
}

export function parseAck(f: Buffer): Ack {
  return parseWith(AckSchema, JSON.parse(f.subarray(5).toString('utf8')) as unknown, 'remote-copy ack');
}

/** Cuts a TCP stream into frames. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (f: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 4) {
      const n = this.buf.readUInt32LE(0);
      if (n > MAX_FRAME_BYTES) throw new Error(`remote-copy frame of ${n} bytes is over ${MAX_FRAME_BYTES}`);
      if (this.buf.length < 4 + n) return;
      const f = this.buf.subarray(0, 4 + n);
      this.buf = this.buf.subarray(4 + n);
      this.onFrame(f);
    }
  }
}
