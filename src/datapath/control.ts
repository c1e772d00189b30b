/**
 * The datapath's control API: loopback HTTP with JSON bodies, each parsed with its zod schema.
 * The online-backup activities call it; a bad request is refused with its type and a message and
 * changes nothing. Every request must carry the token of the datapath's 0600 token file as
 * `Authorization: Bearer <token>`; one without it, or with another, is refused (401), logged, and
 * changes nothing (ADR 034). Routes: GET /v1/volumes, GET /v1/volumes/<export>, and POST
 * /v1/volumes/<export>/{enter-backup,base-copy,catch-up,finish,abort}.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BackupRefSchema, EnterBackupSchema, FinishSchema } from '../domain/datapath';
import { AccessDeniedError, ErrorType, InvalidInputError, KuraError, NotFoundError } from '../domain/errors';
import { parseWith } from '../domain/validate';
import { carriesToken } from './token';
import type { Volume } from './volume';

/** What the control server needs besides the volumes: the token requests must carry, and where refusals are logged. */
export interface ControlServerOptions {
  token: string;
  /** Named in a refusal, so the caller knows where the token is. */
  tokenFile: string;
  log?: (line: string) => void;
}

const STATUS_OF: Partial<Record<ErrorType, number>> = {
  [ErrorType.AccessDenied]: 401,
  [ErrorType.InvalidInput]: 400,
  [ErrorType.NotFound]: 404,
  [ErrorType.AlreadyRunning]: 409,
};

const MAX_BODY = 64 * 1024;

async function readBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new InvalidInputError(`request body over ${MAX_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  if (n === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new InvalidInputError('request body is not JSON');
  }
}

/** The request's target as a URL; one that is none is the client's mistake (400), not the server's. */
function requestUrl(target: string): URL {
  try {
    return new URL(target, 'http://localhost');
  } catch {
    throw new InvalidInputError(`the request target ${JSON.stringify(target)} is not a path`);
  }
}

/** One path segment, percent-decoded; a malformed escape is the client's mistake (400), not the server's. */
function decodeSegment(segment: string, pathname: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidInputError(`the path ${pathname} has a malformed percent-escape in "${segment}"`);
  }
}

/** Serves the control API for these volumes. */
export class ControlServer {
  private server: http.Server | null = null;

  constructor(
    private readonly volumes: Map<string, Volume>,
    private readonly opts: ControlServerOptions,
  ) {}

  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    const server = http.createServer((req, res) => void this.route(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private volume(name: string): Volume {
    const v = this.volumes.get(name);
    if (!v)
      throw new NotFoundError(
        `the datapath serves no volume "${name}"; it serves: ${[...this.volumes.keys()].join(', ') || 'none'} (datapath.volumes in kura.yaml)`,
        { volume: name },
      );
    return v;
  }

  /** Refuses a request without the token before anything of it is read or routed. */
  private authorize(req: http.IncomingMessage): void {
    if (carriesToken(req.headers.authorization, this.opts.token)) return;
    const why = req.headers.authorization === undefined ? 'no token' : 'a wrong token';
    this.opts.log?.(
      `control: refused ${req.method} ${JSON.stringify(req.url)} from ${req.socket.remoteAddress}:${req.socket.remotePort}: ${why}`,
    );
    throw new AccessDeniedError(
      `the datapath's control API needs the token of ${this.opts.tokenFile} as "Authorization: Bearer <token>"; the request had ${why}`,
      { tokenFile: this.opts.tokenFile },
    );
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      this.authorize(req);
      const url = requestUrl(req.url ?? '/');
      const parts = url.pathname
        .split('/')
        .filter(Boolean)
        .map((segment) => decodeSegment(segment, url.pathname));
      if (parts[0] !== 'v1' || parts[1] !== 'volumes')
        throw new NotFoundError(`no route ${req.method} ${url.pathname}`);
      if (req.method === 'GET' && parts.length === 2)
        return send(res, 200, { volumes: [...this.volumes.values()].map((v) => v.status()) });
      const v = this.volume(parts[2] ?? '');
      if (req.method === 'GET' && parts.length === 3) return send(res, 200, v.status());
      if (req.method !== 'POST' || parts.length !== 4)
        throw new NotFoundError(`no route ${req.method} ${url.pathname}`);
      const body = await readBody(req);
      switch (parts[3]) {
        case 'enter-backup': {
          const b = parseWith(EnterBackupSchema, body, 'enter-backup request');
          return send(res, 200, await v.enterBackup(b.backupId, b.image));
        }
        case 'base-copy':
          return send(res, 200, v.startBaseCopy(parseWith(BackupRefSchema, body, 'base-copy request').backupId));
        case 'catch-up':
          return send(res, 200, await v.catchUpRound(parseWith(BackupRefSchema, body, 'catch-up request').backupId));
        case 'finish': {
          const b = parseWith(FinishSchema, body, 'finish request');
          return send(res, 200, await v.finish(b.backupId, b.maxEtaMs));
        }
        case 'abort':
          return send(res, 200, await v.abort(parseWith(BackupRefSchema, body, 'abort request').backupId));
        default:
          throw new NotFoundError(`no route POST ${url.pathname}`);
      }
    } catch (err) {
      const type = err instanceof KuraError ? err.type : ErrorType.DeviceFault;
      const message = err instanceof Error ? err.message : String(err);
      send(res, STATUS_OF[type] ?? 500, { error: { type, message } });
    }
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(status === 401 ? { 'www-authenticate': 'Bearer realm="kura-datapath"' } : {}),
  });
  res.end(text);
}
