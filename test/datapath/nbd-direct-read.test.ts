/**
 * The transmission phase's direct reading of a plain TCP connection (docs/adr/050): a write's
 * payload read from the socket straight into the buffer it is written from, everything else through
 * one reused scratch buffer. Each case sends raw bytes cut a given way — a payload in many pieces,
 * several requests in one piece, payloads and headers straddling pieces, a client gone mid-payload —
 * and checks the bytes the volume file holds; and a payload buffer the volume keeps (a remote
 * copy's hook) is never reused for a later write; during a backup, payloads read straight in land
 * in the journal, the snapshot and, after the abort, main storage.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import type { Volume } from '../../src/datapath/volume';
import { nbdConnect, nbdFixture } from '../support/nbd';

const SIZE = 4 * 1024 * 1024;
const KiB = 1024;
const EXPORT = 'array-01/direct';
const CMD = { Read: 0, Write: 1, Disc: 2, Flush: 3 } as const;

const fixture = nbdFixture('kura-direct');

/** A volume over a fresh file of SIZE bytes (a pattern, so unwritten bytes are recognisable) and a server for it. */
async function serve(
  label: string,
  onWrite?: (offset: number, length: number, data: Buffer | null) => void,
): Promise<{ port: number; file: string; before: Buffer; log: string[]; volume: Volume }> {
  const before = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) before[i] = (i * 13 + 5) & 0xff;
  const log: string[] = [];
  const { port, file, volume } = await fixture.serve({
    label,
    exportName: EXPORT,
    content: before,
    log: (l) => log.push(l),
    ...(onWrite ? { onWrite } : {}),
  });
  return { port, file, before, log, volume };
}

/** Bytes whose every position differs from its neighbours', so a misplaced piece shows. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

function header(type: number, cookie: number, offset: number, length: number): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(cookie), 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(length, 24);
  return h;
}

function write(cookie: number, offset: number, data: Buffer): Buffer {
  return Buffer.concat([header(CMD.Write, cookie, offset, data.length), data]);
}

/** A raw client past NBD_OPT_EXPORT_NAME, collecting simple replies (cookie → error; reads by their expected length). */
class Client {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly reads = new Map<bigint, number>();
  readonly replies = new Map<bigint, { error: number; data: Buffer }>();
  closed = false;
  private handshaken = false;

  private constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, c]);
      this.parse();
    });
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => undefined);
  }

  static async connect(port: number): Promise<Client> {
    const { sock, rest } = await nbdConnect(port, EXPORT);
    fixture.keep(sock);
    const c = new Client(sock);
    c.handshaken = true;
    c.buffer = rest;
    return c;
  }

  /** Sends the pieces one at a time, each after the previous one has left and a pause, so each arrives on its own. */
  async send(pieces: Buffer[], pauseMs = 2): Promise<void> {
    for (const p of pieces) {
      await new Promise<void>((r) => this.sock.write(p, () => r()));
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  }

  async read(cookie: number, offset: number, length: number): Promise<Buffer> {
    this.reads.set(BigInt(cookie), length);
    this.sock.write(header(CMD.Read, cookie, offset, length));
    const r = await this.reply(cookie);
    expect(r.error).toBe(0);
    return r.data;
  }

  async reply(cookie: number): Promise<{ error: number; data: Buffer }> {
    await until(() => this.replies.has(BigInt(cookie)));
    return this.replies.get(BigInt(cookie))!;
  }

  private parse(): void {
    while (this.handshaken && this.buffer.length >= 16) {
      expect(this.buffer.readUInt32BE(0)).toBe(0x67446698);
      const error = this.buffer.readUInt32BE(4);
      const cookie = this.buffer.readBigUInt64BE(8);
      const length = error === 0 ? (this.reads.get(cookie) ?? 0) : 0;
      if (this.buffer.length < 16 + length) return;
      this.replies.set(cookie, { error, data: Buffer.from(this.buffer.subarray(16, 16 + length)) });
      this.reads.delete(cookie);
      this.buffer = this.buffer.subarray(16 + length);
    }
  }
}

async function until(done: () => boolean, what = 'the server'): Promise<void> {
  const end = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > end) throw new Error(`no answer from ${what} within 10 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Cuts `bytes` at the given offsets. */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const edges = [0, ...at, bytes.length];
  return edges.slice(1).map((end, i) => bytes.subarray(edges[i]!, end));
}

describe('reading a plain connection straight into the payload', () => {
  it('lands a 256 KiB payload that arrives in 40 pieces of uneven sizes whole', async () => {
    const { port, file, before } = await serve('many-pieces');
    const c = await Client.connect(port);
    const offset = 64 * KiB + 512;
    const data = pattern(256 * KiB, 1);
    const bytes = write(1, offset, data);
    const at: number[] = [];
    for (let i = 1, pos = 0; i < 40; i++) at.push((pos += 1 + ((i * 6151) % 13_000)));
    await c.send(
      cut(
        bytes,
        at.filter((x) => x < bytes.length),
      ),
    );
    expect((await c.reply(1)).error).toBe(0);
    const after = readFileSync(file);
    expect(after.subarray(offset, offset + data.length).equals(data)).toBe(true);
    expect(after.subarray(0, offset).equals(before.subarray(0, offset))).toBe(true);
    expect(after.subarray(offset + data.length).equals(before.subarray(offset + data.length))).toBe(true);
    expect((await c.read(2, offset, data.length)).equals(data)).toBe(true);
  });

  it('serves several whole requests that arrive in one piece, in order, overlapping ones included', async () => {
    const { port, file, before } = await serve('one-piece');
    const c = await Client.connect(port);
    const model = Buffer.from(before);
    const reqs: Buffer[] = [];
    const w = (cookie: number, offset: number, data: Buffer) => {
      reqs.push(write(cookie, offset, data));
      data.copy(model, offset);
    };
    w(1, 0, pattern(4 * KiB, 2));
    w(2, 8 * KiB + 3, pattern(100, 3));
    w(3, 2 * KiB, pattern(4 * KiB, 4)); // over the end of the first
    w(4, 1 * KiB, pattern(10, 5)); // inside the first, after it
    w(5, 64 * KiB, pattern(32 * KiB, 6));
    reqs.push(header(CMD.Flush, 6, 0, 0));
    await c.send([Buffer.concat(reqs)]);
    for (let cookie = 1; cookie <= 6; cookie++) expect((await c.reply(cookie)).error).toBe(0);
    expect(readFileSync(file).equals(model)).toBe(true);
  });

  it('lands payloads and headers that straddle the pieces they arrive in', async () => {
    const { port, file, before } = await serve('straddle');
    const c = await Client.connect(port);
    const model = Buffer.from(before);
    const datas = [pattern(256 * KiB, 7), pattern(4 * KiB + 1, 8), pattern(256 * KiB, 9), pattern(300, 10)];
    const offsets = [0, 300 * KiB + 1, 512 * KiB, 128 * KiB - 100];
    const bytes = Buffer.concat(
      datas.map((d, i) => {
        d.copy(model, offsets[i]!);
        return write(i + 1, offsets[i]!, d);
      }),
    );
    const start = (i: number) => datas.slice(0, i).reduce((n, d) => n + 28 + d.length, 0);
    await c.send(
      cut(bytes, [
        100_000, // inside the first payload
        start(1) + 10, // inside the second header
        start(1) + 28 + 2000, // inside the second payload
        start(2) + 28 + 5, // just past the third header: nearly all its payload read straight in
        start(3) - 3, // the third payload's last bytes with the fourth request whole
      ]),
    );
    for (let cookie = 1; cookie <= 4; cookie++) expect((await c.reply(cookie)).error).toBe(0);
    expect(readFileSync(file).equals(model)).toBe(true);
  });

  it('writes nothing of a payload its client leaves in the middle of, and serves the next connection', async () => {
    const { port, file, before, log } = await serve('gone');
    const c = await Client.connect(port);
    const model = Buffer.from(before);
    const first = pattern(64 * KiB, 11);
    first.copy(model, 0);
    const cutShort = pattern(256 * KiB, 12);
    const bytes = Buffer.concat([write(1, 0, first), write(2, 1024 * KiB, cutShort)]);
    await c.send([bytes.subarray(0, 28 + first.length + 28 + 100 * KiB)]);
    expect((await c.reply(1)).error).toBe(0);
    c.sock.destroy();
    await until(() => c.closed, 'the client socket');
    // The server has seen the close once a new connection is served after it (one event loop).
    const next = await Client.connect(port);
    const again = pattern(4 * KiB, 13);
    again.copy(model, 2048 * KiB);
    await next.send([write(3, 2048 * KiB, again)]);
    expect((await next.reply(3)).error).toBe(0);
    expect(readFileSync(file).equals(model)).toBe(true);
    expect(log.filter((l) => l.includes('connection closed on error'))).toEqual([]);
  });

  it('reuses a payload buffer only when nothing keeps it: a remote copy hook still holds every write it saw', async () => {
    const seen: { offset: number; data: Buffer }[] = [];
    const { port, file } = await serve('kept', (offset, _length, data) => seen.push({ offset, data: data! }));
    const c = await Client.connect(port);
    const datas = [0, 1, 2, 3, 4, 5].map((i) => pattern(256 * KiB, 20 + i));
    for (const [i, d] of datas.entries()) {
      await c.send([write(i + 1, i * 256 * KiB, d)], 0);
      expect((await c.reply(i + 1)).error).toBe(0);
    }
    expect(seen.map((s) => s.offset)).toEqual(datas.map((_, i) => i * 256 * KiB));
    for (const [i, s] of seen.entries())
      expect(s.data.equals(datas[i]!), `the hook's copy of write ${i + 1}`).toBe(true);
    const after = readFileSync(file);
    for (const [i, d] of datas.entries())
      expect(after.subarray(i * 256 * KiB, (i + 1) * 256 * KiB).equals(d), `write ${i + 1} in the file`).toBe(true);
  });

  it('in passthrough with nothing keeping payloads, lands a run of equal-sized writes, each in its own place', async () => {
    const { port, file } = await serve('reused');
    const c = await Client.connect(port);
    const datas = Array.from({ length: 12 }, (_, i) => pattern(256 * KiB, 40 + i));
    // Two bursts: the second one's payloads go into the buffers the first one's writes gave back.
    for (const burst of [datas.slice(0, 6), datas.slice(6)]) {
      const base = datas.indexOf(burst[0]!);
      await c.send([Buffer.concat(burst.map((d, j) => write(base + j + 1, (base + j) * 256 * KiB, d)))]);
      for (let j = 0; j < burst.length; j++) expect((await c.reply(base + j + 1)).error).toBe(0);
    }
    const after = readFileSync(file);
    for (const [i, d] of datas.entries())
      expect(after.subarray(i * 256 * KiB, (i + 1) * 256 * KiB).equals(d), `write ${i + 1} in the file`).toBe(true);
  });

  it('during a backup, serves a run of equal-sized writes done on the spot back with main storage frozen, and main storage holds them after the abort', async () => {
    const { port, file, before, volume } = await serve('backup');
    await volume.enterBackup('direct-1', path.join(fixture.dir(), 'backup-image.img'));
    const c = await Client.connect(port);
    // 128 KiB: a journal record of it is written on the spot, so the payload becomes the entry's data.
    const datas = Array.from({ length: 6 }, (_, i) => pattern(128 * KiB, 60 + i));
    for (const [i, d] of datas.entries()) {
      await c.send([write(i + 1, i * 128 * KiB, d)], 0);
      expect((await c.reply(i + 1)).error).toBe(0);
    }
    expect(readFileSync(file).equals(before), 'main storage frozen during the backup').toBe(true);
    for (const [i, d] of datas.entries())
      expect((await c.read(100 + i, i * 128 * KiB, d.length)).equals(d), `write ${i + 1} read back`).toBe(true);
    expect(volume.status().journalEntries).toBe(datas.length);
    await volume.abort('direct-1');
    const after = readFileSync(file);
    for (const [i, d] of datas.entries())
      expect(after.subarray(i * 128 * KiB, (i + 1) * 128 * KiB).equals(d), `write ${i + 1} in the file`).toBe(true);
  });
});
