/**
 * Where a passthrough write is when its reply leaves, over a raw NBD connection (docs/adr/056): a
 * write without FUA is in the volume file (the page cache) and made no fdatasync, whatever its size;
 * FLUSH and a FUA write are answered only once an fdatasync begun after them has returned; while a
 * FUA write waits for its fdatasync, a write of other blocks is answered beside it and a write of
 * its blocks not before that fdatasync has returned, the later write's bytes the ones the file keeps.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';
import { nbdConnect, nbdFixture } from '../support/nbd';

const SIZE = 4 * 1024 * 1024;
const KiB = 1024;
const EXPORT = 'array-01/durable';
const CMD = { Write: 1, Flush: 3 } as const;
const FUA = 1;

const fixture = nbdFixture('kura-durable');

/** The fdatasyncs of main storage: how many began, and a gate that holds each until opened. */
interface Syncs {
  begun: number;
  /** While set, each fdatasync waits for `open()` before it runs. */
  held: boolean;
  open(): void;
}

/** A volume over a fresh file of SIZE bytes (a pattern), a server for it, and its fdatasyncs counted. */
async function serve(label: string): Promise<{ port: number; file: string; model: Buffer; syncs: Syncs }> {
  const model = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) model[i] = (i * 13 + 5) & 0xff;
  const { port, file, volume } = await fixture.serve({ label, exportName: EXPORT, content: model });
  const fh = (volume as unknown as { main: { fh: { datasync: () => Promise<void> } } }).main.fh;
  const datasync = fh.datasync.bind(fh);
  let waiting: (() => void)[] = [];
  const syncs: Syncs = {
    begun: 0,
    held: false,
    open() {
      this.held = false;
      for (const go of waiting.splice(0)) go();
    },
  };
  fh.datasync = async () => {
    syncs.begun++;
    if (syncs.held) await new Promise<void>((r) => waiting.push(r));
    await datasync();
  };
  // Closed before the server and the volume (the fixture closes the last added first): a held
  // fdatasync is let go so the volume's close does not wait on it.
  fixture.onClose(async () => {
    syncs.open();
    waiting = [];
  });
  return { port, file, model, syncs };
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

function header(type: number, flags: number, cookie: number, offset: number, length: number): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(cookie), 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(length, 24);
  return h;
}

/** A raw client past NBD_OPT_EXPORT_NAME that records each simple reply's error by cookie, in arrival order. */
class Client {
  private buffer: Buffer = Buffer.alloc(0);
  private handshaken = false;
  readonly replies = new Map<number, number>();
  readonly order: number[] = [];

  private constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, c]);
      while (this.handshaken && this.buffer.length >= 16) {
        expect(this.buffer.readUInt32BE(0)).toBe(0x67446698);
        const cookie = Number(this.buffer.readBigUInt64BE(8));
        this.replies.set(cookie, this.buffer.readUInt32BE(4));
        this.order.push(cookie);
        this.buffer = this.buffer.subarray(16);
      }
    });
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

  write(cookie: number, offset: number, data: Buffer, flags = 0): void {
    this.sock.write(Buffer.concat([header(CMD.Write, flags, cookie, offset, data.length), data]));
  }

  flush(cookie: number): void {
    this.sock.write(header(CMD.Flush, 0, cookie, 0, 0));
  }

  async reply(cookie: number): Promise<number> {
    await until(() => this.replies.has(cookie));
    return this.replies.get(cookie)!;
  }
}

async function until(done: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > end) throw new Error('no answer from the server within 10 s');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Lets the server run for a while: long enough for a reply that is not held to have come. */
const settle = () => new Promise((r) => setTimeout(r, 100));

describe('where a passthrough write is when it is acknowledged', () => {
  it('answers writes without FUA of 4 KiB, 256 KiB and 1 MiB with their bytes in the file and no fdatasync', async () => {
    const { port, file, model, syncs } = await serve('plain');
    const c = await Client.connect(port);
    const writes = [
      { offset: 8 * KiB, data: pattern(4 * KiB, 1) },
      { offset: 64 * KiB, data: pattern(256 * KiB, 2) },
      { offset: 1024 * KiB, data: pattern(1024 * KiB, 3) },
      // Unaligned, overlapping the first and the second.
      { offset: 10 * KiB + 7, data: pattern(60 * KiB, 4) },
    ];
    writes.forEach((w, i) => c.write(i + 1, w.offset, w.data));
    for (let i = 0; i < writes.length; i++) expect(await c.reply(i + 1)).toBe(0);
    for (const w of writes) w.data.copy(model, w.offset);
    // Acknowledged, so a reader of the file (the page cache) sees them; durable only on FLUSH.
    expect(readFileSync(file).equals(model)).toBe(true);
    expect(syncs.begun).toBe(0);
  });

  it('answers FLUSH only once an fdatasync begun after it has returned', async () => {
    const { port, file, model, syncs } = await serve('flush');
    const c = await Client.connect(port);
    const data = pattern(256 * KiB, 5);
    c.write(1, 0, data);
    expect(await c.reply(1)).toBe(0);
    data.copy(model, 0);
    syncs.held = true;
    c.flush(2);
    await until(() => syncs.begun === 1);
    await settle();
    expect(c.replies.has(2)).toBe(false);
    syncs.open();
    expect(await c.reply(2)).toBe(0);
    expect(syncs.begun).toBe(1);
    expect(readFileSync(file).equals(model)).toBe(true);
  });

  it('answers a FUA write after its fdatasync, a write of other blocks beside it, and a write of its blocks after it', async () => {
    const { port, file, model, syncs } = await serve('fua');
    const c = await Client.connect(port);
    syncs.held = true;
    const fua = pattern(64 * KiB, 6);
    c.write(1, 128 * KiB, fua, FUA);
    await until(() => syncs.begun === 1);
    // Blocks the FUA write does not touch: answered while it waits for its fdatasync.
    const beside = pattern(4 * KiB, 7);
    c.write(2, 512 * KiB, beside);
    expect(await c.reply(2)).toBe(0);
    // A block it does touch: ordered after it, so not answered before it.
    const over = pattern(8 * KiB, 8);
    c.write(3, 128 * KiB + 60 * KiB, over);
    await settle();
    expect(c.replies.has(1)).toBe(false);
    expect(c.replies.has(3)).toBe(false);
    syncs.open();
    expect(await c.reply(1)).toBe(0);
    expect(await c.reply(3)).toBe(0);
    // The write beside it answered first; the later bytes of the shared block are the ones kept (below).
    expect(c.order[0]).toBe(2);
    expect([...c.order].sort()).toEqual([1, 2, 3]);
    expect(syncs.begun).toBe(1);
    fua.copy(model, 128 * KiB);
    beside.copy(model, 512 * KiB);
    over.copy(model, 128 * KiB + 60 * KiB);
    expect(readFileSync(file).equals(model)).toBe(true);
  });
});
