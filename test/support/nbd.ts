/**
 * Test helpers for the datapath: free ports, Debian's NBD clients (qemu-io, nbdcopy) run as a host
 * would run them, and a host that keeps writing known patterns while keeping its own model of
 * what the volume must hold.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { NbdServer } from '../../src/datapath/nbd-server';
import { Volume } from '../../src/datapath/volume';
import { DatapathConfigSchema } from '../../src/domain/inventory';
import { parseWith } from '../../src/domain/validate';

const run = promisify(execFile);

/** A port nobody listens on right now (the kernel picks it). */
export { freePort } from '../../src/stack/devserver';

/**
 * Connects to a datapath on 127.0.0.1 and completes the fixed-newstyle handshake with
 * NBD_OPT_EXPORT_NAME, for tests that speak the protocol themselves. Resolves with the socket, the
 * export's transmission flags, and any bytes that came after the handshake.
 */
export async function nbdConnect(
  port: number,
  exportName: string,
): Promise<{ sock: net.Socket; flags: number; rest: Buffer }> {
  const sock = net.connect(port, '127.0.0.1');
  let buffer = Buffer.alloc(0);
  let wake = () => {};
  const onData = (c: Buffer) => {
    buffer = Buffer.concat([buffer, c]);
    wake();
  };
  sock.on('data', onData);
  const until = async (bytes: number, what: string) => {
    const deadline = Date.now() + 10_000;
    while (buffer.length < bytes) {
      if (sock.destroyed || Date.now() > deadline) {
        sock.destroy();
        throw new Error(`nbd handshake with 127.0.0.1:${port}: no ${what} (${buffer.length} of ${bytes} bytes)`);
      }
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 20);
      });
    }
  };
  // The server's greeting: NBDMAGIC, IHAVEOPT and its 16-bit handshake flags.
  await until(18, 'greeting');
  buffer = buffer.subarray(18);
  const opt = Buffer.alloc(20 + exportName.length);
  opt.writeUInt32BE(3, 0); // client flags: FIXED_NEWSTYLE | NO_ZEROES
  opt.write('IHAVEOPT', 4, 'latin1');
  opt.writeUInt32BE(1, 12); // NBD_OPT_EXPORT_NAME
  opt.writeUInt32BE(exportName.length, 16);
  opt.write(exportName, 20, 'latin1');
  sock.write(opt);
  // The export's size (64 bits) and transmission flags (16 bits), with NO_ZEROES.
  await until(10, 'export');
  sock.off('data', onData);
  return { sock, flags: buffer.readUInt16BE(8), rest: buffer.subarray(10) };
}

export function nbdUrl(port: number, exportName: string): string {
  return `nbd://127.0.0.1:${port}/${exportName}`;
}

/** Runs qemu-io with these commands against an NBD URL; rejects on a non-zero exit or a failed check. */
export async function qemuIo(url: string, commands: string[]): Promise<string> {
  const { stdout, stderr } = await run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), url], {
    timeout: 60_000,
  });
  const out = `${stdout}${stderr}`;
  if (/fail|error/i.test(out)) throw new Error(`qemu-io ${commands.join('; ')}: ${out.trim()}`);
  return out;
}

/** Copies a whole export to a file with nbdcopy. */
export async function nbdcopy(url: string, file: string): Promise<void> {
  await run('nbdcopy', [url, file], { timeout: 120_000 });
}

export interface HostWrite {
  n: number;
  offset: number;
  length: number;
  pattern: number;
  startedAt: number;
  endedAt: number;
  /** acked: qemu-io reported success; failed: it did not (the write may or may not have landed). */
  outcome: 'acked' | 'failed';
  error?: string;
}

/**
 * A host writing known patterns, one qemu-io process (one NBD connection) per write, each write
 * read back in the same process. Writes are sequential, so the model — the initial bytes with
 * every acknowledged write applied in order — is exactly what the volume must hold.
 */
export class PatternWriter {
  readonly writes: HostWrite[] = [];
  private stopping = false;
  private loop: Promise<void> | null = null;
  private n = 0;

  constructor(
    private readonly url: string,
    private readonly sizeBytes: number,
    /** Stop at the first failed write (a crash test wants at most one write in doubt). */
    private readonly stopOnFailure = false,
  ) {}

  /** The next write: mostly 64 KiB slots, every fourth one unaligned to exercise read-modify-write. */
  private next(): { offset: number; length: number; pattern: number } {
    const n = this.n++;
    const pattern = (n % 250) + 1;
    const slots = this.sizeBytes / 65536;
    const slot = (n * 37) % slots;
    if (n % 4 === 3) return { offset: slot * 65536 + 1000, length: 5000, pattern };
    return { offset: slot * 65536, length: 65536, pattern };
  }

  async writeOnce(): Promise<HostWrite> {
    const w = this.next();
    const hex = `0x${w.pattern.toString(16)}`;
    const startedAt = Date.now();
    try {
      await qemuIo(this.url, [`write -P ${hex} ${w.offset} ${w.length}`, `read -P ${hex} ${w.offset} ${w.length}`]);
      const rec: HostWrite = { n: this.writes.length, ...w, startedAt, endedAt: Date.now(), outcome: 'acked' };
      this.writes.push(rec);
      return rec;
    } catch (err) {
      const rec: HostWrite = {
        n: this.writes.length,
        ...w,
        startedAt,
        endedAt: Date.now(),
        outcome: 'failed',
        error: err instanceof Error ? err.message : String(err),
      };
      this.writes.push(rec);
      return rec;
    }
  }

  start(): void {
    this.stopping = false;
    this.loop = (async () => {
      while (!this.stopping) {
        const w = await this.writeOnce();
        if (w.outcome === 'failed' && this.stopOnFailure) return;
      }
    })();
  }

  /** Stops after the write in progress. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }

  acked(): HostWrite[] {
    return this.writes.filter((w) => w.outcome === 'acked');
  }

  failed(): HostWrite[] {
    return this.writes.filter((w) => w.outcome === 'failed');
  }
}

/** The initial bytes with these writes applied in order. */
export function applyWrites(initial: Buffer, writes: HostWrite[]): Buffer {
  const out = Buffer.from(initial);
  for (const w of writes) out.fill(w.pattern, w.offset, w.offset + w.length);
  return out;
}

/**
 * What the volume may hold at an instant: every write finished before it is in, every write begun
 * after it is out, and of the writes in flight across it (sequential, so in order) any prefix.
 */
export function candidatesAt(initial: Buffer, writes: HostWrite[], instant: number): Buffer[] {
  const before = writes.filter((w) => w.endedAt < instant);
  const across = writes.filter((w) => w.startedAt <= instant && w.endedAt >= instant);
  const out: Buffer[] = [];
  for (let k = 0; k <= across.length; k++) out.push(applyWrites(initial, [...before, ...across.slice(0, k)]));
  return out;
}

/** A volume served over NBD by a test: its port, its file and the volume. */
export interface ServedVolume {
  port: number;
  file: string;
  volume: Volume;
}

/**
 * The fixture of tests that serve a volume over NBD and speak to it themselves: a temporary
 * directory for the files, and the sockets and servers each test opened, closed after it (the last
 * opened first). `serve` writes `content` to a new file and serves it as `exportName` in
 * passthrough; `keep` hands a socket over to be destroyed; `onClose` adds a step to the closing.
 */
export function nbdFixture(prefix: string): {
  dir: () => string;
  keep: (sock: net.Socket) => void;
  onClose: (close: () => Promise<void>) => void;
  serve: (opts: {
    label: string;
    exportName: string;
    content: Buffer;
    onWrite?: (offset: number, length: number, data: Buffer | null) => void;
    log?: (line: string) => void;
  }) => Promise<ServedVolume>;
} {
  let dir = '';
  const sockets: net.Socket[] = [];
  const closers: (() => Promise<void>)[] = [];
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const c of closers.splice(0).reverse()) await c();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return {
    dir: () => dir,
    keep: (sock) => sockets.push(sock),
    onClose: (close) => closers.push(close),
    async serve({ label, exportName, content, onWrite, log }) {
      const file = path.join(dir, `${label}.img`);
      writeFileSync(file, content);
      const settings = parseWith(DatapathConfigSchema, { copyRate: 0 }, 'the test datapath settings');
      const volume = await Volume.open({
        name: exportName,
        mainFile: file,
        stateDir: path.join(dir, `${label}-state`),
        settings,
        ...(onWrite ? { onWrite } : {}),
      });
      const server = new NbdServer({ exports: new Map([[exportName, volume]]), ...(log ? { log } : {}) });
      const port = await server.listen(0);
      closers.push(async () => {
        await server.close();
        await volume.close();
      });
      return { port, file, volume };
    },
  };
}
