/**
 * Fuzzing the datapath's control API: random methods, paths (real routes with random exports and
 * actions, raw percent-escapes, random text) and bodies (random JSON, random bytes, objects shaped
 * almost like a request), most with the datapath's token, some without it or with another. Every
 * request that is not a valid one is refused with a 4xx status and a JSON error naming its type and
 * a message — every one without the token with 401 AccessDenied, even one that would otherwise
 * change something — and nothing changes: neither the volumes' status (one in passthrough, one in
 * backup mode) nor a file under Kura's home.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as path from 'node:path';
import fc from 'fast-check';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { BackupRefSchema, EnterBackupSchema, FinishSchema } from '../../src/domain/datapath';
import { makeLab, treeFingerprint, type TestLab } from '../support/harness';
import { freePort } from '../support/nbd';
import { fuzz } from './fuzz';

const BACKUP_ID = 'fuzz-backup';
const ACTIONS = ['enter-backup', 'base-copy', 'catch-up', 'finish', 'abort'] as const;

let lab: TestLab;
let dp: DatapathService;
/** [passthrough export, backup-mode export] */
let names: [string, string];

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({
    vms: 2,
    dataVolumeSize: 1024 * 1024,
    edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort }),
  });
  dp = await startDatapath(lab.loaded, lab.paths);
  const vms = lab.loaded.config.sites[0]!.vms;
  names = [vms[0]!.dataVolume, vms[1]!.dataVolume];
  await dp.volumes.get(names[1])!.enterBackup(BACKUP_ID, path.join(lab.dir, 'fuzz-image.img'));
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

interface ControlRequest {
  method: string;
  /** The raw request target, sent as is (it may not even be a valid URL path). */
  target: string;
  body: Buffer | null;
  /** The body's JSON value when it is JSON, for deciding whether the request is a valid one. */
  json?: unknown;
  /** How the request authorizes itself: with the datapath's token, or one of the ways of not having it. */
  auth: Auth;
}

const AUTHS = ['token', 'none', 'other-token', 'no-scheme', 'basic', 'token-prefix', 'token-and-more'] as const;
type Auth = (typeof AUTHS)[number];

/** The Authorization header of a way of authorizing (none: no header). */
function authorization(auth: Auth): string | undefined {
  switch (auth) {
    case 'token':
      return `Bearer ${dp.token}`;
    case 'none':
      return undefined;
    case 'other-token':
      return `Bearer ${'0'.repeat(dp.token.length)}`;
    case 'no-scheme':
      return dp.token;
    case 'basic':
      return `Basic ${Buffer.from(`kura:${dp.token}`).toString('base64')}`;
    case 'token-prefix':
      return `Bearer ${dp.token.slice(0, -1)}`;
    case 'token-and-more':
      return `Bearer ${dp.token}0`;
  }
}

/** A path segment: a real export (escaped or not), or anything, escaped or raw. */
const segmentArb = (): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom('0', '1').map((i) => encodeURIComponent(names[Number(i)]!)),
    fc.constantFrom('0', '1').map((i) => names[Number(i)]!),
    fc.string({ maxLength: 30 }).map(encodeURIComponent),
    fc.string({ unit: 'binary', maxLength: 20 }).map(encodeURIComponent),
    fc.stringMatching(/^[%a-zA-Z0-9./?#&=+-]{0,20}$/),
    fc.constantFrom('%', '%zz', '%E0%A4%A', '%C0%80', '..', '%2F', '%00', ''),
  );

const targetArb: fc.Arbitrary<string> = fc.oneof(
  fc.constant('/v1/volumes'),
  segmentArb().map((v) => `/v1/volumes/${v}`),
  fc.tuple(segmentArb(), fc.oneof(fc.constantFrom(...ACTIONS), segmentArb())).map(([v, a]) => `/v1/volumes/${v}/${a}`),
  fc.array(segmentArb(), { maxLength: 6 }).map((parts) => `/${parts.join('/')}`),
  fc.webPath().map((p) => p || '/'),
  fc.constantFrom('//', '//[', '/\\', '/v1/volumes/%', '*'),
  fc
    .tuple(segmentArb(), fc.constantFrom(...ACTIONS), fc.string({ maxLength: 20 }))
    .map(([v, a, q]) => `/v1/volumes/${v}/${a}?${encodeURIComponent(q)}`),
);

/** Objects shaped almost like a real request: the right keys, values of any kind. */
const nearValidArb: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    backupId: fc.oneof(fc.string({ maxLength: 20 }), fc.jsonValue(), fc.constant(BACKUP_ID)),
    image: fc.oneof(fc.string({ maxLength: 30 }), fc.jsonValue(), fc.constant('relative/image.img')),
    maxEtaMs: fc.oneof(fc.integer(), fc.double(), fc.jsonValue()),
  },
  { requiredKeys: [] },
);

const bodyArb: fc.Arbitrary<{ body: Buffer | null; json?: unknown }> = fc.oneof(
  fc.constant({ body: null }),
  fc.jsonValue().map((v) => ({ body: Buffer.from(JSON.stringify(v) ?? 'null'), json: v })),
  nearValidArb.map((v) => ({ body: Buffer.from(JSON.stringify(v)), json: v })),
  fc.uint8Array({ maxLength: 200 }).map((b) => ({ body: Buffer.from(b) })),
  fc.string({ maxLength: 100 }).map((s) => ({ body: Buffer.from(s) })),
  // Around the server's 64 KiB limit; a `{` repeated, so it is not JSON either way. Printed by its
  // size in a counterexample, not byte by byte.
  fc.integer({ min: 64 * 1024 - 10, max: 200 * 1024 }).map((n) => ({
    body: Object.assign(Buffer.alloc(n, 0x7b), { [fc.toStringMethod]: () => `Buffer.alloc(${n}, 0x7b)` }),
  })),
);

const requestArb: fc.Arbitrary<ControlRequest> = fc
  .record({
    method: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom('GET', 'POST') },
      { weight: 1, arbitrary: fc.constantFrom('PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS') },
    ),
    target: targetArb,
    body: bodyArb,
    auth: fc.oneof(
      { weight: 6, arbitrary: fc.constant<Auth>('token') },
      { weight: 1, arbitrary: fc.constantFrom(...AUTHS.filter((a) => a !== 'token')) },
    ),
  })
  .map(({ method, target, body, auth }) => ({ method, target, auth, ...body }));

interface Reply {
  status: number;
  text: string;
}

function send(r: ControlRequest): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: dp.controlPort,
        method: r.method,
        path: r.target,
        agent: false,
        headers: authorization(r.auth) === undefined ? {} : { authorization: authorization(r.auth) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${r.method} ${r.target} within 10 s`)));
    req.end(r.body ?? undefined);
  });
}

/** The route and the volume a request addresses, decoded as the server decodes them; null when it cannot be. */
function route(target: string): { parts: string[] } | null {
  try {
    const url = new URL(target, 'http://localhost');
    return { parts: url.pathname.split('/').filter(Boolean).map(decodeURIComponent) };
  } catch {
    return null;
  }
}

/**
 * Whether the request is a valid one: a read of the status, or an abort of a volume that is not
 * in backup mode (an abort is idempotent: it answers with the unchanged status). Those answer 200.
 * Undefined: a valid request that would change something (not generated on purpose; skipped).
 */
function validity(r: ControlRequest): 'valid' | 'invalid' | 'changes' | 'unauthorized' {
  // Without the token nothing is valid, not even a request that would change something.
  if (r.auth !== 'token') return 'unauthorized';
  const parsed = route(r.target);
  if (!parsed) return 'invalid';
  const { parts } = parsed;
  if (parts[0] !== 'v1' || parts[1] !== 'volumes') return 'invalid';
  if (r.method === 'GET' && parts.length === 2) return 'valid';
  const volume = names.indexOf(parts[2] as string);
  if (volume < 0) return 'invalid';
  if (r.method === 'GET' && parts.length === 3) return 'valid';
  if (r.method !== 'POST' || parts.length !== 4) return 'invalid';
  const body = r.body === null || r.body.length === 0 ? {} : r.json;
  if (r.body && r.body.length > 64 * 1024) return 'invalid';
  const ok = (s: { safeParse(v: unknown): { success: boolean; data?: unknown } }) => s.safeParse(body).success;
  const id = (body as { backupId?: unknown } | null)?.backupId;
  switch (parts[3]) {
    case 'enter-backup':
      return ok(EnterBackupSchema) ? 'changes' : 'invalid';
    case 'abort':
      if (!ok(BackupRefSchema)) return 'invalid';
      if (volume === 0) return 'valid';
      return id === BACKUP_ID ? 'changes' : 'invalid';
    case 'base-copy':
    case 'catch-up':
      return ok(BackupRefSchema) && volume === 1 && id === BACKUP_ID ? 'changes' : 'invalid';
    case 'finish':
      return ok(FinishSchema) && volume === 1 && id === BACKUP_ID ? 'changes' : 'invalid';
    default:
      return 'invalid';
  }
}

/** What must not change: both volumes' status (less the rates, which age) and every file under Kura's home. */
function snapshot(): string {
  const statuses = names.map((n) => {
    const { writeRate: _w, reflectRate: _r, ...rest } = dp.volumes.get(n)!.status();
    return rest;
  });
  return `${JSON.stringify(statuses)}\n${treeFingerprint(lab.paths.home)}`;
}

describe('the control API under random requests', () => {
  it('refuses every invalid request with a 4xx and a typed message, and changes nothing', async () => {
    const counts = { valid: 0, invalid: 0, unauthorized: 0 };
    await fuzz(
      'control-api',
      fc.asyncProperty(requestArb, async (r) => {
        const kind = validity(r);
        fc.pre(kind !== 'changes');
        const before = snapshot();
        const reply = await send(r);
        const where = `${r.method} ${r.target} (${r.body?.length ?? 0} body bytes)`;
        if (kind === 'unauthorized') {
          counts.unauthorized++;
          if (reply.status !== 401)
            throw new Error(`${where} without the token (${r.auth}): answered ${reply.status}, not 401: ${reply.text}`);
          if (r.method !== 'HEAD' && !reply.text.includes('"type":"AccessDenied"'))
            throw new Error(`${where} without the token (${r.auth}): the refusal is not AccessDenied: ${reply.text}`);
        } else if (kind === 'valid') {
          counts.valid++;
          if (reply.status !== 200)
            throw new Error(`${where}: a valid request answered ${reply.status}: ${reply.text}`);
        } else {
          counts.invalid++;
          if (reply.status < 400 || reply.status > 499)
            throw new Error(`${where}: answered ${reply.status}, not a 4xx: ${reply.text}`);
          if (r.method !== 'HEAD') {
            let parsed: unknown;
            try {
              parsed = JSON.parse(reply.text);
            } catch {
              throw new Error(`${where}: the refusal is not JSON: ${reply.text}`);
            }
            const e = (parsed as { error?: { type?: unknown; message?: unknown } }).error;
            if (typeof e?.type !== 'string' || typeof e.message !== 'string' || e.message.length === 0)
              throw new Error(`${where}: the refusal has no type and message: ${reply.text}`);
          }
        }
        const after = snapshot();
        if (after !== before) throw new Error(`${where} changed the datapath:\nbefore ${before}\nafter  ${after}`);
      }),
      8_000,
    );
    console.log(
      `control-api: ${counts.valid} valid requests answered 200, ${counts.invalid} invalid ones refused, ${counts.unauthorized} without the token refused 401`,
    );
    expect(counts.invalid).toBeGreaterThan(0);
    expect(counts.unauthorized).toBeGreaterThan(0);
  });
});

describe('requests the fuzzer found answered 500 (now refused as invalid input)', () => {
  /** The refusal of a request: status and the typed error of its body. */
  async function refusal(method: string, target: string): Promise<{ status: number; type: string; message: string }> {
    const reply = await send({ method, target, body: null, auth: 'token' });
    const { error } = JSON.parse(reply.text) as { error: { type: string; message: string } };
    return { status: reply.status, ...error };
  }

  it('refuses a path with a malformed percent-escape with 400 InvalidInput, naming the segment', async () => {
    const before = snapshot();
    expect(await refusal('GET', '/v1/volumes/%')).toEqual({
      status: 400,
      type: 'InvalidInput',
      message: 'the path /v1/volumes/% has a malformed percent-escape in "%"',
    });
    expect(await refusal('POST', '/v1/volumes/%E0%A4%A/abort')).toEqual({
      status: 400,
      type: 'InvalidInput',
      message: 'the path /v1/volumes/%E0%A4%A/abort has a malformed percent-escape in "%E0%A4%A"',
    });
    expect(snapshot()).toBe(before);
  });

  it('refuses a request target that is no path with 400 InvalidInput', async () => {
    expect(await refusal('GET', '//')).toEqual({
      status: 400,
      type: 'InvalidInput',
      message: 'the request target "//" is not a path',
    });
  });
});
