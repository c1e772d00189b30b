/**
 * The codec server of the Temporal Web UI: `POST /encode` and `POST /decode` take and answer
 * `{ "payloads": [{ "metadata": { key: base64 }, "data": base64 }] }` (protobuf JSON, as the UI
 * sends it) and run Kura's payload codecs, so a person with access to this server, and only they,
 * reads decrypted inputs, results and failures in the UI. CORS admits the UI's origins with the
 * headers the UI sends (`X-Namespace`, `Authorization`); a bearer token can be required.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';
import { KeyUnavailableError, KuraError } from '../domain/errors';
import { parseWith } from '../domain/validate';

export interface CodecServerOptions {
  codecs: PayloadCodec[];
  port: number;
  /** Loopback unless told otherwise: the server hands out plaintext. */
  host?: string;
  /** Browser origins allowed to call it (the Web UI's). */
  origins: string[];
  /** When set, every encode or decode needs `Authorization: Bearer <token>`. */
  token?: string;
}

export interface CodecServer {
  url: string;
  close(): Promise<void>;
}

/** The most a request body may hold: a history page of payloads, not an upload. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

const JsonPayloadSchema = z.object({
  metadata: z.record(z.string(), z.string()).nullish(),
  data: z.string().nullish(),
});
const PayloadsBodySchema = z.object({ payloads: z.array(JsonPayloadSchema) });

/** Starts the codec server; resolves once it listens. */
export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const server: Server = createServer((req, res) => {
    handle(req, res, opts).catch((err: unknown) => answer(res, 500, { error: describe(err) }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: CodecServerOptions): Promise<void> {
  const origin = req.headers.origin;
  if (origin !== undefined && opts.origins.includes(origin)) {
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Access-Control-Allow-Credentials', 'true');
    res.setHeader('Vary', 'Origin');
  }
  if (req.method === 'OPTIONS') {
    res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
    res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
    res.setHeader('Access-Control-Max-Age', '600');
    res.writeHead(origin !== undefined && !opts.origins.includes(origin) ? 403 : 204).end();
    return;
  }
  const route = /\/(encode|decode)\/?$/.exec(new URL(req.url ?? '/', 'http://codec').pathname)?.[1];
  if (req.method !== 'POST' || route === undefined) {
    answer(res, 404, { error: { type: 'NotFound', message: 'POST /encode or /decode' } });
    return;
  }
  if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
    answer(res, 401, { error: { type: 'Unauthorized', message: 'a bearer token is required' } });
    return;
  }
  let body: z.infer<typeof PayloadsBodySchema>;
  try {
    body = parseWith(PayloadsBodySchema, JSON.parse(await readBody(req)), `${route} request`);
  } catch (err) {
    answer(res, 400, { error: describe(err) });
    return;
  }
  let payloads = body.payloads.map(fromJson);
  try {
    if (route === 'encode') for (const c of opts.codecs) payloads = await c.encode(payloads);
    else for (const c of [...opts.codecs].reverse()) payloads = await c.decode(payloads);
  } catch (err) {
    // A payload under a key this server lacks: the UI shows the message, which names the key.
    answer(res, err instanceof KuraError ? 422 : 500, { error: describe(err) });
    return;
  }
  answer(res, 200, { payloads: payloads.map(toJson) });
}

function describe(err: unknown): { type: string; message: string; keyId?: string } {
  if (err instanceof KeyUnavailableError) return { type: err.type, message: err.message, keyId: err.keyId };
  if (err instanceof KuraError) return { type: err.type, message: err.message };
  return { type: 'Error', message: err instanceof Error ? err.message : String(err) };
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Error(`the request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function fromJson(p: z.infer<typeof JsonPayloadSchema>): Payload {
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) metadata[k] = new Uint8Array(Buffer.from(v, 'base64'));
  return { metadata, data: new Uint8Array(Buffer.from(p.data ?? '', 'base64')) };
}

function toJson(p: Payload): { metadata: Record<string, string>; data: string } {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) if (v) metadata[k] = Buffer.from(v).toString('base64');
  return { metadata, data: Buffer.from(p.data ?? new Uint8Array()).toString('base64') };
}
