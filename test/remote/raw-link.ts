/**
 * A raw TCP client of a remote-copy receiver, for tests that speak its wire by hand: it waits for
 * the receiver's hello, then sends whatever bytes the test gives, and tells when the receiver hangs up.
 */
import * as net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { GroupWrite } from '../../src/datapath/group-journal';
import { Replica } from '../../src/remote/replica';
import { linkProof } from '../../src/remote/secret';
import { FrameKind, FrameReader, frameBody, frameKind, proofFrame } from '../../src/remote/wire';

export interface RawLink {
  /** The nonce of the receiver's hello. */
  nonce: Buffer;
  /** Frames the receiver sent after its hello (acks). */
  frames: Buffer[];
  send(bytes: Buffer): void;
  /** Resolves when the receiver closed the connection. */
  closed: Promise<void>;
  isClosed(): boolean;
  end(): Promise<void>;
  /** Half-closes after what was sent is flushed, and waits for the receiver to close too. */
  finish(): Promise<void>;
}

/** Connects and waits for the hello; with `secret`, answers it with the proof. */
export function openRaw(port: number, proveWith?: { secret: Buffer; group: string }): Promise<RawLink> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let closedFlag = false;
    const closed = new Promise<void>((r) =>
      socket.on('close', () => {
        closedFlag = true;
        r();
      }),
    );
    const frames: Buffer[] = [];
    let link: RawLink | null = null;
    const reader = new FrameReader((f) => {
      if (link) {
        frames.push(f);
        return;
      }
      if (frameKind(f) !== FrameKind.Hello) return reject(new Error(`the receiver opened with kind ${frameKind(f)}`));
      const nonce = Buffer.from(frameBody(f));
      if (proveWith) socket.write(proofFrame(linkProof(proveWith.secret, proveWith.group, nonce)));
      link = {
        nonce,
        frames,
        send: (b) => void (socket.destroyed || socket.write(b)),
        closed,
        isClosed: () => closedFlag,
        end: async () => {
          socket.destroy();
          await closed;
        },
        finish: async () => {
          socket.end();
          await closed;
        },
      };
      resolve(link);
    });
    socket.on('data', (d: Buffer) => reader.push(d));
    socket.on('error', (err) => {
      if (!link) reject(err);
    });
  });
}

/** Waits until `check` holds, or the time is up (then returns false). */
export async function until(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return check();
}

/** A replica of one volume `a/v` of `size` zero bytes, in a fresh directory. */
export function makeReplica(group: string, size: number): { dir: string; volumeFile: string; replica: Replica } {
  const dir = mkdtempSync(path.join(tmpdir(), 'kura-remote-wire-'));
  const volumeFile = path.join(dir, 'remote.img');
  writeFileSync(volumeFile, Buffer.alloc(size));
  const replica = new Replica(group, path.join(dir, 'replica.db'), { 'a/v': volumeFile }, { 'a/v': size });
  return { dir, volumeFile, replica };
}

/** A write of `a/v` carrying `data` (or zeroes of `length` when data is null). */
export function write(seq: number, offset: number, data: Buffer | null, length = data?.length ?? 0): GroupWrite {
  return { seq, at: Date.now(), volume: 'a/v', offset, length, data };
}
