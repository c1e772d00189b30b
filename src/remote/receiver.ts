/**
 * The remote site's receiver of one remote-copy group: listens on the group's port on 127.0.0.1
 * (the far end of the WAN), takes each batch into the replica's inbox, applies what has become
 * contiguous, and acknowledges the applied seq. Applying runs one pass at a time; batches that
 * arrive meanwhile wait in the inbox for the next pass.
 */
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Replica } from './replica';
import { FrameKind, FrameReader, ackFrame, frameKind, parseBatch } from './wire';

export interface ReceiverOptions {
  replica: Replica;
  port: number;
  batch?: number;
  pauseMs?: number;
  log?: (line: string) => void;
}

export class Receiver {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private applying: Promise<void> | null = null;
  private again = false;
  private failure: unknown = null;
  private closing = false;

  constructor(private readonly opts: ReceiverOptions) {}

  /** Finishes a batch a crash interrupted, then listens. */
  async listen(): Promise<number> {
    await this.opts.replica.apply({ batch: this.opts.batch, pauseMs: this.opts.pauseMs });
    const server = net.createServer((s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, '127.0.0.1', () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  /** The error that stopped applying, if any (the activity fails with it). */
  get error(): unknown {
    return this.failure;
  }

  /** Stops listening and waits for the apply pass in progress. */
  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
    await this.applying;
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const reader = new FrameReader((f) => {
      if (frameKind(f) !== FrameKind.Batch) return;
      const { writes } = parseBatch(f);
      const applied = this.opts.replica.receive(writes);
      socket.write(ackFrame({ group: this.opts.replica.group, applied }));
      this.kick();
    });
    socket.on('data', (d: Buffer) => {
      try {
        reader.push(d);
      } catch (err) {
        this.opts.log?.(`remote-copy ${this.opts.replica.group}: dropped a connection: ${String(err)}`);
        socket.destroy();
      }
    });
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
  }

  /** Runs an apply pass, or asks the one running for another when it ends. */
  private kick(): void {
    if (this.closing) return;
    if (this.applying) {
      this.again = true;
      return;
    }
    this.applying = (async () => {
      do {
        this.again = false;
        await this.opts.replica.apply({
          batch: this.opts.batch,
          pauseMs: this.opts.pauseMs,
          onBatch: (applied) => this.broadcast(applied),
        });
      } while (this.again && !this.closing);
    })()
      .catch((err: unknown) => {
        this.failure = err;
      })
      .finally(() => {
        this.applying = null;
      });
  }

  private broadcast(applied: number): void {
    const f = ackFrame({ group: this.opts.replica.group, applied });
    for (const s of this.sockets) s.write(f);
  }
}
