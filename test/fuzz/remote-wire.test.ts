/**
 * Fuzzing the remote-copy receiver's wire: authenticated sessions that carry the shipper's own
 * batches (from a real group journal, in a shuffled order, some twice) among mutated frames —
 * wrong kinds, cut-short and over-long frames, lengths past the frame cap, JSON headers with bad
 * seqs, offsets, lengths, volumes and groups, writes past the volume's end, garbage — and
 * unauthenticated connections carrying the very next write. The receiver must close each
 * connection that sent a bad frame, take nothing from a bad frame (not even its valid writes),
 * apply exactly the valid batches' writes in seq order, change no byte outside them, log no
 * internal error, and afterwards still serve the real shipper. The replica lives across runs (each
 * run starts from what it holds), so after a failure the shrunk counterexample may lean on what the
 * failing run left there: replay the printed seed to see the first failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { GroupJournal } from '../../src/datapath/group-journal';
import { Receiver } from '../../src/remote/receiver';
import type { Replica } from '../../src/remote/replica';
import { ship } from '../../src/remote/shipper';
import { FrameKind, MAX_FRAME_BYTES, batchFrame } from '../../src/remote/wire';
import { makeReplica, openRaw, until, type RawLink } from '../remote/raw-link';
import { fuzz } from './fuzz';

const SIZE = 64 * 1024;
const GROUP = 'db';
/** The fill of every write a bad frame carries: seeing it in the volume means a bad frame was taken. */
const BAD_FILL = 0xee;
/** What a refusal must never say: that the receiver itself broke (zod may say a field was "undefined"). */
const INTERNAL = /RangeError|TypeError|(?<![A-Z_])ERR_[A-Z_]+|out of range|Cannot read|is not a function/;

let dir: string;
let volumeFile: string;
let replica: Replica;
let journal: GroupJournal;
let receiver: Receiver;
let port: number;
const secret = randomBytes(32);
const logs: string[] = [];

beforeAll(async () => {
  ({ dir, volumeFile, replica } = makeReplica(GROUP, SIZE));
  journal = new GroupJournal(GROUP, path.join(dir, 'journal.db'));
  receiver = new Receiver({ replica, secret, port: 0, batch: 16, log: (l) => logs.push(l) });
  port = await receiver.listen();
});

afterAll(async () => {
  await receiver?.close();
  replica?.close();
  journal?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface WriteSpec {
  offset: number;
  length: number;
  zero: boolean;
  fill: number;
}

const writeArb: fc.Arbitrary<WriteSpec> = fc
  .record({
    offset: fc.nat(SIZE - 1),
    length: fc.integer({ min: 1, max: 4096 }),
    zero: fc.boolean(),
    fill: fc.integer({ min: 1, max: 0xed }),
  })
  .map((w) => ({ ...w, length: Math.min(w.length, SIZE - w.offset) }));

const HEADER_FAULTS = [
  'seq-zero',
  'seq-negative',
  'seq-fraction',
  'seq-string',
  'seq-unsafe',
  'seq-missing',
  'offset-negative',
  'offset-fraction',
  'offset-past-end',
  'offset-unsafe',
  'length-negative',
  'length-past-end',
  'length-over-data',
  'length-under-data',
  'volume-other',
  'volume-empty',
  'group-other',
  'writes-empty',
  'at-negative',
  'zero-string',
  'not-json',
  'json-array',
  'header-length-past-frame',
] as const;
type HeaderFault = (typeof HEADER_FAULTS)[number];

type Mutation =
  | { m: 'kind'; kind: number }
  | { m: 'truncate'; frac: number }
  | { m: 'short-length'; frac: number }
  | { m: 'long-length'; extra: number }
  | { m: 'over-cap' }
  | { m: 'header'; fault: HeaderFault }
  | { m: 'garbage'; bytes: Uint8Array; kind: number }
  | { m: 'unauthenticated' };

const fracArb = fc.double({ min: 0, max: 0.999, noNaN: true });
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ m: fc.constant('kind' as const), kind: fc.integer({ min: 0, max: 255 }).filter((k) => k !== 1) }),
  fc.record({ m: fc.constant('truncate' as const), frac: fracArb }),
  fc.record({ m: fc.constant('short-length' as const), frac: fracArb }),
  fc.record({ m: fc.constant('long-length' as const), extra: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ m: fc.constant('over-cap' as const) }),
  fc.record({ m: fc.constant('header' as const), fault: fc.constantFrom(...HEADER_FAULTS) }),
  fc.record({
    m: fc.constant('garbage' as const),
    bytes: fc.uint8Array({ minLength: 0, maxLength: 64 }),
    kind: fc.integer({ min: 0, max: 255 }).filter((k) => k !== FrameKind.Batch),
  }),
  fc.record({ m: fc.constant('unauthenticated' as const) }),
);

const sessionArb = fc.record({
  batches: fc.array(fc.array(writeArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }),
  /** Sort keys: the order the batches are sent in. */
  order: fc.array(fc.nat(), { minLength: 4, maxLength: 4 }),
  resend: fc.boolean(),
  /** Every other batch goes on a second authenticated connection, interleaved with the first. */
  split: fc.boolean(),
  mutations: fc.array(fc.record({ at: fc.nat(8), mutation: mutationArb, bad: writeArb }), { maxLength: 4 }),
});
type Session = typeof sessionArb extends fc.Arbitrary<infer T> ? T : never;

/** A frame of raw parts: u32 length of what follows, u8 kind, body. */
function rawFrame(kind: number, body: Buffer, length = body.length + 1): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32LE(length, 0);
  head.writeUInt8(kind, 4);
  return Buffer.concat([head, body]);
}

/** A batch body of a JSON header (as text) and data bytes. */
function batchBody(header: string, data: Buffer[]): Buffer {
  const h = Buffer.from(header);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(h.length, 0);
  return Buffer.concat([len, h, ...data]);
}

/**
 * A frame the receiver must refuse whole. Its first write is a valid one of the next seq, so a
 * receiver that took part of it would apply BAD_FILL bytes.
 */
function badFrame(mutation: Exclude<Mutation, { m: 'unauthenticated' }>, next: number, w: WriteSpec): Buffer {
  const good = { seq: next, at: Date.now(), volume: 'a/v', offset: w.offset, length: w.length, zero: false };
  const goodData = Buffer.alloc(w.length, BAD_FILL);
  const valid = batchFrame(GROUP, [{ ...good, data: goodData }]);
  switch (mutation.m) {
    case 'kind': {
      const f = Buffer.from(valid);
      f.writeUInt8(mutation.kind, 4);
      return f;
    }
    case 'truncate':
      return valid.subarray(0, Math.floor(mutation.frac * valid.length));
    case 'short-length': {
      const f = Buffer.from(valid);
      f.writeUInt32LE(Math.floor(mutation.frac * (valid.length - 4)), 0);
      return f;
    }
    case 'long-length': {
      const f = Buffer.concat([valid, Buffer.alloc(mutation.extra, BAD_FILL)]);
      f.writeUInt32LE(valid.length - 4 + mutation.extra, 0);
      return f;
    }
    case 'over-cap':
      return rawFrame(FrameKind.Batch, valid.subarray(5), MAX_FRAME_BYTES + 1);
    case 'garbage':
      return rawFrame(mutation.kind, Buffer.from(mutation.bytes));
    case 'header':
      return headerFault(mutation.fault, good, goodData);
  }
}

function headerFault(fault: HeaderFault, good: Record<string, unknown> & { length: number }, data: Buffer): Buffer {
  const second: Record<string, unknown> = { ...good, seq: (good.seq as number) + 1 };
  let group = GROUP;
  let writes: unknown = [good, second];
  let datas = [data, data];
  let text: string | null = null;
  switch (fault) {
    case 'seq-zero':
      second.seq = 0;
      break;
    case 'seq-negative':
      second.seq = -1;
      break;
    case 'seq-fraction':
      second.seq = 1.5;
      break;
    case 'seq-string':
      second.seq = String(second.seq);
      break;
    case 'seq-unsafe':
      second.seq = 2 ** 60;
      break;
    case 'seq-missing':
      delete second.seq;
      break;
    case 'offset-negative':
      second.offset = -1;
      break;
    case 'offset-fraction':
      second.offset = 0.5;
      break;
    case 'offset-past-end':
      second.offset = SIZE - good.length + 1;
      break;
    case 'offset-unsafe':
      second.offset = 2 ** 53 + 2;
      break;
    case 'length-negative':
      second.length = -1;
      break;
    case 'length-past-end':
      Object.assign(second, { offset: 0, length: SIZE + 1, zero: true });
      datas = [data];
      break;
    case 'length-over-data':
      second.length = good.length + 1;
      break;
    case 'length-under-data':
      second.length = good.length - 1;
      break;
    case 'volume-other':
      second.volume = 'b/w';
      break;
    case 'volume-empty':
      second.volume = '';
      break;
    case 'group-other':
      group = 'other';
      break;
    case 'writes-empty':
      writes = [];
      datas = [];
      break;
    case 'at-negative':
      second.at = -5;
      break;
    case 'zero-string':
      second.zero = 'yes';
      break;
    case 'not-json':
      text = '{"group": "db", "writes": [';
      break;
    case 'json-array':
      text = '[1, 2]';
      break;
    case 'header-length-past-frame': {
      const body = batchBody(JSON.stringify({ group, writes }), datas);
      body.writeUInt32LE(body.length + 10, 0);
      return rawFrame(FrameKind.Batch, body);
    }
  }
  return rawFrame(FrameKind.Batch, batchBody(text ?? JSON.stringify({ group, writes }), datas));
}

/** Applies writes to a copy of the volume as the replica must. */
function applyTo(model: Buffer, specs: WriteSpec[]): void {
  for (const w of specs) model.fill(w.zero ? 0 : w.fill, w.offset, w.offset + w.length);
}

async function settle(target: number): Promise<void> {
  if (!(await until(() => replica.state().applied >= target && replica.state().intent === null, 3000)))
    throw new Error(`the replica applied ${replica.state().applied}, not ${target}, within 3 s`);
  // An apply pass may still be between its commit and its end.
  await new Promise((r) => setTimeout(r, 5));
}

/** Sends the journal's writes the replica lacks (a run cut short by a failure leaves some). */
async function catchUp(): Promise<void> {
  const applied = replica.state().applied;
  if (applied >= journal.lastSeq) return;
  const link = await openRaw(port, { secret, group: GROUP });
  link.send(batchFrame(GROUP, journal.read(applied, 10_000)));
  await settle(journal.lastSeq);
  await link.end();
}

async function runSession(s: Session): Promise<void> {
  await catchUp();
  const base = replica.state().applied;
  const model = readFileSync(volumeFile);
  const logFrom = logs.length;
  // The shipper's own frames: the writes go through the journal, as the datapath puts them there.
  const frames: Buffer[] = [];
  for (const batch of s.batches) {
    const first = journal.lastSeq;
    for (const w of batch)
      if (w.zero) journal.appendZeroes('a/v', w.offset, w.length);
      else journal.append('a/v', w.offset, Buffer.alloc(w.length, w.fill));
    frames.push(batchFrame(GROUP, journal.read(first, batch.length)));
    applyTo(model, batch);
  }
  const total = journal.lastSeq - base;
  const order = frames.map((f, i) => ({ f, k: s.order[i] ?? 0 })).sort((a, b) => a.k - b.k);
  const sends = order.map((o) => o.f);
  if (s.resend && sends[0]) sends.push(sends[0]);

  let link: RawLink = await openRaw(port, { secret, group: GROUP });
  const second = s.split ? await openRaw(port, { secret, group: GROUP }) : null;
  const mutations = [...s.mutations].sort((a, b) => a.at - b.at);
  for (let i = 0; i <= sends.length; i++) {
    for (const { at, mutation, bad } of mutations) {
      if (Math.min(at, sends.length) !== i) continue;
      if (mutation.m === 'unauthenticated') {
        const stranger = await openRaw(port);
        stranger.send(batchFrame(GROUP, [{ ...writeOf(bad, base + 1), data: Buffer.alloc(bad.length, BAD_FILL) }]));
        if (!(await until(() => stranger.isClosed(), 1500)))
          throw new Error('an unauthenticated connection that sent a batch was not closed');
        continue;
      }
      const f = badFrame(mutation, base + 1, bad);
      link.send(f);
      const complete = f.length >= 4 && f.length >= 4 + f.readUInt32LE(0);
      const overCap = f.length >= 4 && f.readUInt32LE(0) > MAX_FRAME_BYTES;
      if (complete || overCap) {
        if (!(await until(() => link.isClosed(), 1500)))
          throw new Error(`a connection that sent a bad frame (${JSON.stringify(mutation)}) was not closed`);
      } else await link.finish();
      link = await openRaw(port, { secret, group: GROUP });
    }
    const f = sends[i];
    if (f) (second && i % 2 === 1 ? second : link).send(f);
  }
  await settle(base + total);
  await link.end();
  await second?.end();

  const st = replica.state();
  expect(st.applied).toBe(base + total);
  expect(st.inbox).toBe(0);
  expect(receiver.error).toBeNull();
  const volume = readFileSync(volumeFile);
  if (!volume.equals(model)) {
    let at = 0;
    while (volume[at] === model[at]) at++;
    throw new Error(`the remote volume differs from the valid batches' writes first at byte ${at}`);
  }
  const bad = logs.slice(logFrom).find((l) => INTERNAL.test(l));
  if (bad) throw new Error(`an internal error reached the log: ${bad}`);
}

function writeOf(w: WriteSpec, seq: number) {
  return { seq, at: Date.now(), volume: 'a/v', offset: w.offset, length: w.length };
}

describe('the remote-copy receiver under mutated sessions', () => {
  it('takes only valid frames, changes only their ranges, and keeps serving the shipper', async () => {
    await fuzz('remote-wire', fc.asyncProperty(sessionArb, runSession), 6_000);

    // The real shipper, after all that, ships what the journal holds next.
    await catchUp();
    journal.ack(replica.state().applied);
    const model = readFileSync(volumeFile);
    for (let i = 0; i < 8; i++) {
      const b = Buffer.alloc(4096, 0x30 + i);
      journal.append('a/v', i * 8192, b);
      b.copy(model, i * 8192);
    }
    const stop = new AbortController();
    const shipping = ship({
      journal,
      receiverPort: port,
      secret,
      wan: { bandwidth: 0, latency: 0 },
      faultsFile: path.join(dir, 'wan.json'),
      durationMs: 15_000,
      batchEntries: 3,
      resendAfterMs: 300,
      signal: stop.signal,
    });
    expect(await until(() => journal.acked === journal.lastSeq, 10_000)).toBe(true);
    stop.abort();
    await shipping;
    expect(readFileSync(volumeFile).equals(model)).toBe(true);
    expect(replica.state()).toMatchObject({ applied: journal.lastSeq, inbox: 0 });
  });
});

/** Frames that once got past the receiver, each replayed on every run. */
describe('the remote-copy receiver: regressions', () => {
  const one: WriteSpec = { offset: 100, length: 300, zero: false, fill: 7 };
  const session = (mutation: Mutation): Session => ({
    batches: [[one], [{ ...one, offset: 4000 }]],
    order: [1, 0, 0, 0],
    resend: true,
    split: false,
    mutations: [{ at: 1, mutation, bad: { offset: SIZE - 10, length: 10, zero: false, fill: 1 } }],
  });
  it.each<[string, Mutation]>([
    // Taken into the inbox, then written past the end of the remote volume (or failing every apply pass).
    ['a zero write past the volume end', { m: 'header', fault: 'length-past-end' }],
    ['a write past the volume end', { m: 'header', fault: 'offset-past-end' }],
    // Applied to this group though the header named another.
    ['a batch of another group', { m: 'header', fault: 'group-other' }],
    // Read out of range (a RangeError in the log) before the frame was refused.
    ['a header length past the frame', { m: 'header', fault: 'header-length-past-frame' }],
    ['a frame of no kind byte', { m: 'short-length', frac: 0 }],
    ['a batch without the proof', { m: 'unauthenticated' }],
  ])('refuses %s and keeps serving', async (_what, mutation) => {
    await runSession(session(mutation));
  });
});
