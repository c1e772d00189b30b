/**
 * The NBD handshake against clients that break the protocol, driven byte by byte over a raw socket:
 * option lengths that do not add up, an option beyond the server's limit, client flags the server
 * does not know. Each gets the reply (or the hard disconnect) the NBD specification asks for and a
 * log line a person can read, and the server goes on serving everyone else.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { makeLab, type TestLab } from '../support/harness';
import { freePort, nbdUrl, qemuIo } from '../support/nbd';

const SIZE = 2 * 1024 * 1024;
const IHAVEOPT = 'IHAVEOPT';
const OPT = { Abort: 2, List: 3, Go: 7 } as const;
const REP = { Ack: 1, Server: 2, Info: 3, ErrInvalid: 2 ** 31 + 3, ErrTooBig: 2 ** 31 + 9 } as const;
/** NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES: every flag a client may set. */
const KNOWN_CLIENT_FLAGS = 3;

let lab: TestLab;
let dp: DatapathService;
let name: string;
let volumeFile: string;
const logs: string[] = [];
const clients: RawClient[] = [];

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({ vms: 1, dataVolumeSize: SIZE, edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort }) });
  dp = await startDatapath(lab.loaded, lab.paths, { log: (line) => logs.push(line) });
  name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
  volumeFile = lab.dataVolume('vm-001');
});

afterEach(() => {
  for (const c of clients.splice(0)) c.sock.destroy();
  logs.length = 0;
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

/** A client that speaks NBD's bytes itself, so it can get them wrong on purpose. */
class RawClient {
  readonly sock: net.Socket;
  private buffer = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | null = null;

  constructor(port: number) {
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.on('data', (c: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, c]);
      this.notify();
    });
    this.sock.on('close', () => {
      this.ended = true;
      this.notify();
    });
    this.sock.on('error', () => undefined);
    clients.push(this);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The next `n` bytes from the server; rejects if the connection closes first or nothing comes in time. */
  async read(n: number, ms = 5000): Promise<Buffer> {
    const end = Date.now() + ms;
    while (this.buffer.length < n) {
      if (this.ended) throw new Error(`the server closed the connection before sending ${n} bytes`);
      if (Date.now() > end) throw new Error(`no ${n} bytes from the server within ${ms} ms`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** Resolves once the server has closed the connection, with the bytes it sent in between. */
  async closedByServer(ms = 5000): Promise<Buffer> {
    const end = Date.now() + ms;
    while (!this.ended) {
      if (Date.now() > end) throw new Error(`the server kept the connection open for ${ms} ms`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
    return this.buffer;
  }

  /** Reads the greeting and answers it with these client flags. */
  async hello(flags = KNOWN_CLIENT_FLAGS): Promise<void> {
    const greeting = await this.read(18);
    expect(greeting.subarray(0, 16).toString('latin1')).toBe(`NBDMAGIC${IHAVEOPT}`);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(flags, 0);
    this.sock.write(b);
  }

  /** Sends an option; `declared` overrides the length field (to lie about it). */
  option(opt: number, data: Buffer, declared = data.length): void {
    const h = Buffer.alloc(16);
    h.write(IHAVEOPT, 0, 'latin1');
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(declared, 12);
    this.sock.write(Buffer.concat([h, data]));
  }

  /** One option reply: the option it answers, its type, and its data as text. */
  async reply(): Promise<{ option: number; type: number; data: Buffer; text: string }> {
    const h = await this.read(20);
    expect(h.readBigUInt64BE(0)).toBe(0x0003e889045565a9n);
    const data = await this.read(h.readUInt32BE(16));
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data, text: data.toString('utf8') };
  }
}

/** NBD_OPT_GO's data: name length, name, the count of information requests, the requests. */
function goData(o: { name: string; nameLength?: number; count?: number; requests?: number[] }): Buffer {
  const n = Buffer.from(o.name, 'utf8');
  const requests = o.requests ?? [];
  const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length);
  b.writeUInt32BE(o.nameLength ?? n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(o.count ?? requests.length, 4 + n.length);
  requests.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
  return b;
}

/** A well-formed GO on the same connection, then a READ compared with main storage, then DISC. */
async function goReadAndDisconnect(c: RawClient): Promise<void> {
  c.option(OPT.Go, goData({ name }));
  const info = await c.reply();
  expect([info.option, info.type]).toEqual([OPT.Go, REP.Info]);
  expect(Number(info.data.readBigUInt64BE(2))).toBe(SIZE);
  expect((await c.reply()).type).toBe(REP.Ack);
  const req = Buffer.alloc(28);
  req.writeUInt32BE(0x25609513, 0);
  req.writeUInt16BE(0, 6); // NBD_CMD_READ
  req.write('cookie42', 8, 'latin1');
  req.writeBigUInt64BE(8192n, 16);
  req.writeUInt32BE(64, 24);
  c.sock.write(req);
  const reply = await c.read(16 + 64);
  expect(reply.readUInt32BE(0)).toBe(0x67446698);
  expect(reply.readUInt32BE(4)).toBe(0);
  expect(reply.subarray(8, 16).toString('latin1')).toBe('cookie42');
  expect(reply.subarray(16).equals(readFileSync(volumeFile).subarray(8192, 8256))).toBe(true);
  const disc = Buffer.alloc(28);
  disc.writeUInt32BE(0x25609513, 0);
  disc.writeUInt16BE(2, 6); // NBD_CMD_DISC
  c.sock.write(disc);
  await c.closedByServer();
}

/** Another client, a real one, still writes and reads the export. */
async function expectStillServing(pattern: number): Promise<void> {
  const hex = `0x${pattern.toString(16)}`;
  await qemuIo(nbdUrl(dp.nbdPort, name), [`write -P ${hex} 65536 4096`, `read -P ${hex} 65536 4096`]);
  expect(
    readFileSync(volumeFile)
      .subarray(65536, 65536 + 4096)
      .every((b) => b === pattern),
  ).toBe(true);
}

/** The log lines written so far, with an assurance that no raw exception text leaked into them. */
function logged(): string {
  const text = logs.join('\n');
  expect(text).not.toMatch(/RangeError|out of range|ERR_OUT_OF_RANGE/);
  return text;
}

describe('NBD_OPT_GO whose lengths do not add up', () => {
  it('answers a name length that runs past the option with NBD_REP_ERR_INVALID, and goes on negotiating', async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello();
    c.option(OPT.Go, goData({ name: 'abc', nameLength: 1000 }));
    const r = await c.reply();
    expect([r.option, r.type]).toEqual([OPT.Go, REP.ErrInvalid]);
    expect(r.text).toBe('NBD_OPT_GO: the name length 1000 runs past the 9 bytes of the option');
    // The protocol wants an error, not a disconnect: the same client may try again, and succeeds.
    await goReadAndDisconnect(c);
    expect(logged()).toMatch(
      /^nbd: 127\.0\.0\.1:\d+: malformed NBD_OPT_GO: the name length 1000 runs past the 9 bytes of the option; answered NBD_REP_ERR_INVALID$/m,
    );
    await expectStillServing(0x5a);
  });

  it('answers an information-request count that runs past the option with NBD_REP_ERR_INVALID', async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello();
    const data = goData({ name, count: 50, requests: [3] });
    c.option(OPT.Go, data);
    const r = await c.reply();
    expect([r.option, r.type]).toEqual([OPT.Go, REP.ErrInvalid]);
    expect(r.text).toBe(`NBD_OPT_GO: 50 information requests need 100 bytes after the name, but the option has 2 left`);
    await goReadAndDisconnect(c);
    expect(logged()).toMatch(/malformed NBD_OPT_GO: 50 information requests need 100 bytes/);
    await expectStillServing(0x6b);
  });

  it('answers data too short to hold the name length with NBD_REP_ERR_INVALID', async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello();
    c.option(OPT.Go, Buffer.from([0, 0]));
    const r = await c.reply();
    expect([r.option, r.type]).toEqual([OPT.Go, REP.ErrInvalid]);
    expect(r.text).toBe('NBD_OPT_GO: 2 bytes cannot hold a name length and an information-request count');
    await goReadAndDisconnect(c);
  });

  it("answers NBD_OPT_LIST with data with NBD_REP_ERR_INVALID, as the specification's own example", async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello();
    c.option(OPT.List, Buffer.from('extra'));
    const r = await c.reply();
    expect([r.option, r.type]).toEqual([OPT.List, REP.ErrInvalid]);
    expect(r.text).toBe('NBD_OPT_LIST: takes no data, but the option has 5 bytes');
    c.option(OPT.List, Buffer.alloc(0));
    const listed = await c.reply();
    expect(listed.type).toBe(REP.Server);
    expect(listed.data.subarray(4).toString('utf8')).toBe(name);
    expect((await c.reply()).type).toBe(REP.Ack);
  });
});

describe('an option longer than the server takes', () => {
  it('is answered NBD_REP_ERR_TOO_BIG before the connection is closed, and others are still served', async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello();
    // The length says 16 MiB; a server that read it all would hold that much for one option.
    c.option(OPT.Go, Buffer.alloc(0), 16 * 1024 * 1024);
    const r = await c.reply();
    expect([r.option, r.type]).toEqual([OPT.Go, REP.ErrTooBig]);
    expect(r.text).toBe('NBD_OPT_GO: 16777216 bytes of option data; the server takes at most 65536');
    expect((await c.closedByServer()).length).toBe(0);
    expect(logged()).toMatch(
      /^nbd: 127\.0\.0\.1:\d+: option NBD_OPT_GO of 16777216 bytes, more than the 65536 the server takes; answered NBD_REP_ERR_TOO_BIG and closed the connection$/m,
    );
    await expectStillServing(0x7c);
  });
});

describe('client flags', () => {
  it('closes the connection, as the protocol requires, when the client sets a flag the server does not know', async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello(KNOWN_CLIENT_FLAGS | (1 << 7));
    // No option is read or answered: the connection simply ends.
    expect((await c.closedByServer()).length).toBe(0);
    expect(logged()).toMatch(
      /^nbd: 127\.0\.0\.1:\d+: unknown client flags 0x80 \(of 0x83; known: 0x3\); closed the connection$/m,
    );
    await expectStillServing(0x8d);
  });

  it('accepts a client that sets only the flags it knows, or none', async () => {
    for (const flags of [0, 1, KNOWN_CLIENT_FLAGS]) {
      const c = new RawClient(dp.nbdPort);
      await c.hello(flags);
      await goReadAndDisconnect(c);
    }
    expect(logs).toEqual([]);
  });
});
