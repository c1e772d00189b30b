/**
 * The `postgres` application hook: one PostgreSQL session logged in, put into backup mode with
 * `pg_backup_start(label, fast)`, held open while the image is taken, and taken out of it with
 * `pg_backup_stop()` on the same session — which returns the backup label (and tablespace map) a
 * restored copy needs. A non-exclusive backup belongs to its session: if the session ends first
 * (the worker holding it died, the network broke), PostgreSQL aborts the backup by itself, and the
 * stop fails — so a successful stop proves backup mode lasted through the split.
 */
import { Client, type ClientConfig } from 'pg';
import type { PostgresHookSpec } from '../domain/inventory';
import { AccessDeniedError, DeviceFaultError, HookTimeoutError, KuraError } from '../domain/errors';

/** What the holder of the session is told and asked while backup mode lasts. */
export interface HoldControl {
  /** Aborted when the hold must end without a stop (the operation was cancelled or failed). */
  signal?: AbortSignal;
  /** Told once, as soon as PostgreSQL is in backup mode. */
  entered(info: { startLsn: string; pid: number; at: string }): Promise<void>;
  /** Asked every `pollMs` whether the image is taken, so backup mode may end. */
  released(): Promise<boolean>;
  /** Called every `pollMs` while the session is held (an activity heartbeats here). */
  heartbeat(): void;
  pollMs?: number;
}

/** What one hold measured and what pg_backup_stop returned. */
export interface HoldResult {
  enteredAt: string;
  leftAt: string;
  /** From pg_backup_start's return to pg_backup_stop's: the time PostgreSQL spent in backup mode. */
  seconds: number;
  label: string;
  tablespaceMap: string;
  startLsn: string;
  stopLsn: string;
}

/** SQLSTATEs of a refused login or a role that may not run the backup functions: no retry helps. */
const REFUSED = new Set(['28P01', '28000', '3D000', '42501']);

/** The `postgres` kind of application hook (see the module comment). */
export class PostgresHook {
  readonly kind = 'postgres';
  readonly session = true;
  readonly timeoutMs: number;
  readonly heartbeatMs: number;

  constructor(
    private readonly spec: PostgresHookSpec,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.timeoutMs = spec.timeout;
    this.heartbeatMs = spec.heartbeat;
  }

  /** Where the hook logs in, for messages: `user@host:port/database`. */
  get where(): string {
    return `${this.spec.user}@${this.spec.host}:${this.spec.port}/${this.spec.database}`;
  }

  /**
   * Logs in, enters backup mode, holds the session until `control.released()` answers true, then
   * leaves backup mode on the same session and logs out. AccessDeniedError when the login (or the
   * role) is refused, HookTimeoutError when login and pg_backup_start take longer than the hook's
   * timeout, DeviceFaultError when the database cannot be reached or the session is lost — in
   * every case before the stop, PostgreSQL is left with no backup in progress from this hold.
   */
  async holdBackupMode(label: string, control: HoldControl): Promise<HoldResult> {
    const client = new Client(this.clientConfig(label));
    let lost: Error | undefined;
    // Without a listener an 'error' of an idle client would crash the worker.
    client.on('error', (err) => (lost = err));
    client.on('end', () => (lost ??= new Error('the connection was closed')));
    const close = () => client.end().catch(() => undefined);
    try {
      const began = await this.withinTimeout(close, async () => {
        await client.connect();
        const r = await client.query<{ lsn: string; pid: number }>(
          'SELECT pg_backup_start($1, true)::text AS lsn, pg_backend_pid() AS pid',
          [label],
        );
        return r.rows[0]!;
      });
      const enteredAt = new Date();
      await control.entered({ startLsn: began.lsn, pid: began.pid, at: enteredAt.toISOString() });
      const pollMs = control.pollMs ?? 200;
      // One question at a time, and the heartbeat goes on while it is unanswered: the workflow
      // answers only between its tasks, and a task that runs a long local activity (a split on a
      // busy array) would otherwise silence the hold until it is taken for dead and backup mode lost.
      let asking: Promise<boolean> | undefined;
      for (;;) {
        if (control.signal?.aborted) throw control.signal.reason ?? new Error('the hold was cancelled');
        if (lost) throw this.sessionLost(lost);
        control.heartbeat();
        asking ??= control.released();
        const answer = await Promise.race([asking, delay(pollMs, control.signal).then(() => undefined)]);
        if (answer === true) break;
        if (answer === false) {
          asking = undefined;
          await delay(pollMs, control.signal);
        }
      }
      if (lost) throw this.sessionLost(lost);
      const stop = await client
        .query<{ lsn: string; labelfile: string; spcmapfile: string }>(
          'SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_backup_stop($1)',
          [this.spec.waitForArchive],
        )
        .catch((err: unknown) => {
          throw this.sessionLost(err);
        });
      const leftAt = new Date();
      const row = stop.rows[0]!;
      return {
        enteredAt: enteredAt.toISOString(),
        leftAt: leftAt.toISOString(),
        seconds: (leftAt.getTime() - enteredAt.getTime()) / 1000,
        label: row.labelfile,
        tablespaceMap: row.spcmapfile ?? '',
        startLsn: began.lsn,
        stopLsn: row.lsn,
      };
    } catch (err) {
      throw err instanceof KuraError || control.signal?.aborted ? err : this.refusedOrFault(err);
    } finally {
      // Logging out ends a backup never stopped: PostgreSQL aborts it with the session.
      await close();
    }
  }

  private clientConfig(label: string): ClientConfig {
    const password = this.spec.passwordEnv === undefined ? undefined : this.env[this.spec.passwordEnv];
    return {
      host: this.spec.host,
      port: this.spec.port,
      user: this.spec.user,
      database: this.spec.database,
      ...(password === undefined ? {} : { password }),
      // Seen in pg_stat_activity: which operation holds this session.
      application_name: `kura ${label}`.slice(0, 63),
      connectionTimeoutMillis: this.timeoutMs,
      // A peer that vanished is noticed by the kernel, not only at the stop.
      keepAlive: true,
    };
  }

  /** Runs login and start within the hook's timeout; past it the session is closed (aborting any start). */
  private async withinTimeout<T>(close: () => Promise<unknown>, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void close();
        reject(
          new HookTimeoutError(
            `the postgres hook of ${this.spec.target} (${this.where}) did not log in and enter backup mode within ${this.timeoutMs} ms; its session was closed, so PostgreSQL is not in backup mode for it`,
            { target: this.spec.target, timeoutMs: this.timeoutMs, hook: 'begin' },
          ),
        );
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([run(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private refusedOrFault(err: unknown): KuraError {
    const code = (err as { code?: unknown }).code;
    const why = err instanceof Error ? err.message : String(err);
    if (typeof code === 'string' && REFUSED.has(code))
      return new AccessDeniedError(
        `the postgres hook of ${this.spec.target} cannot log in and start a backup as ${this.where}: ${why} (SQLSTATE ${code}); check the hook's user, database and password in kura.yaml`,
        { target: this.spec.target, sqlstate: code },
      );
    return new DeviceFaultError(
      `postgres:${this.spec.host}:${this.spec.port}`,
      `the postgres hook of ${this.spec.target} cannot reach ${this.where}: ${why}`,
      err,
    );
  }

  private sessionLost(err: unknown): DeviceFaultError {
    const why = err instanceof Error ? err.message : String(err);
    return new DeviceFaultError(
      `postgres:${this.spec.host}:${this.spec.port}`,
      `the backup-mode session of the postgres hook of ${this.spec.target} (${this.where}) was lost (${why}); PostgreSQL aborted the backup, so an image taken in it is not consistent`,
      err,
    );
  }
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
