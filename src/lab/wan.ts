/**
 * The lab WAN between the main site and the remote site: a relay inside the shipper's process, in
 * front of a real TCP connection to the remote site's receiver on 127.0.0.1. Each frame is held
 * for the link's latency and its serialisation at the link's bandwidth, and the injected faults
 * apply to it: extra delay, reorder (held back so later frames overtake it), drop, and partition
 * (nothing gets through either way until it ends). The faults live in a small JSON file of the lab,
 * checked at every frame, so `kura lab wan …` and tests change them under a running copy and the
 * next frame obeys.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { WanFaultsSchema, type WanFaults, type WanSettings } from '../domain/remote';
import { parseWith } from '../domain/validate';
import { FrameReader } from '../remote/wire';
import { seededRandom } from '../domain/seeded-random';

/** `<lab>/wan.json`: the faults of the lab WAN. */
export function wanFaultsFile(labDir: string): string {
  return path.join(labDir, 'wan.json');
}

/** The faults in force (none when the file is missing). */
export function readWanFaults(file: string): WanFaults {
  if (!existsSync(file)) return WanFaultsSchema.parse({});
  return parseWith(WanFaultsSchema, JSON.parse(readFileSync(file, 'utf8')) as unknown, `lab WAN faults (${file})`);
}

/** Replaces the faults, atomically (a link re-reading the file sees the old faults or the new, whole). */
export function writeWanFaults(file: string, faults: Partial<WanFaults>): WanFaults {
  const parsed = parseWith(WanFaultsSchema, faults, 'lab WAN faults');
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(parsed, null, 2));
  renameSync(tmp, file);
  return parsed;
}

/** What a link did to the frames sent through it. */
export interface WanCounters {
  sent: number;
  delivered: number;
  dropped: number;
  reordered: number;
  partitioned: number;
}

/** How long a connection waits for the far end's hello. */
const HELLO_MS = 5000;
const MAX_HELLO_BYTES = 4096;

/**
 * One connection across the lab WAN. `send` never blocks: the frame is delivered later, or lost;
 * the shipper's acknowledgements and resends are what make shipping reliable.
 */
export class WanLink {
  readonly counters: WanCounters = { sent: 0, delivered: 0, dropped: 0, reordered: 0, partitioned: 0 };
  private faults: WanFaults;
  private random: () => number;
  private seed: number;
  /** When the link's bandwidth is next free, each way (ms since the epoch). */
  private freeAt = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** The faults file's identity when last read: a change (a rename over it) is seen at the next frame. */
  private faultsStamp = '';
  private closed = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly settings: WanSettings,
    private readonly faultsFile: string,
    onFrame: (f: Buffer) => void,
    onClose: () => void,
  ) {
    this.faults = readWanFaults(faultsFile);
    this.faultsStamp = stampOf(faultsFile);
    this.seed = this.faults.seed;
    this.random = seededRandom(this.seed);
    const reader = new FrameReader((f) => {
      // The way back keeps the latency and the partition; its frames (acks) are small and not diced.
      this.reloadFaults();
      if (this.partitioned()) return;
      this.later(this.settings.latency, () => {
        if (!this.partitioned()) onFrame(f);
      });
    });
    socket.on('data', (d: Buffer) => {
      try {
        reader.push(d);
      } catch {
        socket.destroy();
      }
    });
    socket.on('close', () => {
      this.close();
      onClose();
    });
    socket.on('error', () => undefined);
  }

  /**
   * Connects to the far end (the receiver's port on 127.0.0.1); rejects when nothing listens there.
   * With `greet`, the far end's first frame (its hello) is answered with what `greet` returns before
   * the link is handed out: that exchange is the connection's set-up, so it bypasses the WAN's faults
   * as TCP's own handshake would, and it is over before the first frame the link carries.
   */
  static connect(opts: {
    port: number;
    settings: WanSettings;
    faultsFile: string;
    onFrame: (f: Buffer) => void;
    onClose?: () => void;
    greet?: (hello: Buffer) => Buffer;
  }): Promise<WanLink> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: opts.port });
      socket.setNoDelay(true);
      socket.once('error', reject);
      const open = () =>
        resolve(new WanLink(socket, opts.settings, opts.faultsFile, opts.onFrame, opts.onClose ?? (() => undefined)));
      socket.once('connect', () => {
        const greet = opts.greet;
        if (!greet) {
          socket.off('error', reject);
          open();
          return;
        }
        let buf = Buffer.alloc(0);
        const timer = setTimeout(
          () => fail(new Error(`no hello from 127.0.0.1:${opts.port} within ${HELLO_MS} ms`)),
          HELLO_MS,
        );
        const fail = (err: Error) => {
          clearTimeout(timer);
          socket.off('data', onData);
          socket.off('close', onEnd);
          socket.destroy();
          reject(err);
        };
        const onEnd = () => fail(new Error(`127.0.0.1:${opts.port} closed the connection before its hello`));
        const onData = (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length < 4) return;
          const n = buf.readUInt32LE(0);
          if (n > MAX_HELLO_BYTES)
            return fail(new Error(`a hello of ${n} bytes from 127.0.0.1:${opts.port} is too long`));
          if (buf.length < 4 + n) return;
          // The far end says nothing more until it has the answer.
          if (buf.length > 4 + n) return fail(new Error(`127.0.0.1:${opts.port} sent more than its hello`));
          let answer: Buffer;
          try {
            answer = greet(buf);
          } catch (err) {
            return fail(err instanceof Error ? err : new Error(String(err)));
          }
          clearTimeout(timer);
          socket.off('data', onData);
          socket.off('close', onEnd);
          socket.off('error', reject);
          socket.write(answer);
          open();
        };
        socket.on('data', onData);
        socket.on('close', onEnd);
      });
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Sends one frame across the WAN, subject to the link and its faults. */
  send(f: Buffer): void {
    if (this.closed) return;
    this.counters.sent++;
    this.reloadFaults();
    const faults = this.faults;
    if (this.partitioned()) {
      this.counters.partitioned++;
      return;
    }
    if (faults.drop > 0 && this.random() < faults.drop) {
      this.counters.dropped++;
      return;
    }
    const now = Date.now();
    const bw = this.settings.bandwidth;
    this.freeAt = Math.max(this.freeAt, now) + (bw > 0 ? (f.length / bw) * 1000 : 0);
    let delay = this.freeAt - now + this.settings.latency + faults.delayMs;
    if (faults.reorder > 0 && this.random() < faults.reorder) {
      this.counters.reordered++;
      delay += Math.floor(this.random() * faults.reorderMs) + 1;
    }
    this.later(delay, () => {
      // A partition that began while the frame was on its way catches it too.
      this.reloadFaults();
      if (this.partitioned() || this.closed) {
        this.counters.partitioned++;
        return;
      }
      this.counters.delivered++;
      this.socket.write(f);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.socket.destroy();
  }

  private partitioned(): boolean {
    return Date.now() < this.faults.partitionUntil;
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(
      () => {
        this.timers.delete(t);
        fn();
      },
      Math.max(0, ms),
    );
    this.timers.add(t);
  }

  /** Re-reads the faults when the file changed since the last read (a stat per frame, no more). */
  private reloadFaults(): void {
    const stamp = stampOf(this.faultsFile);
    if (stamp === this.faultsStamp) return;
    this.faultsStamp = stamp;
    try {
      this.faults = readWanFaults(this.faultsFile);
      if (this.faults.seed !== this.seed) {
        this.seed = this.faults.seed;
        this.random = seededRandom(this.seed);
      }
    } catch {
      // A half-edited file by hand: keep the faults in force until it parses again.
    }
  }
}

/** What tells one version of the faults file from the next: its inode, size and change time. */
function stampOf(file: string): string {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.ino}:${st.size}:${st.ctimeNs}`;
  } catch {
    return 'missing';
  }
}
