/**
 * Fuzzing the datapath's NBD server: valid sessions (a handshake with stray options, then requests)
 * whose requests are mutated — lengths, offsets, flags and types — pipelined in batches, and ended
 * by a disconnect, a cut-short message, a broken magic or a write beyond the advertised maximum.
 * Two such sessions run at once, one on a volume in passthrough and one on a volume in backup mode
 * (the journal path). The server must answer every whole request once with its cookie, never
 * acknowledge a write it did not make, never change a byte outside an acknowledged write, close
 * the connection only where the protocol says so, and keep serving the other clients throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import fc from 'fast-check';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { makeLab, type TestLab } from '../support/harness';
import { freePort } from '../support/nbd';
import { fuzz } from './fuzz';
import {
  CMD,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  OPT,
  REP_ACK,
  REP_ERROR_BIT,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  WireClient,
  infoData,
  option,
  requestHeader,
  type WireRequest,
} from './nbd-wire';

const SIZE = 1024 * 1024;
const BLOCK = 4096;
/** The server's advertised maximum payload (protocol.ts MAX_REQUEST_BYTES). */
const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
const FUA = 1;
const NO_HOLE = 2;
const S = BigInt(SIZE);

let lab: TestLab;
let dp: DatapathService;
/** [passthrough export, backup-mode export] */
let exportsUnderTest: [string, string];
const logs: string[] = [];

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({ vms: 2, dataVolumeSize: SIZE, edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort }) });
  dp = await startDatapath(lab.loaded, lab.paths, { log: (line) => logs.push(line) });
  const vms = lab.loaded.config.sites[0]!.vms;
  exportsUnderTest = [vms[0]!.dataVolume, vms[1]!.dataVolume];
  await dp.volumes.get(exportsUnderTest[1])!.enterBackup('fuzz-backup', path.join(lab.dir, 'fuzz-image.img'));
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

/** A request as generated: its header fields and, for writes, the byte its payload is made from. */
interface GenRequest extends Omit<WireRequest, 'cookie'> {
  fill: number;
}

type Noise = { opt: number; data: Uint8Array };

type Ending =
  | { kind: 'disc'; req: GenRequest }
  | { kind: 'drop' }
  | { kind: 'cut-header'; req: GenRequest; keep: number }
  | { kind: 'cut-payload'; req: GenRequest; keep: number }
  | { kind: 'bad-magic'; req: GenRequest; magic: number }
  | { kind: 'oversize-write'; req: GenRequest };

interface Session {
  clientFlags: number;
  noise: Noise[];
  finish: 'export-name' | 'go';
  requests: GenRequest[];
  /** How many requests are sent before their replies are read, batch after batch. */
  depths: number[];
  ending: Ending;
}

const offsetArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: SIZE }).map(BigInt) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: SIZE / BLOCK }).map((b) => BigInt(b * BLOCK)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      S - 1n,
      S,
      S + 1n,
      2n ** 31n,
      2n ** 32n,
      2n ** 53n - 1n,
      2n ** 53n + 1n,
      2n ** 63n,
      2n ** 64n - 1n,
    ),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
);
const lengthArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 3 * BLOCK }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: SIZE }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, BLOCK - 1, BLOCK + 1, SIZE, SIZE + 1, 2 ** 31, 2 ** 32 - 1) },
  { weight: 1, arbitrary: fc.nat({ max: 2 ** 32 - 1 }) },
);
const typeArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(CMD.Read, CMD.Write, CMD.Write, CMD.WriteZeroes, CMD.Flush, CMD.Trim) },
  { weight: 1, arbitrary: fc.constantFrom(CMD.Cache, CMD.BlockStatus, 8, 0xffff) },
  { weight: 1, arbitrary: fc.integer({ min: 8, max: 0xffff }) },
);
const flagsArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(0, 0, FUA, NO_HOLE, FUA | NO_HOLE) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffff }) },
);

const requestArb: fc.Arbitrary<GenRequest> = fc
  .record({ type: typeArb, flags: flagsArb, offset: offsetArb, length: lengthArb, fill: fc.nat({ max: 255 }) })
  // A write's payload is sent in full, so within a session it stays below the advertised maximum;
  // the oversized write is an ending of its own.
  .map((r) => (r.type === CMD.Write && r.length > 2 * SIZE ? { ...r, length: r.length % (2 * SIZE) } : r));

const noiseArb: fc.Arbitrary<Noise> = fc.oneof(
  fc.constant({ opt: OPT.List, data: new Uint8Array(0) }),
  fc
    .record({
      name: fc.oneof(fc.constant('array-01/vm-001-data'), fc.string({ maxLength: 40 })),
      requests: fc.array(fc.nat({ max: 0xffff }), { maxLength: 4 }),
    })
    .map(({ name, requests }) => ({ opt: OPT.Info, data: new Uint8Array(infoData(name, requests)) })),
  fc.record({
    opt: fc.oneof(fc.constantFrom(OPT.Info, OPT.Go, 5, 8, 9, 10, 11), fc.integer({ min: 12, max: 2 ** 32 - 1 })),
    data: fc.uint8Array({ maxLength: 64 }),
  }),
);

const endingArb: fc.Arbitrary<Ending> = fc.oneof(
  requestArb.map((req) => ({ kind: 'disc' as const, req: { ...req, type: CMD.Disc } })),
  fc.constant({ kind: 'drop' as const }),
  fc
    .record({ req: requestArb, keep: fc.integer({ min: 0, max: 27 }) })
    .map((e) => ({ kind: 'cut-header' as const, ...e })),
  fc
    .record({ req: requestArb, length: fc.integer({ min: 1, max: 2 * BLOCK }), keep: fc.nat() })
    .map(({ req, length, keep }) => ({
      kind: 'cut-payload' as const,
      req: { ...req, type: CMD.Write, length },
      keep: keep % length,
    })),
  fc
    .record({ req: requestArb, magic: fc.nat({ max: 2 ** 32 - 1 }).filter((m) => m !== REQUEST_MAGIC) })
    .map((e) => ({ kind: 'bad-magic' as const, ...e })),
  fc
    .record({ req: requestArb, length: fc.integer({ min: MAX_REQUEST_BYTES + 1, max: 2 ** 32 - 1 }) })
    .map(({ req, length }) => ({ kind: 'oversize-write' as const, req: { ...req, type: CMD.Write, length } })),
);

const sessionArb: fc.Arbitrary<Session> = fc.record({
  clientFlags: fc.constantFrom(FLAG_FIXED_NEWSTYLE, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES),
  // A stray GO that names a real export ends the handshake; only bogus data may ride as noise.
  noise: fc.array(noiseArb, { maxLength: 3 }).map((ns) => ns.filter((n) => !(n.opt === OPT.Go && isRealGo(n.data)))),
  finish: fc.constantFrom('export-name' as const, 'go' as const),
  requests: fc.array(requestArb, { maxLength: 16 }),
  depths: fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 4 }),
  ending: endingArb,
});

/** Whether option data would select an export of the server (a GO that would succeed). */
function isRealGo(data: Uint8Array): boolean {
  const b = Buffer.from(data);
  if (b.length < 6) return false;
  const n = b.readUInt32BE(0);
  if (n > b.length - 6) return false;
  const name = b.toString('utf8', 4, 4 + n);
  return exportsUnderTest.includes(name) || name === '';
}

/** What a conforming server must answer: success, an error, or either (flags and lengths the spec leaves open). */
type Expected = 'ok' | 'error' | 'either';

function expected(r: Omit<WireRequest, 'cookie'>): Expected {
  const known = (r.flags & ~(FUA | NO_HOLE)) === 0;
  const inRange = r.offset + BigInt(r.length) <= S;
  switch (r.type) {
    case CMD.Read:
    case CMD.Write:
    case CMD.WriteZeroes:
    case CMD.Trim:
      if (!inRange) return 'error';
      return known && r.length > 0 ? 'ok' : 'either';
    case CMD.Flush:
      return known && r.offset === 0n && r.length === 0 ? 'ok' : 'either';
    case CMD.Cache:
      return 'either';
    default:
      return 'error';
  }
}

const modifies = (r: Omit<WireRequest, 'cookie'>) => r.type === CMD.Write || r.type === CMD.WriteZeroes;

function payloadOf(r: GenRequest): Buffer {
  const b = Buffer.alloc(r.length);
  for (let i = 0; i < b.length; i++) b[i] = (r.fill + i * 7) & 0xff;
  return b;
}

/** Splits requests into pipelined batches in which no two modifying requests touch the same byte. */
function batches(requests: GenRequest[], depths: number[]): GenRequest[][] {
  const out: GenRequest[][] = [];
  let cur: GenRequest[] = [];
  let written: [bigint, bigint][] = [];
  for (const r of requests) {
    const end = r.offset + BigInt(r.length);
    const overlaps = modifies(r) && written.some(([a, b]) => r.offset < b && a < end);
    if (cur.length >= depths[out.length % depths.length]! || overlaps) {
      out.push(cur);
      cur = [];
      written = [];
    }
    cur.push(r);
    if (modifies(r) && end <= S) written.push([r.offset, end]);
  }
  if (cur.length) out.push(cur);
  return out;
}

/** A client that behaves, kept open for the whole run: the "other clients" the server must keep serving. */
class Checker {
  private cookie = 0n;
  private constructor(private readonly c: WireClient) {}

  static async open(name: string): Promise<Checker> {
    const c = await WireClient.connect(dp.nbdPort);
    await c.read(18);
    c.write(u32(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    c.write(option(OPT.Go, infoData(name)));
    const replies = await c.optionReplies(OPT.Go);
    if (replies.at(-1)?.type !== REP_ACK) throw new Error(`checker could not open ${name}`);
    return new Checker(c);
  }

  /** The whole volume as the server serves it now. */
  async volume(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let off = 0; off < SIZE; off += 256 * 1024) {
      const cookie = ++this.cookie;
      this.c.write(requestHeader({ flags: 0, type: CMD.Read, cookie, offset: BigInt(off), length: 256 * 1024 }));
      const h = await this.c.read(16);
      expect(h.readUInt32BE(0)).toBe(SIMPLE_REPLY_MAGIC);
      expect(h.readUInt32BE(4)).toBe(0);
      expect(h.readBigUInt64BE(8)).toBe(cookie);
      parts.push(await this.c.read(256 * 1024));
    }
    return Buffer.concat(parts);
  }

  close(): void {
    this.c.destroy();
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/**
 * Runs one session on `name` against `model` (the bytes the volume must hold), updating the model
 * with every acknowledged write. Throws, with the request at fault, on any departure from the invariants.
 */
async function runSession(name: string, s: Session, model: Buffer): Promise<void> {
  const c = await WireClient.connect(dp.nbdPort);
  try {
    const greeting = await c.read(18);
    expect(greeting.readBigUInt64BE(0)).toBe(0x4e42444d41474943n);
    c.write(u32(s.clientFlags));
    for (const n of s.noise) {
      c.write(option(n.opt, Buffer.from(n.data)));
      const replies = await c.optionReplies(n.opt);
      // A stray option never selects an export: its last reply is an error, or the ACK of LIST/INFO.
      const last = replies.at(-1)!;
      if (last.type === REP_ACK) expect([OPT.List, OPT.Info]).toContain(n.opt);
      else expect(last.type).toBeGreaterThanOrEqual(REP_ERROR_BIT);
    }
    if (s.finish === 'export-name') {
      c.write(option(OPT.ExportName, Buffer.from(name)));
      const reply = await c.read(10 + ((s.clientFlags & FLAG_NO_ZEROES) !== 0 ? 0 : 124));
      expect(reply.readBigUInt64BE(0)).toBe(S);
    } else {
      c.write(option(OPT.Go, infoData(name)));
      const replies = await c.optionReplies(OPT.Go);
      expect(replies.at(-1)!.type).toBe(REP_ACK);
    }

    let cookie = 0n;
    for (const batch of batches(s.requests, s.depths)) {
      const before = Buffer.from(model);
      const sent = new Map<bigint, GenRequest & { cookie: bigint }>();
      for (const g of batch) {
        const r = { ...g, cookie: ++cookie };
        sent.set(r.cookie, r);
        c.write(r.type === CMD.Write ? Buffer.concat([requestHeader(r), payloadOf(r)]) : requestHeader(r));
      }
      const reads: { r: WireRequest; data: Buffer }[] = [];
      for (let i = 0; i < batch.length; i++) {
        const h = await c.read(16);
        expect(h.readUInt32BE(0)).toBe(SIMPLE_REPLY_MAGIC);
        const r = sent.get(h.readBigUInt64BE(8));
        if (!r) throw new Error(`a reply with cookie ${h.readBigUInt64BE(8)}, which no outstanding request has`);
        sent.delete(r.cookie);
        const error = h.readUInt32BE(4);
        const want = expected(r);
        const what = `${show(r)} answered ${error}`;
        if (want === 'ok' && error !== 0) throw new Error(`${what}; it is valid and must succeed`);
        if (want === 'error' && error === 0) throw new Error(`${what}; it must fail (nothing may change)`);
        if (error !== 0) continue;
        if (r.type === CMD.Read) reads.push({ r, data: await c.read(r.length) });
        else if (r.type === CMD.Write) payloadOf(r).copy(model, Number(r.offset));
        else if (r.type === CMD.WriteZeroes) model.fill(0, Number(r.offset), Number(r.offset) + r.length);
      }
      // Requests of one batch run concurrently: a read sees each byte as before or after the batch.
      for (const { r, data } of reads) {
        const off = Number(r.offset);
        for (let i = 0; i < r.length; i++) {
          const b = data[i];
          if (b !== before[off + i] && b !== model[off + i])
            throw new Error(
              `${show(r)} returned byte ${b} at ${off + i}; the volume held ${before[off + i]} (then ${model[off + i]})`,
            );
        }
      }
    }
    await end(c, s.ending, ++cookie);
  } finally {
    c.destroy();
  }
}

async function end(c: WireClient, e: Ending, cookie: bigint): Promise<void> {
  switch (e.kind) {
    case 'drop':
      return;
    case 'disc':
      c.write(requestHeader({ ...e.req, cookie }));
      expect((await c.closedByServer()).length).toBe(0);
      return;
    case 'cut-header':
      c.write(requestHeader({ ...e.req, cookie }).subarray(0, e.keep));
      return;
    case 'cut-payload':
      c.write(Buffer.concat([requestHeader({ ...e.req, cookie }), payloadOf(e.req).subarray(0, e.keep)]));
      return;
    case 'bad-magic':
      c.write(requestHeader({ ...e.req, cookie }, e.magic));
      expect((await c.closedByServer()).length).toBe(0);
      return;
    case 'oversize-write':
      c.write(requestHeader({ ...e.req, cookie }));
      expect((await c.closedByServer()).length).toBe(0);
      return;
  }
}

function show(r: WireRequest): string {
  return `request type ${r.type} flags 0x${r.flags.toString(16)} at ${r.offset}+${r.length}`;
}

/** Log lines that would show an internal error escaping into the server's reasoning. */
const INTERNAL = /RangeError|TypeError|(?<![A-Z_])ERR_[A-Z_]+|out of range|Cannot read|undefined/;

describe('the NBD server under mutated sessions', () => {
  it('answers every request, changes only acknowledged writes, and keeps serving other clients', async () => {
    const checkers = await Promise.all(exportsUnderTest.map((n) => Checker.open(n)));
    const models: Buffer[] = [];
    let stale = true;
    try {
      await fuzz(
        'nbd-server',
        fc.asyncProperty(fc.tuple(sessionArb, sessionArb), async (pair) => {
          logs.length = 0;
          // A failed run (and fast-check's shrinking after it) leaves the model behind the
          // acknowledged writes of the batch it stopped in: start again from what the server holds.
          if (stale) for (const [i, checker] of checkers.entries()) models[i] = await checker.volume();
          stale = true;
          await Promise.all(pair.map((s, i) => runSession(exportsUnderTest[i]!, s, models[i]!)));
          for (const [i, checker] of checkers.entries()) {
            const now = await checker.volume();
            if (!now.equals(models[i]!)) {
              let at = 0;
              while (now[at] === models[i]![at]) at++;
              throw new Error(`${exportsUnderTest[i]} differs from the acknowledged writes first at byte ${at}`);
            }
          }
          const bad = logs.find((l) => INTERNAL.test(l));
          if (bad) throw new Error(`an internal error reached the log: ${bad}`);
          stale = false;
        }),
        12_000,
      );
    } finally {
      for (const c of checkers) c.close();
    }
  });
});
