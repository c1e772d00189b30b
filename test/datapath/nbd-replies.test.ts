/**
 * The replies of the transmission phase as a client receives them. Requests served on the spot have
 * their replies written straight to the socket at the end of each pass over what arrived; what the
 * kernel does not take at once (a client that stops reading fills the socket's buffers) must follow
 * through Node's stream, in order, with nothing lost, doubled or torn. Also: the client's 64-bit
 * cookie comes back whole, and an offset past 2^32 is read as such.
 */
import { describe, expect, it } from 'vitest';
import type * as net from 'node:net';
import { nbdConnect, nbdFixture } from '../support/nbd';

const SIZE = 8 * 1024 * 1024;
const IO = 4096;
const EXPORT = 'array-01/replies';
const REPLY_MAGIC = 0x67446698;
const EINVAL = 22;

const fixture = nbdFixture('kura-replies');

/** A volume over a file of SIZE bytes, each 4 KiB block filled with bytes of its own, and a server for it. */
async function serve(): Promise<{ port: number; content: Buffer }> {
  const content = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) content[i] = (i * 7 + (i >> 12) * 131) & 0xff;
  const { port } = await fixture.serve({ label: 'volume', exportName: EXPORT, content });
  return { port, content };
}

/** A READ request's 28 bytes. */
function readRequest(cookie: bigint, offset: bigint, length: number): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(0, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeBigUInt64BE(offset, 16);
  h.writeUInt32BE(length, 24);
  return h;
}

/** Reads simple replies off the socket: each reply's cookie, error and, for a read that succeeded, its data. */
class Replies {
  private buffer: Buffer = Buffer.alloc(0);
  readonly got: { cookie: bigint; error: number; data: Buffer }[] = [];

  /** `lengths`: the data length a successful reply of each cookie carries (its read's length). */
  constructor(
    private readonly sock: net.Socket,
    rest: Buffer,
    private readonly lengths: Map<bigint, number>,
  ) {
    this.buffer = rest;
    sock.on('data', (c: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, c]);
      this.parse();
    });
  }

  private parse(): void {
    while (this.buffer.length >= 16) {
      expect(this.buffer.readUInt32BE(0)).toBe(REPLY_MAGIC);
      const error = this.buffer.readUInt32BE(4);
      const cookie = this.buffer.readBigUInt64BE(8);
      const length = error === 0 ? (this.lengths.get(cookie) ?? 0) : 0;
      if (this.buffer.length < 16 + length) return;
      this.got.push({ cookie, error, data: Buffer.from(this.buffer.subarray(16, 16 + length)) });
      this.buffer = this.buffer.subarray(16 + length);
    }
  }

  async until(count: number): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (this.got.length < count) {
      if (Date.now() > deadline || this.sock.destroyed)
        throw new Error(`${this.got.length} of ${count} replies, ${this.buffer.length} bytes left over`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

describe('the transmission phase: replies', () => {
  it('sends every reply whole and in order to a client that stops reading until the socket is full', async () => {
    const { port, content } = await serve();
    const { sock, rest } = await nbdConnect(port, EXPORT);
    fixture.keep(sock);
    // 8,000 reads of 4 KiB: 33 MB of replies, several times what the loopback socket's buffers hold,
    // so the server's writes meet a full socket and must queue the rest.
    const count = 8000;
    const blocks = SIZE / IO;
    const lengths = new Map<bigint, number>();
    const requests: Buffer[] = [];
    const expected: { cookie: bigint; offset: number }[] = [];
    for (let i = 0; i < count; i++) {
      // Both halves of the cookie differ between requests; the high half has its top bit set.
      const cookie = (BigInt(0x8000_0000 + i * 3) << 32n) | BigInt(0x1234_0000 + i);
      const offset = ((i * 7919) % blocks) * IO;
      lengths.set(cookie, IO);
      expected.push({ cookie, offset });
      requests.push(readRequest(cookie, BigInt(offset), IO));
    }
    sock.pause();
    sock.write(Buffer.concat(requests));
    // Long enough for the server to have read the requests and filled the socket's buffers.
    await new Promise((r) => setTimeout(r, 500));
    const replies = new Replies(sock, rest, lengths);
    sock.resume();
    await replies.until(count);
    await new Promise((r) => setTimeout(r, 50));
    expect(replies.got).toHaveLength(count);
    for (let i = 0; i < count; i++) {
      const r = replies.got[i]!;
      const e = expected[i]!;
      expect(r.cookie).toBe(e.cookie);
      expect(r.error).toBe(0);
      expect(r.data.equals(content.subarray(e.offset, e.offset + IO))).toBe(true);
    }
  });

  it('reads an offset past 2^32 as such: refused past the volume, not wrapped to its start', async () => {
    const { port, content } = await serve();
    const { sock, rest } = await nbdConnect(port, EXPORT);
    fixture.keep(sock);
    const lengths = new Map([
      [1n, IO],
      [2n, IO],
    ]);
    const replies = new Replies(sock, rest, lengths);
    sock.write(Buffer.concat([readRequest(1n, 2n ** 32n, IO), readRequest(2n, BigInt(IO), IO)]));
    await replies.until(2);
    // Replies may come in any order (the refused read is answered after the one served on the spot).
    const byCookie = new Map(replies.got.map((r) => [r.cookie, r]));
    expect(byCookie.get(1n)?.error).toBe(EINVAL);
    expect(byCookie.get(2n)?.error).toBe(0);
    expect(byCookie.get(2n)!.data.equals(content.subarray(IO, 2 * IO))).toBe(true);
  });
});
