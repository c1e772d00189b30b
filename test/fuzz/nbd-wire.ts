/**
 * A client that speaks NBD's bytes itself, for the fuzzer of the NBD server: it can send any
 * header, cut a message short or pipeline requests, and it reads the server's replies by cookie.
 */
import * as net from 'node:net';

export const NBD_MAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const OPT = { ExportName: 1, Abort: 2, List: 3, Info: 6, Go: 7 } as const;
export const REP_ACK = 1;
/** Option reply types with the high bit set are errors: the last reply to that option. */
export const REP_ERROR_BIT = 2 ** 31;
export const CMD = { Read: 0, Write: 1, Disc: 2, Flush: 3, Trim: 4, Cache: 5, WriteZeroes: 6, BlockStatus: 7 } as const;
export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;

/** One request of the transmission phase, with every field free (the fuzzer's unit). */
export interface WireRequest {
  flags: number;
  type: number;
  cookie: bigint;
  offset: bigint;
  length: number;
}

/** The 28-byte request header; `magic` overrides the request magic (to break it on purpose). */
export function requestHeader(r: WireRequest, magic = REQUEST_MAGIC): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(magic >>> 0, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.cookie, 8);
  b.writeBigUInt64BE(r.offset, 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

/** The option header and data a client sends during the handshake. */
export function option(opt: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

/** NBD_OPT_INFO / NBD_OPT_GO data: the name and these information requests. */
export function infoData(name: string, requests: number[] = []): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(6 + n.length + 2 * requests.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(requests.length, 4 + n.length);
  requests.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
  return b;
}

export class WireClient {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private wake: (() => void) | null = null;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      this.notify();
    });
    sock.on('close', () => {
      this.ended = true;
      this.notify();
    });
    sock.on('error', () => undefined);
  }

  static connect(port: number): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.setNoDelay(true);
      sock.once('connect', () => resolve(new WireClient(sock)));
      sock.once('error', reject);
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async waitFor(ready: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!ready()) {
      if (Date.now() > end) throw new Error(`${what} within ${ms} ms`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 20);
      });
    }
  }

  write(b: Buffer): void {
    if (!this.sock.destroyed) this.sock.write(b);
  }

  /** The next `n` bytes; rejects when the server closes first or nothing comes in time. */
  async read(n: number, ms = 10_000): Promise<Buffer> {
    await this.waitFor(
      () => {
        if (this.buffered < n && this.ended)
          throw new Error(`the server closed the connection before sending ${n} bytes (${this.buffered} came)`);
        return this.buffered >= n;
      },
      ms,
      `no ${n} bytes from the server`,
    );
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.buffered = all.length - n;
    return all.subarray(0, n);
  }

  /** Resolves once the server has closed the connection; the bytes it sent in between are returned. */
  async closedByServer(ms = 10_000): Promise<Buffer> {
    await this.waitFor(() => this.ended, ms, 'the server kept the connection open');
    return Buffer.concat(this.chunks);
  }

  /** Every option reply up to the final one (an ACK or an error): type and data of each. */
  async optionReplies(opt: number): Promise<{ type: number; data: Buffer }[]> {
    const out: { type: number; data: Buffer }[] = [];
    for (;;) {
      const h = await this.read(20);
      if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new Error(`option reply magic ${h.toString('hex')}`);
      if (h.readUInt32BE(8) !== opt) throw new Error(`a reply to option ${h.readUInt32BE(8)} came for option ${opt}`);
      const type = h.readUInt32BE(12);
      out.push({ type, data: await this.read(h.readUInt32BE(16)) });
      if (type === REP_ACK || type >= REP_ERROR_BIT) return out;
    }
  }

  destroy(): void {
    this.sock.destroy();
  }
}
