/**
 * The remote site's receiver of one remote-copy group: listens on the group's port on 127.0.0.1
 * (the far end of the WAN), takes each batch into the replica's inbox, applies what has become
 * contiguous, and acknowledges the applied seq. Applying runs one pass at a time; batches that
 * arrive meanwhile wait in the inbox for the next pass. Each connection must first prove it knows
 * the link's secret (an HMAC over a nonce sent on accept); one that does not, or that sends a frame
 * that does not validate, is logged and closed, and nothing of what it sent is taken.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Replica } from './replica';
import { NONCE_BYTES, proofHolds } from './secret';
import { FrameKind, FrameReader, ackFrame, frameBody, frameKind, helloFrame, parseBatch } from './wire';

export interface ReceiverOptions {
  replica: Replica;
  /** The link's shared secret (see `loadRemoteSecret`): a connection must prove it knows it. */
  secret: Buffer;
  port: number;
  batch?: number;
  pauseMs?: number;
  log?: (line: string) => void;
}

export class Receiver {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  /** The connections that proved the secret: only they hear acks. */
  private readonly peers = new Set<net.Socket>();
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
    socket.setNoDelay(true);
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const group = this.opts.replica.group;
    const nonce = randomBytes(NONCE_BYTES);
    let proven = false;
    const reader = new FrameReader((f) => {
      const kind = frameKind(f);
      if (!proven) {
        if (kind !== FrameKind.Proof) throw new Error(`its first frame (kind ${kind}) is not the secret's proof`);
        if (!proofHolds(this.opts.secret, group, nonce, frameBody(f)))
          throw new Error("its proof does not match the secret: the sender does not hold this link's secret");
        proven = true;
        // Only now may acks (the replica's state) reach it.
        this.peers.add(socket);
        return;
      }
      if (kind !== FrameKind.Batch) throw new Error(`a frame of kind ${kind} is no batch`);
      const batch = parseBatch(f);
      if (batch.group !== group) throw new Error(`a batch of group "${batch.group}" reached group ${group}'s receiver`);
      const applied = this.opts.replica.receive(batch.writes);
      socket.write(ackFrame({ group, applied }));
      this.kick();
    });
    socket.on('data', (d: Buffer) => {
      if (socket.destroyed) return;
      try {
        reader.push(d);
      } catch (err) {
        this.opts.log?.(
          `remote-copy ${group}: refused a connection from ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}${proven ? '' : ' (not authenticated)'}: ${err instanceof Error ? err.message : String(err)}`,
        );
        socket.destroy();
      }
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.peers.delete(socket);
    });
    socket.on('error', () => undefined);
    socket.write(helloFrame(nonce));
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
    for (const s of this.peers) s.write(f);
  }
}
