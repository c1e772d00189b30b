/**
 * The transmission phase with many requests in flight, over a raw socket: a burst of requests in
 * one segment is served with writes of one block in the order they were sent and writes of other
 * blocks beside them, in passthrough (a small write of blocks a large one still holds waiting for
 * it) and during an online backup; a request split into pieces anywhere lands whole; and a second
 * connection to the export (multi-conn) sees what the first wrote.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { DatapathClient } from '../../src/datapath/client';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { makeLab, type TestLab } from '../support/harness';
import { freePort, nbdConnect } from '../support/nbd';

const run = promisify(execFile);
const SIZE = 2 * 1024 * 1024;
const B = 4096;
const CMD = { Read: 0, Write: 1, Disc: 2, Flush: 3 } as const;

let lab: TestLab;
let dp: DatapathService;
let name: string;
let volumeFile: string;
const open: Conn[] = [];

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({ vms: 1, dataVolumeSize: SIZE, edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort }) });
  dp = await startDatapath(lab.loaded, lab.paths);
  name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
  volumeFile = lab.dataVolume('vm-001');
});

afterEach(() => {
  for (const c of open.splice(0)) c.sock.destroy();
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

interface Request {
  type: number;
  offset: number;
  length: number;
  /** A write's data. */
  data?: Buffer;
}

/** One simple reply: its error and, for a read, the data. */
interface Reply {
  error: number;
  data: Buffer;
}

/** A client of the transmission phase that writes requests as raw bytes and matches replies by cookie. */
class Conn {
  private buffer: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  /** Cookie → the read length its reply carries. */
  private readonly expected = new Map<string, number>();
  private readonly replies = new Map<string, Reply>();
  private next = 0;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, c]);
      this.parse();
      this.wake?.();
    });
  }

  /** Connects and selects the export with NBD_OPT_EXPORT_NAME; resolves with the transmission flags. */
  static async connect(port: number, exportName: string): Promise<{ conn: Conn; flags: number }> {
    const { sock, flags, rest } = await nbdConnect(port, exportName);
    const c = new Conn(sock);
    open.push(c);
    c.buffer = rest;
    c.handshaken = true;
    return { conn: c, flags };
  }

  private handshaken = false;

  /** The bytes of these requests, one after the other; their cookies, in order. */
  encode(reqs: Request[]): { bytes: Buffer; cookies: string[] } {
    const cookies: string[] = [];
    const parts = reqs.flatMap((r) => {
      const cookie = `c${String(this.next++).padStart(7, '0')}`;
      cookies.push(cookie);
      const h = Buffer.alloc(28);
      h.writeUInt32BE(0x25609513, 0);
      h.writeUInt16BE(r.type, 6);
      h.write(cookie, 8, 'latin1');
      h.writeBigUInt64BE(BigInt(r.offset), 16);
      h.writeUInt32BE(r.length, 24);
      this.expected.set(cookie, r.type === CMD.Read ? r.length : 0);
      return r.data ? [h, r.data] : [h];
    });
    return { bytes: Buffer.concat(parts), cookies };
  }

  /** Sends the requests in one write (one segment on the loopback) and waits for every reply. */
  async burst(reqs: Request[]): Promise<Reply[]> {
    const { bytes, cookies } = this.encode(reqs);
    this.sock.write(bytes);
    return this.repliesTo(cookies);
  }

  async repliesTo(cookies: string[]): Promise<Reply[]> {
    await this.until(() => cookies.every((c) => this.replies.has(c)));
    return cookies.map((c) => this.replies.get(c)!);
  }

  private parse(): void {
    while (this.handshaken && this.buffer.length >= 16) {
      expect(this.buffer.readUInt32BE(0)).toBe(0x67446698);
      const cookie = this.buffer.subarray(8, 16).toString('latin1');
      const error = this.buffer.readUInt32BE(4);
      const length = error === 0 ? this.expected.get(cookie) : 0;
      expect(length, `a reply to cookie ${cookie}, which was never sent or was answered before`).toBeDefined();
      if (this.buffer.length < 16 + length!) return;
      this.replies.set(cookie, { error, data: Buffer.from(this.buffer.subarray(16, 16 + length!)) });
      this.expected.delete(cookie);
      this.buffer = this.buffer.subarray(16 + length!);
    }
  }

  private async until(done: () => boolean): Promise<void> {
    const end = Date.now() + 10_000;
    while (!done()) {
      if (Date.now() > end) throw new Error('no reply from the server within 10 s');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
  }
}

/** A burst of writes over blocks 8..12: three of block 8 overlapping each other, and others beside them. */
function overlappingBurst(): { reqs: Request[]; model: Buffer; base: number } {
  const base = 8 * B;
  const model = Buffer.from(readFileSync(volumeFile).subarray(base, base + 5 * B));
  const reqs: Request[] = [];
  const write = (at: number, length: number, fill: number) => {
    const data = Buffer.alloc(length, fill);
    reqs.push({ type: CMD.Write, offset: base + at, length, data });
    data.copy(model, at);
  };
  write(0, B, 0x11); // block 8
  write(3 * B, B, 0x33); // block 11, beside it
  write(1024, 1024, 0x22); // block 8 again, inside the first
  write(2048, B, 0x44); // blocks 8 and 9, over both
  write(4 * B + 100, 10, 0x55); // block 12, a few bytes
  write(1536, 8, 0x66); // block 8, inside all three
  return { reqs, model, base };
}

describe('a burst of requests in flight at once', () => {
  it('applies writes of one block in the order sent and the others beside them, in passthrough', async () => {
    const { conn } = await Conn.connect(dp.nbdPort, name);
    const { reqs, model, base } = overlappingBurst();
    const replies = await conn.burst([...reqs, { type: CMD.Flush, offset: 0, length: 0 }]);
    expect(replies.map((r) => r.error)).toEqual(reqs.map(() => 0).concat(0));
    const [read] = await conn.burst([{ type: CMD.Read, offset: base, length: 5 * B }]);
    expect(read!.error).toBe(0);
    expect(read!.data.equals(model)).toBe(true);
    expect(
      readFileSync(volumeFile)
        .subarray(base, base + 5 * B)
        .equals(model),
    ).toBe(true);
  });

  it('applies them the same way during an online backup: the host reads them back, and main storage holds them after the switch back', async () => {
    const client = new DatapathClient(dp.controlUrl, dp.token);
    const image = path.join(lab.paths.home, 'online', 'burst.img');
    await client.enterBackup(name, 'burst', image);
    const frozen = readFileSync(volumeFile);
    const { conn } = await Conn.connect(dp.nbdPort, name);
    const { reqs, model, base } = overlappingBurst();
    // The read goes in the same burst: it waits for nothing, so it sees an unspecified mix (NBD's
    // rule for overlapping requests in flight); only that it is answered, once, is checked here.
    const replies = await conn.burst([...reqs, { type: CMD.Read, offset: base, length: 5 * B }]);
    expect(replies.map((r) => r.error)).toEqual(reqs.map(() => 0).concat(0));
    const [read] = await conn.burst([{ type: CMD.Read, offset: base, length: 5 * B }]);
    expect(read!.data.equals(model)).toBe(true);
    expect(readFileSync(volumeFile).equals(frozen)).toBe(true);
    expect((await client.status(name)).journalEntries).toBe(reqs.length);
    await client.abort(name, 'burst');
    expect(
      readFileSync(volumeFile)
        .subarray(base, base + 5 * B)
        .equals(model),
    ).toBe(true);
  });

  it('in passthrough, keeps a small write of blocks a large write in flight still holds after it, and one beside it whole', async () => {
    const { conn } = await Conn.connect(dp.nbdPort, name);
    const base = 400 * B;
    // 256 KiB: larger than what is written on the spot, so it is still in flight when the next ones arrive.
    const big = Buffer.alloc(64 * B, 0x71);
    const inside = Buffer.alloc(100, 0x72);
    const beside = Buffer.alloc(B, 0x73);
    const model = Buffer.from(big);
    inside.copy(model, 5 * B + 7);
    const replies = await conn.burst([
      { type: CMD.Write, offset: base, length: big.length, data: big },
      { type: CMD.Write, offset: base + 5 * B + 7, length: inside.length, data: inside },
      { type: CMD.Write, offset: base + 64 * B, length: beside.length, data: beside },
    ]);
    expect(replies.map((r) => r.error)).toEqual([0, 0, 0]);
    const [read] = await conn.burst([{ type: CMD.Read, offset: base, length: 65 * B }]);
    expect(read!.data.equals(Buffer.concat([model, beside]))).toBe(true);
    expect(
      readFileSync(volumeFile)
        .subarray(base, base + 65 * B)
        .equals(Buffer.concat([model, beside])),
    ).toBe(true);
  });

  it('lands a write whose header and data arrive in small pieces, split anywhere, whole', async () => {
    const { conn } = await Conn.connect(dp.nbdPort, name);
    const offset = 300 * B + 17;
    const data = Buffer.alloc(200_003);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    const { bytes, cookies } = conn.encode([{ type: CMD.Write, offset, length: data.length, data }]);
    for (let at = 0, n = 1; at < bytes.length; at += n, n = (n * 5 + 3) % 9001) {
      conn.sock.write(bytes.subarray(at, at + n));
      await new Promise((r) => setImmediate(r));
    }
    const [written] = await conn.repliesTo(cookies);
    expect(written!.error).toBe(0);
    const [read] = await conn.burst([{ type: CMD.Read, offset, length: data.length }]);
    expect(read!.data.equals(data)).toBe(true);
    expect(
      readFileSync(volumeFile)
        .subarray(offset, offset + data.length)
        .equals(data),
    ).toBe(true);
  });
});

describe('several connections to one export (multi-conn)', () => {
  it('is announced, and a write acknowledged on one connection is read back on another', async () => {
    const { stdout } = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${dp.nbdPort}/${name}`]);
    const info = JSON.parse(stdout) as { exports: { can_multi_conn: boolean }[] };
    expect(info.exports[0]!.can_multi_conn).toBe(true);
    const a = await Conn.connect(dp.nbdPort, name);
    const b = await Conn.connect(dp.nbdPort, name);
    expect(a.flags & (1 << 8)).toBe(1 << 8);
    const data = Buffer.alloc(2 * B, 0x5c);
    const [w] = await a.conn.burst([{ type: CMD.Write, offset: 100 * B, length: data.length, data }]);
    expect(w!.error).toBe(0);
    const [f] = await b.conn.burst([{ type: CMD.Flush, offset: 0, length: 0 }]);
    expect(f!.error).toBe(0);
    const [r] = await b.conn.burst([{ type: CMD.Read, offset: 100 * B, length: data.length }]);
    expect(r!.data.equals(data)).toBe(true);
  });
});
