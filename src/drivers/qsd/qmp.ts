/**
 * A QMP client: QEMU's JSON monitor protocol over a Unix socket — the greeting, capabilities
 * negotiation, commands matched to their answers by id, and the events the daemon sends between
 * them (BLOCK_JOB_READY, BLOCK_JOB_COMPLETED, JOB_STATUS_CHANGE, …).
 */
import * as net from 'node:net';
import { DeviceFaultError } from '../../domain/errors';

/** One asynchronous event of the daemon, as sent. */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

/** The daemon could not be reached, stopped answering, or closed the connection. */
export class QmpConnectionError extends DeviceFaultError {
  override name = 'QmpConnectionError';
}

/** The daemon refused a command: QEMU's error class (`GenericError`, `DeviceNotFound`, …) and description. */
export class QmpCommandError extends DeviceFaultError {
  override name = 'QmpCommandError';
  constructor(
    device: string,
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(device, `${device}: qemu-storage-daemon refused ${command}: ${desc} (${errorClass})`);
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * One QMP session. The daemon's monitor serves one client at a time (a second connection waits
 * in the listen backlog until the first closes), so a session also serialises the callers of one
 * array across processes; keep sessions short.
 */
export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly events: QmpEvent[] = [];
  private eventWaiters: (() => void)[] = [];
  private closedBy: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    /** Names the array in errors (`site/array`). */
    readonly device: string,
  ) {}

  /**
   * Connects, waits for the greeting (up to `timeoutMs`: another session may hold the monitor)
   * and negotiates capabilities. QmpConnectionError when the socket does not answer.
   */
  static async connect(path: string, device: string, timeoutMs = 30_000): Promise<QmpClient> {
    const socket = net.createConnection({ path });
    const client = new QmpClient(socket, device);
    const greeting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new QmpConnectionError(device, `${device}: no QMP greeting on ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(
          new QmpConnectionError(
            device,
            `${device}: cannot reach qemu-storage-daemon's QMP socket ${path}: ${err.message}`,
            err,
          ),
        );
      };
      socket.once('error', fail);
      client.onGreeting = () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve();
      };
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => client.receive(chunk));
    socket.on('error', (err) => client.fail(err));
    socket.on('close', () => client.fail(new Error('the daemon closed the QMP connection')));
    try {
      await greeting;
      await client.execute('qmp_capabilities');
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return client;
  }

  private onGreeting: (() => void) | undefined;

  /** Runs one command; resolves with its `return`, or throws QmpCommandError with QEMU's reason. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedBy) return Promise.reject(this.connectionError(command, this.closedBy));
    const id = String(this.nextId++);
    const message = JSON.stringify(
      args === undefined ? { execute: command, id } : { execute: command, arguments: args, id },
    );
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(`${message}\n`);
    });
  }

  /**
   * Waits for the first event (received during this session, not yet taken) that `match`
   * accepts, and takes it; QmpConnectionError after `timeoutMs`.
   */
  async waitForEvent(match: (e: QmpEvent) => boolean, timeoutMs: number, what: string): Promise<QmpEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex(match);
      if (i >= 0) return this.events.splice(i, 1)[0] as QmpEvent;
      if (this.closedBy) throw this.connectionError(`waiting for ${what}`, this.closedBy);
      const left = deadline - Date.now();
      if (left <= 0) throw new QmpConnectionError(this.device, `${this.device}: no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.eventWaiters.push(done);
      });
    }
  }

  /** Events received and not taken by {@link waitForEvent}, oldest first. */
  pendingEvents(): readonly QmpEvent[] {
    return this.events;
  }

  /** Ends the session, letting the next client in. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, 1_000).unref();
    });
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line !== '') this.dispatch(line);
    }
  }

  private dispatch(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.fail(new Error(`the daemon sent a line that is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if ('QMP' in msg) {
      this.onGreeting?.();
      this.onGreeting = undefined;
      return;
    }
    if (typeof msg.event === 'string') {
      this.events.push(msg as unknown as QmpEvent);
      const waiters = this.eventWaiters;
      this.eventWaiters = [];
      for (const w of waiters) w();
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p || id === undefined) return;
    this.pending.delete(id);
    const error = msg.error as { class?: string; desc?: string } | undefined;
    if (error) p.reject(new QmpCommandError(this.device, p.command, error.class ?? 'GenericError', error.desc ?? ''));
    else p.resolve(msg.return);
  }

  private fail(err: Error): void {
    if (this.closedBy) return;
    this.closedBy = err;
    for (const p of this.pending.values()) p.reject(this.connectionError(p.command, err));
    this.pending.clear();
    const waiters = this.eventWaiters;
    this.eventWaiters = [];
    for (const w of waiters) w();
  }

  private connectionError(what: string, cause: Error): QmpConnectionError {
    return new QmpConnectionError(
      this.device,
      `${this.device}: qemu-storage-daemon's QMP connection broke during ${what}: ${cause.message}`,
      cause,
    );
  }
}
