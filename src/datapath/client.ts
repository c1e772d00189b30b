/**
 * A typed client of the datapath's control API: every answer is parsed with its schema, and every
 * refusal comes back as the KuraError the service raised (its type decides whether a retry helps).
 * A service that does not answer is `Unavailable`, which activities retry — that is how an online
 * backup rides out a restart of the datapath.
 */
import type { ZodType } from 'zod';
import {
  FinishResultSchema,
  RoundResultSchema,
  VolumeStatusSchema,
  type FinishResult,
  type RoundResult,
  type VolumeStatus,
} from '../domain/datapath';
import { ErrorType, KuraError } from '../domain/errors';

const ERROR_TYPES = new Set<string>(Object.values(ErrorType));

export class DatapathClient {
  /**
   * `token` is the control API's token, or a function reading it (from the datapath's token file)
   * for each request, so a client outlives a restart of the datapath, which writes a new one.
   */
  constructor(
    readonly baseUrl: string,
    private readonly token: string | (() => string),
  ) {}

  private async call<T>(
    schema: ZodType<T>,
    method: 'GET' | 'POST',
    route: string,
    body?: unknown,
    timeoutMs = 600_000,
  ): Promise<T> {
    const res = await this.send(method, route, body, timeoutMs).then(async (first) => {
      // A datapath that restarted between reading the token and the request wrote a new one:
      // read it again, once, before taking the refusal for an answer.
      if (first.status !== 401 || typeof this.token === 'string') return first;
      return this.send(method, route, body, timeoutMs);
    });
    const json: unknown = await res.json().catch(() => null);
    if (!res.ok) {
      const e = (json as { error?: { type?: string; message?: string } } | null)?.error;
      const type = e?.type && ERROR_TYPES.has(e.type) ? (e.type as ErrorType) : ErrorType.DeviceFault;
      throw new KuraError(type, e?.message ?? `datapath answered ${res.status} to ${method} ${route}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      throw new KuraError(
        ErrorType.DeviceFault,
        `the datapath's answer to ${method} ${route} does not match the API: ${parsed.error.issues[0]?.message}`,
      );
    return parsed.data;
  }

  private async send(method: string, route: string, body: unknown, timeoutMs: number): Promise<Response> {
    const token = typeof this.token === 'string' ? this.token : this.token();
    try {
      return await fetch(`${this.baseUrl}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new KuraError(
        ErrorType.Unavailable,
        `the datapath does not answer at ${this.baseUrl} (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}); start it with \`kura datapath\``,
        { cause: err },
      );
    }
  }

  private route(volume: string, action?: string): string {
    return `/v1/volumes/${encodeURIComponent(volume)}${action ? `/${action}` : ''}`;
  }

  status(volume: string): Promise<VolumeStatus> {
    return this.call(VolumeStatusSchema, 'GET', this.route(volume), undefined, 10_000);
  }

  enterBackup(volume: string, backupId: string, image: string): Promise<VolumeStatus> {
    return this.call(VolumeStatusSchema, 'POST', this.route(volume, 'enter-backup'), { backupId, image });
  }

  startBaseCopy(volume: string, backupId: string): Promise<VolumeStatus> {
    return this.call(VolumeStatusSchema, 'POST', this.route(volume, 'base-copy'), { backupId });
  }

  catchUp(volume: string, backupId: string): Promise<RoundResult> {
    return this.call(RoundResultSchema, 'POST', this.route(volume, 'catch-up'), { backupId });
  }

  finish(volume: string, backupId: string, maxEtaMs: number): Promise<FinishResult> {
    return this.call(FinishResultSchema, 'POST', this.route(volume, 'finish'), { backupId, maxEtaMs });
  }

  abort(volume: string, backupId: string): Promise<VolumeStatus> {
    return this.call(VolumeStatusSchema, 'POST', this.route(volume, 'abort'), { backupId });
  }
}
