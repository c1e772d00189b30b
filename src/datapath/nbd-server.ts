/**
 * The NBD server of the datapath: fixed newstyle handshake (NBD_OPT_EXPORT_NAME, NBD_OPT_INFO,
 * NBD_OPT_GO, NBD_OPT_LIST, NBD_OPT_ABORT; everything else answered "unsupported"), then the
 * transmission phase with simple replies — READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, DISC — on the
 * exports' volumes. Requests of one connection run concurrently (replies may come out of order, as
 * the protocol allows), up to a bound, so a client with a queue depth above one is served in parallel.
 */
import * as net from 'node:net';
import {
  Cmd,
  CmdFlag,
  EXPORT_FLAGS,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  Info,
  MAX_REQUEST_BYTES,
  NbdErr,
  Opt,
  Rep,
  exportNameReply,
  greeting,
  infoBlockSize,
  infoExport,
  optionReply,
  parseRequest,
  simpleReply,
  type NbdRequest,
} from './protocol';
import { BLOCK_BYTES, type Volume } from './volume';

/** Requests of one connection handled at once; the socket is not read further until one finishes. */
const MAX_INFLIGHT = 32;
/** Bytes buffered from a client before the socket is paused (e.g. while a quiesce holds requests). */
const MAX_BUFFERED = 64 * 1024 * 1024;
/** Option payloads larger than this are not a real client's; the connection is closed. */
const MAX_OPTION_BYTES = 64 * 1024;

class ConnectionClosed extends Error {
  override name = 'ConnectionClosed';
}

/** Reads exact byte counts from a socket, with backpressure. */
class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      if (this.buffered > MAX_BUFFERED) sock.pause();
      this.notify();
    });
    sock.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async read(n: number): Promise<Buffer> {
    while (this.buffered < n) {
      if (this.closed) throw new ConnectionClosed('client went away');
      await new Promise<void>((r) => (this.wake = r));
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    if (this.buffered <= MAX_BUFFERED && this.sock.isPaused()) this.sock.resume();
    return out;
  }
}

export interface NbdServerOptions {
  /** Export name → volume. The empty name selects the only export when there is exactly one. */
  exports: Map<string, Volume>;
  log?: (line: string) => void;
}

/** Serves the volumes over NBD on one TCP port. */
export class NbdServer {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opts: NbdServerOptions) {}

  /** Listens on 127.0.0.1 (port 0: any free port); resolves with the port. */
  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    const server = net.createServer((sock) => this.accept(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    sock.on('close', () => this.sockets.delete(sock));
    this.serve(sock).catch((err: unknown) => {
      if (!(err instanceof ConnectionClosed))
        this.opts.log?.(`nbd: connection closed on error: ${err instanceof Error ? err.message : String(err)}`);
      sock.destroy();
    });
  }

  private lookup(name: string): Volume | undefined {
    if (name === '' && this.opts.exports.size === 1) return [...this.opts.exports.values()][0];
    return this.opts.exports.get(name);
  }

  private async serve(sock: net.Socket): Promise<void> {
    const rd = new SocketReader(sock);
    sock.write(greeting());
    const clientFlags = (await rd.read(4)).readUInt32BE(0);
    const noZeroes = (clientFlags & FLAG_NO_ZEROES) !== 0;
    const volume = await this.negotiate(sock, rd, noZeroes);
    if (volume) await this.transmit(sock, rd, volume);
  }

  /** The option haggling phase; returns the chosen export, or null when the client aborted. */
  private async negotiate(sock: net.Socket, rd: SocketReader, noZeroes: boolean): Promise<Volume | null> {
    for (;;) {
      const h = await rd.read(16);
      if (h.readBigUInt64BE(0) !== IHAVEOPT) throw new Error('bad option magic');
      const opt = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > MAX_OPTION_BYTES) throw new Error(`option ${opt} of ${len} bytes`);
      const data = await rd.read(len);
      switch (opt) {
        case Opt.ExportName: {
          const v = this.lookup(data.toString('utf8'));
          // EXPORT_NAME has no error reply: an unknown name ends the connection.
          if (!v) throw new ConnectionClosed('unknown export');
          sock.write(exportNameReply(v.sizeBytes, EXPORT_FLAGS, noZeroes));
          return v;
        }
        case Opt.Abort:
          sock.end(optionReply(opt, Rep.Ack));
          return null;
        case Opt.List:
          for (const name of this.opts.exports.keys()) {
            const n = Buffer.from(name, 'utf8');
            const body = Buffer.alloc(4 + n.length);
            body.writeUInt32BE(n.length, 0);
            n.copy(body, 4);
            sock.write(optionReply(opt, Rep.Server, body));
          }
          sock.write(optionReply(opt, Rep.Ack));
          break;
        case Opt.Info:
        case Opt.Go: {
          if (len < 6) {
            sock.write(optionReply(opt, Rep.ErrInvalid, Buffer.from('malformed request')));
            break;
          }
          const nameLen = data.readUInt32BE(0);
          const name = data.subarray(4, 4 + nameLen).toString('utf8');
          const nInfo = data.readUInt16BE(4 + nameLen);
          const asked = new Set<number>();
          for (let i = 0; i < nInfo; i++) asked.add(data.readUInt16BE(6 + nameLen + 2 * i));
          const v = this.lookup(name);
          if (!v) {
            sock.write(
              optionReply(
                opt,
                Rep.ErrUnknown,
                Buffer.from(`no export "${name}"; exports: ${[...this.opts.exports.keys()].join(', ')}`),
              ),
            );
            break;
          }
          sock.write(optionReply(opt, Rep.Info, infoExport(v.sizeBytes, EXPORT_FLAGS)));
          if (asked.has(Info.BlockSize)) sock.write(optionReply(opt, Rep.Info, infoBlockSize(BLOCK_BYTES)));
          sock.write(optionReply(opt, Rep.Ack));
          if (opt === Opt.Go) return v;
          break;
        }
        default:
          // STARTTLS, structured replies, meta contexts, extended headers: not offered; clients fall back.
          sock.write(optionReply(opt, Rep.ErrUnsup));
      }
    }
  }

  private async transmit(sock: net.Socket, rd: SocketReader, v: Volume): Promise<void> {
    let inflight = 0;
    let slot: (() => void) | null = null;
    const running = new Set<Promise<void>>();
    for (;;) {
      while (inflight >= MAX_INFLIGHT) await new Promise<void>((r) => (slot = r));
      const req = parseRequest(await rd.read(28));
      if (!req) throw new Error('bad request magic');
      let payload: Buffer | null = null;
      if (req.type === Cmd.Write) {
        if (req.length > MAX_REQUEST_BYTES)
          throw new Error(`write of ${req.length} bytes exceeds the advertised maximum`);
        payload = await rd.read(req.length);
      }
      if (req.type === Cmd.Disc) {
        await Promise.all(running);
        sock.end();
        return;
      }
      inflight++;
      const p = this.handle(v, req, payload)
        .then(
          ({ error, data }) => {
            v.countRequest(error === 0);
            if (!sock.destroyed)
              sock.write(data ? Buffer.concat([simpleReply(req.handle, error), data]) : simpleReply(req.handle, error));
          },
          () => undefined,
        )
        .finally(() => {
          inflight--;
          running.delete(p);
          const s = slot;
          slot = null;
          s?.();
        });
      running.add(p);
    }
  }

  private async handle(v: Volume, req: NbdRequest, payload: Buffer | null): Promise<{ error: number; data?: Buffer }> {
    const inRange = req.offset + req.length <= v.sizeBytes;
    const fua = (req.flags & CmdFlag.Fua) !== 0;
    try {
      switch (req.type) {
        case Cmd.Read:
          if (!inRange || req.length > MAX_REQUEST_BYTES) return { error: NbdErr.EINVAL };
          return { error: 0, data: await v.read(req.offset, req.length) };
        case Cmd.Write:
          if (!inRange) return { error: NbdErr.ENOSPC };
          await v.write(req.offset, payload ?? Buffer.alloc(0), fua);
          return { error: 0 };
        case Cmd.WriteZeroes:
          if (!inRange) return { error: NbdErr.ENOSPC };
          await v.writeZeroes(req.offset, req.length, fua);
          return { error: 0 };
        case Cmd.Flush:
          await v.flush();
          return { error: 0 };
        case Cmd.Trim:
          // A trimmed range's content is unspecified until rewritten (NBD spec), so keeping it is
          // correct, and it keeps the journal and the snapshot free of a third kind of record.
          return { error: inRange ? 0 : NbdErr.EINVAL };
        case Cmd.Cache:
          return { error: 0 };
        default:
          return { error: NbdErr.EINVAL };
      }
    } catch (err) {
      this.opts.log?.(
        `nbd: ${v.name}: request ${req.type} at ${req.offset}+${req.length} failed: ${err instanceof Error ? err.message : String(err)}`,
      );
      return { error: NbdErr.EIO };
    }
  }
}
