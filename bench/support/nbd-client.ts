/**
 * A minimal NBD client for benchmarks: fixed newstyle handshake with NBD_OPT_GO, then one request
 * at a time with simple replies, timing each request from send to reply. The same client drives
 * every server the benchmark compares, so the differences are the servers'.
 */
import * as net from 'node:net';
import {
  Cmd,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  Opt,
  REQUEST_MAGIC,
  Rep,
} from '../../src/datapath/protocol';

export class BenchNbdClient {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private wake: (() => void) | null = null;
  size = 0;

  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      const w = this.wake;
      this.wake = null;
      w?.();
    });
  }

  static async connect(port: number, exportName: string): Promise<BenchNbdClient> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    const c = new BenchNbdClient(sock);
    await c.handshake(exportName);
    return c;
  }

  private async read(n: number): Promise<Buffer> {
    while (this.buffered < n) await new Promise<void>((r) => (this.wake = r));
    const all = Buffer.concat(this.chunks);
    this.chunks = [all.subarray(n)];
    this.buffered -= n;
    return all.subarray(0, n);
  }

  private async handshake(exportName: string): Promise<void> {
    const hello = await this.read(18);
    if (hello.subarray(0, 16).toString('latin1') !== 'NBDMAGICIHAVEOPT') throw new Error('not a newstyle NBD server');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 0);
    const name = Buffer.from(exportName, 'utf8');
    const data = Buffer.alloc(4 + name.length + 2);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    const opt = Buffer.alloc(16);
    opt.writeBigUInt64BE(IHAVEOPT, 0);
    opt.writeUInt32BE(Opt.Go, 8);
    opt.writeUInt32BE(data.length, 12);
    this.sock.write(Buffer.concat([flags, opt, data]));
    for (;;) {
      const h = await this.read(20);
      const type = h.readUInt32BE(12);
      const body = await this.read(h.readUInt32BE(16));
      if (type === Rep.Ack) return;
      if (type >= 2 ** 31) throw new Error(`NBD_OPT_GO refused: ${type} ${body.toString()}`);
      if (type === Rep.Info && body.readUInt16BE(0) === Info.Export) this.size = Number(body.readBigUInt64BE(2));
    }
  }

  /** Requests sent and not answered yet, by handle: the replies may come back in any order. */
  private readonly waiting = new Map<
    bigint,
    { type: number; length: number; resolve: (b: Buffer | null) => void; reject: (e: Error) => void }
  >();
  private nextHandle = 1n;
  private replies: Promise<void> | null = null;

  /** Reads replies for as long as requests are waiting, handing each to the request it answers. */
  private async pump(): Promise<void> {
    while (this.waiting.size > 0) {
      const r = await this.read(16);
      const handle = r.readBigUInt64BE(8);
      const w = this.waiting.get(handle);
      if (!w) throw new Error(`reply for unknown handle ${handle}`);
      this.waiting.delete(handle);
      const err = r.readUInt32BE(4);
      if (err !== 0) w.reject(new Error(`NBD request ${w.type} failed with error ${err}`));
      else w.resolve(w.type === Cmd.Read ? await this.read(w.length) : null);
    }
    this.replies = null;
  }

  private request(type: number, offset: number, length: number, payload?: Buffer): Promise<Buffer | null> {
    const handle = this.nextHandle++;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.sock.write(payload ? Buffer.concat([h, payload]) : h);
    const done = new Promise<Buffer | null>((resolve, reject) =>
      this.waiting.set(handle, { type, length, resolve, reject }),
    );
    this.replies ??= this.pump();
    return done;
  }

  read4k(offset: number, length: number): Promise<Buffer | null> {
    return this.request(Cmd.Read, offset, length);
  }

  write(offset: number, data: Buffer): Promise<Buffer | null> {
    return this.request(Cmd.Write, offset, data.length, data);
  }

  flush(): Promise<Buffer | null> {
    return this.request(Cmd.Flush, 0, 0);
  }

  async close(): Promise<void> {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(Cmd.Disc, 6);
    this.sock.end(h);
    await new Promise((r) => this.sock.once('close', r));
  }
}
